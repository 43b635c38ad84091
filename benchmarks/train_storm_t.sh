#!/usr/bin/env bash
# Train storm-t (or another preset) on the synthetic train split within a time budget, on a GPU machine.
#   benchmarks/train_storm_t.sh OUT_DIR [MINUTES] [MODEL] [SCENES] [BATCH]
# Prepares the synthetic train split (SCENES scenes, all CPU cores) into $SLARM_BENCH_DATA
# (default ./data/prepared) when it holds fewer, then trains with the budget, writing the log, curves,
# checkpoints and the final export under OUT_DIR. Re-running continues from OUT_DIR's latest checkpoint.
# NPROC_PER_NODE > 1 runs DDP through torchrun. STEPS sets the schedule length (cosine ends there).
set -euo pipefail
OUT_DIR=${1:?usage: train_storm_t.sh OUT_DIR [MINUTES] [MODEL] [SCENES] [BATCH]}
MINUTES=${2:-15}
MODEL=${3:-storm-t}
SCENES=${4:-400}
BATCH=${5:-8}
STEPS=${STEPS:-6000}
WORKERS=${WORKERS:-$(nproc)}
PY=${PYTHON:-.venv/bin/python}
NPROC=${NPROC_PER_NODE:-1}
mkdir -p "$OUT_DIR"
t0=$(date +%s)
"$PY" -c "from slarm_bench import api; print(api.prepare('synthetic', split='train', scenes='$SCENES', workers=$WORKERS, progress=False))" \
  2>&1 | tail -n 3 | tee "$OUT_DIR/prepare.log"
echo "prepare: $(( $(date +%s) - t0 )) s" | tee -a "$OUT_DIR/prepare.log"
PREP_MIN=$(( ($(date +%s) - t0) / 60 ))
BUDGET=$(python3 -c "print(max(1.0, $MINUTES - $PREP_MIN))")
LOADERS=$(( WORKERS / NPROC > 8 ? 8 : WORKERS / NPROC ))
ARGS=("$MODEL" --out-dir "$OUT_DIR" --steps "$STEPS" --batch-size "$BATCH" --warmup 500 --ckpt-every 500
      --log-every 25 --num-workers "$LOADERS" --max-minutes "$BUDGET" --lpips-start 3000)
if [ "$NPROC" -gt 1 ]; then
  "$(dirname "$PY")/torchrun" --standalone --nproc_per_node "$NPROC" -m slarm_bench.train "${ARGS[@]}" \
    2>&1 | tee -a "$OUT_DIR/train.out"
else
  "$PY" -m slarm_bench.train "${ARGS[@]}" 2>&1 | tee -a "$OUT_DIR/train.out"
fi
