#!/usr/bin/env bash
# Train one preset (storm-t, static-t, slarm-t, slarm-t-o1, ...) on the synthetic train split within a time
# budget, on a GPU machine:
#   benchmarks/train_gpu.sh OUT_DIR MINUTES MODEL [SCENES] [BATCH]
# The synthetic train split (SCENES scenes, default 400) is prepared into DATA_ROOT (default
# $SLARM_BENCH_DATA, else ./data/prepared) unless a marker says it is done. Several trainings may start at
# once on one machine: the first takes the lock (DATA_ROOT/.prepare-train-SCENES.lock, a directory: mkdir is
# atomic) and prepares; the others wait for the marker DATA_ROOT/.prepared-train-SCENES. The time spent
# preparing or waiting comes off MINUTES. Training writes its log to OUT_DIR/train.log and its checkpoints,
# curves and final fp16 export (OUT_DIR/MODEL.safetensors + .json) under OUT_DIR; re-running continues
# from OUT_DIR's latest checkpoint.
# Environment: PYTHON (default python3; the repository is put on PYTHONPATH, no install needed),
# STEPS (schedule length, cosine ends there; default 6000), WORKERS (prepare processes; default nproc),
# LOADERS (data-loader workers of this training; default 4), NUM_TARGETS (supervised timesteps per sample;
# default 4), LR (default 4e-4), MOTION_WEIGHT (motion regulariser weight; default the reference 0.005),
# NPROC_PER_NODE (> 1: DDP through torch.distributed.run).
set -euo pipefail
usage="usage: train_gpu.sh OUT_DIR MINUTES MODEL [SCENES] [BATCH]"
OUT_DIR=${1:?$usage}
MINUTES=${2:?$usage}
MODEL=${3:?$usage}
SCENES=${4:-400}
BATCH=${5:-8}
STEPS=${STEPS:-6000}
WORKERS=${WORKERS:-$(nproc)}
LOADERS=${LOADERS:-4}
NUM_TARGETS=${NUM_TARGETS:-4}
LR=${LR:-4e-4}
NPROC=${NPROC_PER_NODE:-1}
PY=${PYTHON:-python3}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
DATA_ROOT=${DATA_ROOT:-${SLARM_BENCH_DATA:-$REPO/data/prepared}}
export SLARM_BENCH_DATA="$DATA_ROOT"
mkdir -p "$OUT_DIR" "$DATA_ROOT"
LOG="$OUT_DIR/train.log"
say() { echo "[train_gpu $MODEL $(date +%H:%M:%S)] $*" | tee -a "$LOG"; }

t0=$(date +%s)
MARKER="$DATA_ROOT/.prepared-train-$SCENES"
LOCK="$DATA_ROOT/.prepare-train-$SCENES.lock"
if [ ! -f "$MARKER" ]; then
  if mkdir "$LOCK" 2>/dev/null; then
    echo $$ > "$LOCK/pid"
    say "preparing synthetic/train ($SCENES scenes, $WORKERS processes) into $DATA_ROOT"
    if "$PY" -c "import sys; from slarm_bench import api; print(api.prepare('synthetic', split='train', \
scenes=sys.argv[1], root=sys.argv[2], workers=int(sys.argv[3]), progress=False))" \
        "$SCENES" "$DATA_ROOT" "$WORKERS" >> "$LOG" 2>&1; then
      touch "$MARKER"
      rm -rf "$LOCK"
    else
      rm -rf "$LOCK"
      say "preparing the data failed (see above); fix it and re-run"
      exit 1
    fi
  else
    say "another training prepares $DATA_ROOT; waiting for $MARKER"
    while [ ! -f "$MARKER" ]; do
      owner=$(cat "$LOCK/pid" 2>/dev/null || true)
      if [ ! -d "$LOCK" ] || { [ -n "$owner" ] && ! kill -0 "$owner" 2>/dev/null; }; then
        sleep 2  # the owner may have just finished: look at the marker once more
        [ -f "$MARKER" ] && break
        say "the training preparing $DATA_ROOT stopped without finishing; remove $LOCK and re-run"
        exit 1
      fi
      sleep 5
    done
  fi
fi
PREP_S=$(( $(date +%s) - t0 ))
BUDGET=$("$PY" -c "import sys; print(max(1.0, float(sys.argv[1]) - float(sys.argv[2]) / 60))" "$MINUTES" "$PREP_S")
say "data ready after ${PREP_S} s; training for $BUDGET min"

ARGS=("$MODEL" --out-dir "$OUT_DIR" --data-root "$DATA_ROOT" --steps "$STEPS" --batch-size "$BATCH" --lr "$LR"
      --warmup 500 --ckpt-every 500 --log-every 25 --num-workers "$LOADERS" --num-targets "$NUM_TARGETS"
      --max-minutes "$BUDGET" --lpips-start 3000)
if [ -n "${MOTION_WEIGHT:-}" ]; then ARGS+=(--motion-weight "$MOTION_WEIGHT"); fi
if [ "$NPROC" -gt 1 ]; then
  "$PY" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m slarm_bench.train "${ARGS[@]}" \
    >> "$LOG" 2>&1
else
  "$PY" -m slarm_bench.train "${ARGS[@]}" >> "$LOG" 2>&1
fi
say "done: $(ls "$OUT_DIR/$MODEL.safetensors" 2>/dev/null || echo 'no export')"
