#!/usr/bin/env bash
# Fine-tune slarm-t's language-feature head (trunk frozen) with several class-balance powers of the feature
# loss, side by side on one GPU, then score each and the starting checkpoint on the val split:
#   benchmarks/gpu_finetune_features.sh OUT_DIR "POWERS" [STEPS] [TRAIN_SCENES] [VAL_SCENES]
# e.g. benchmarks/gpu_finetune_features.sh /tmp/ft "0 0.5 1" 1000 200 20
# Data goes to $SLARM_BENCH_DATA (train, val and, for the later scoring, test and mini). Each power p
# trains into OUT_DIR/p<p>/ (re-running resumes); the val scores go to OUT_DIR/val.json and OUT_DIR/val.txt.
# Env: INIT (default checkpoints/slarm-t.safetensors), BATCH (4), FEATURE_TARGETS (2), LR (4e-4),
# WARMUP (100), LOADERS (3), PYTHON (python3).
set -euo pipefail
usage='usage: gpu_finetune_features.sh OUT_DIR "POWERS" [STEPS] [TRAIN_SCENES] [VAL_SCENES]'
OUT=${1:?$usage}
POWERS=${2:?$usage}
STEPS=${3:-1000}
TRAIN_SCENES=${4:-200}
VAL_SCENES=${5:-20}
PY=${PYTHON:-python3}
INIT=${INIT:-checkpoints/slarm-t.safetensors}
mkdir -p "$OUT"
LOG="$OUT/finetune.log"
say() { echo "[finetune $(date +%H:%M:%S)] $*" | tee -a "$LOG"; }
cli() { "$PY" -m slarm_bench.cli "$@"; }
say "preparing synthetic train ($TRAIN_SCENES), val ($VAL_SCENES), test (50), mini"
cli prepare synthetic --split train --scenes "$TRAIN_SCENES" --workers "$(nproc)" --quiet >> "$LOG" 2>&1
cli prepare synthetic --split val --scenes "$VAL_SCENES" --workers "$(nproc)" --quiet >> "$LOG" 2>&1
say "data ready; fine-tuning powers: $POWERS"
pids=()
for p in $POWERS; do
  "$PY" -m slarm_bench.train slarm-t --out-dir "$OUT/p$p" --data-root "$SLARM_BENCH_DATA" --steps "$STEPS" \
    --batch-size "${BATCH:-4}" --lr "${LR:-4e-4}" --warmup "${WARMUP:-100}" --ckpt-every 250 --log-every 25 \
    --num-workers "${LOADERS:-3}" --num-targets 4 --feature-targets "${FEATURE_TARGETS:-2}" \
    --lpips-start 1000000000 --max-scenes "$TRAIN_SCENES" --init-from "$INIT" --train-only features \
    --feature-balance "$p" > "$OUT/p$p.log" 2>&1 &
  pids+=($!)
done
# The test split for the later scoring is prepared while the fine-tunes run.
cli prepare synthetic --split test --scenes 50 --workers 4 --quiet >> "$LOG" 2>&1
cli prepare synthetic --split mini --quiet >> "$LOG" 2>&1
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
say "fine-tunes finished (rc $rc); scoring on val"
ckpts=("$INIT")
for p in $POWERS; do ckpts+=("$OUT/p$p/slarm-t.safetensors"); done
"$PY" benchmarks/bench_semantic_val.py "${ckpts[@]}" --split val --scenes "$VAL_SCENES" --device cuda \
  --json "$OUT/val.json" > "$OUT/val.txt" 2>&1
say "ALL DONE"
