#!/usr/bin/env bash
# Probe: does motion appear with more training? Continues shipped checkpoints for STEPS more steps with the
# same recipe (warm restart: WARMUP-step warm-up, then cosine to 0 over STEPS), side by side on one GPU,
# then compares motion before and after (benchmarks/bench_motion_learned.py) and scores the continued
# checkpoints on synthetic-mini. Not a training recipe of the shipped weights:
#   benchmarks/gpu_train_longer_probe.sh OUT_DIR STEPS "MODELS" [TRAIN_SCENES]
# e.g. benchmarks/gpu_train_longer_probe.sh /tmp/probe 2000 "slarm-t storm-t" 200
set -euo pipefail
usage='usage: gpu_train_longer_probe.sh OUT_DIR STEPS "MODELS" [TRAIN_SCENES]'
OUT=${1:?$usage}
STEPS=${2:?$usage}
MODELS=${3:?$usage}
SCENES=${4:-200}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
LOG="$OUT/probe.log"
say() { echo "[probe $(date +%H:%M:%S)] $*" | tee -a "$LOG"; }
cli() { "$PY" -m slarm_bench.cli "$@"; }
say "preparing synthetic train ($SCENES) and mini"
cli prepare synthetic --split train --scenes "$SCENES" --workers "$(nproc)" --quiet >> "$LOG" 2>&1
cli prepare synthetic --split mini --quiet >> "$LOG" 2>&1
pids=()
for m in $MODELS; do
  "$PY" -m slarm_bench.train "$m" --out-dir "$OUT/$m" --data-root "$SLARM_BENCH_DATA" --steps "$STEPS" \
    --batch-size 4 --lr 4e-4 --warmup "${WARMUP:-100}" --ckpt-every 500 --log-every 25 --num-workers 3 \
    --num-targets 4 --lpips-start 1000000000 --max-scenes "$SCENES" --init-from "checkpoints/$m.safetensors" \
    > "$OUT/$m.log" 2>&1 &
  pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
say "trainings finished (rc $rc)"
args=()
for m in $MODELS; do args+=("$m" "$m=$OUT/$m/$m.safetensors"); done
"$PY" benchmarks/bench_motion_learned.py "${args[@]}" --windows 8 --device cuda > "$OUT/motion.txt" 2>&1
for m in $MODELS; do
  cli run --model "$m" --checkpoint "$OUT/$m/$m.safetensors" --protocol synthetic-mini --results "$OUT/results" \
    --device cuda > "$OUT/run-$m.txt" 2>&1 || true
done
say "ALL DONE"
