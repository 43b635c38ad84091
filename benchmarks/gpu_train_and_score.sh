#!/usr/bin/env bash
# Train several presets at once on one GPU machine and score each as soon as its training ends, so that
# scoring overlaps the longer trainings:
#   benchmarks/gpu_train_and_score.sh OUT_DIR MINUTES "MODEL ..." [SCENES] [BATCH]
# Each MODEL trains with benchmarks/train_gpu.sh into OUT_DIR/runs/MODEL (same environment variables:
# STEPS, LOADERS, DATA_ROOT, ...), then is scored on synthetic-mini and synthetic into OUT_DIR/results.
# The test and mini splits are prepared once, beside the first training's preparation of the train split;
# the ground-truth and simple baselines (BASELINES, default "nearest oracle oracle-static"; empty: none) are scored
# when the test data is ready. Progress lines go to OUT_DIR/pipeline.log; every step's output to its own log.
set -uo pipefail
usage="usage: gpu_train_and_score.sh OUT_DIR MINUTES \"MODEL ...\" [SCENES] [BATCH]"
OUT=${1:?$usage}
MINUTES=${2:?$usage}
MODELS=${3:?$usage}
SCENES=${4:-400}
BATCH=${5:-4}
BASELINES=${BASELINES-nearest oracle oracle-static}
PY=${PYTHON:-python3}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export DATA_ROOT=${DATA_ROOT:-${SLARM_BENCH_DATA:-$REPO/data/prepared}}
export SLARM_BENCH_DATA="$DATA_ROOT"
mkdir -p "$OUT/runs" "$OUT/results" "$DATA_ROOT"
LOG="$OUT/pipeline.log"
say() { echo "[pipeline $(date +%H:%M:%S)] $*" >> "$LOG"; }
cli() { "$PY" -m slarm_bench.cli "$@"; }
TEST_READY="$OUT/.test-data-ready"

score() {  # score MODEL [CHECKPOINT]
  local model=$1 ckpt=${2:-}
  for proto in synthetic-mini synthetic; do
    if [ -n "$ckpt" ]; then
      cli run --model "$model" --checkpoint "$ckpt" --protocol $proto --results "$OUT/results" --device cuda \
        --quiet >> "$OUT/score-$model.log" 2>&1
    else
      cli run --model "$model" --protocol $proto --results "$OUT/results" --device cuda --quiet \
        >> "$OUT/score-$model.log" 2>&1
    fi
    say "scored $model on $proto rc=$?"
  done
}

(
  cli prepare synthetic --split mini --quiet >> "$OUT/prepare-test.log" 2>&1 &&
  cli prepare synthetic --split test --scenes 50 --workers 4 --quiet >> "$OUT/prepare-test.log" 2>&1 &&
  touch "$TEST_READY"
  say "test and mini data prepared rc=$?"
) &

for model in $MODELS; do
  (
    benchmarks/train_gpu.sh "$OUT/runs/$model" "$MINUTES" "$model" "$SCENES" "$BATCH" > /dev/null 2>&1
    say "trained $model rc=$?"
    while [ ! -f "$TEST_READY" ]; do sleep 5; done
    ckpt="$OUT/runs/$model/$model.safetensors"
    if [ -f "$ckpt" ]; then score "$model" "$ckpt"; else say "no export for $model: not scored"; fi
  ) &
done

(
  while [ ! -f "$TEST_READY" ]; do sleep 5; done
  for model in $BASELINES; do score "$model"; done
) &
wait
say "ALL DONE"
