#!/usr/bin/env bash
# Score every model of the synthetic leaderboards on a GPU machine (after benchmarks/train_gpu.sh):
#   benchmarks/gpu_eval.sh RUNS_DIR RESULTS_DIR
# RUNS_DIR holds <model>/<model>.safetensors exports ("-": the shipped checkpoints); prepared data goes to
# $SLARM_BENCH_DATA. Env PROTOCOLS, GT_MODELS, TRAINED_MODELS (space-separated) narrow the runs;
# STORM_B8=0 skips the STORM-B/8 speed run.
# Writes one line per finished run to RESULTS_DIR/eval.log.
set -uo pipefail
RUNS=${1:?usage: gpu_eval.sh RUNS_DIR RESULTS_DIR}
RES=${2:?usage: gpu_eval.sh RUNS_DIR RESULTS_DIR}
PY=${PYTHON:-python3}
mkdir -p "$RES"
LOG="$RES/eval.log"
cli() { "$PY" -m slarm_bench.cli "$@"; }
cli prepare synthetic --split test --scenes 50 --workers "$(nproc)" --quiet >> "$LOG" 2>&1
cli prepare synthetic --split mini --quiet >> "$LOG" 2>&1
for proto in ${PROTOCOLS:-synthetic-mini synthetic}; do
  for m in ${GT_MODELS-nearest oracle oracle-static}; do
    cli run --model $m --protocol $proto --results "$RES" --device cuda --quiet >> "$LOG" 2>&1
    echo "done $proto $m rc=$?" >> "$LOG"
  done
  for m in ${TRAINED_MODELS-storm-t static-t slarm-t slarm-t-o1}; do
    ckpt="$RUNS/$m/$m.safetensors"
    if [ "$RUNS" = "-" ]; then
      cli run --model $m --protocol $proto --results "$RES" --device cuda --quiet >> "$LOG" 2>&1
      echo "done $proto $m rc=$?" >> "$LOG"
    elif [ -f "$ckpt" ]; then
      cli run --model $m --checkpoint "$ckpt" --protocol $proto --results "$RES" --device cuda --quiet >> "$LOG" 2>&1
      echo "done $proto $m rc=$?" >> "$LOG"
    else
      echo "skip $proto $m: no $ckpt" >> "$LOG"
    fi
  done
done
# STORM-B/8 (random weights: speed of the full model through the harness, not quality).
[ "${STORM_B8:-1}" = 0 ] || cli run --model storm-b8 --protocol synthetic-mini --results "$RES" --device cuda --quiet >> "$LOG" 2>&1
[ "${STORM_B8:-1}" = 0 ] || echo "done synthetic-mini storm-b8 rc=$?" >> "$LOG"
echo "ALL DONE" >> "$LOG"
