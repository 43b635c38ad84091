#!/usr/bin/env bash
# Several fine-tunes of shipped checkpoints side by side on one GPU, each scored as soon as it ends:
#   benchmarks/gpu_finetune_probes.sh OUT_DIR STEPS TRAIN_SCENES SPEC [SPEC ...]
# SPEC is NAME=MODEL@INIT[:TRAIN FLAGS], e.g.
#   "sem-all=slarm-t@checkpoints/slarm-t.safetensors:--label-weight 0.05 --lr 1e-4"
# INIT "scratch" trains from a fresh initialisation instead (give the recipe's own warm-up in FLAGS, e.g.
#   "xav=storm-t@scratch:--warmup 500 --motion-head-init xavier").
# Each fine-tune runs `python -m slarm_bench.train MODEL --init-from INIT` for STEPS steps (batch 4, 4 targets,
# features on 2, 100-step warm-up, no LPIPS, the first TRAIN_SCENES train scenes) plus its FLAGS, into
# OUT_DIR/NAME/, and is then scored on `synthetic` (into OUT_DIR/results) and, for the semantics, on the
# first 20 `val` scenes (SLARM presets only; benchmarks/bench_semantic_val.py, OUT_DIR/NAME.val.txt). Wait for gsplat's kernels
# (benchmarks/gpu_warm_gsplat.py) before starting this. Progress lines go to OUT_DIR/probes.log.
# STAGGER=S starts the i-th fine-tune S*i seconds after the first (so a later one that finds the GPU full
# fails alone, after the others hold their memory). MOTION=1 also runs benchmarks/bench_motion_learned.py
# on 8 `synthetic-mini` windows for each (OUT_DIR/NAME.motion.txt): its learned velocities.
set -uo pipefail
usage='usage: gpu_finetune_probes.sh OUT_DIR STEPS TRAIN_SCENES "NAME=MODEL@INIT[:FLAGS]" ...'
OUT=${1:?$usage}
STEPS=${2:?$usage}
TRAIN_SCENES=${3:?$usage}
shift 3
[ $# -gt 0 ] || { echo "$usage" >&2; exit 2; }
PY=${PYTHON:-python3}
STAGGER=${STAGGER:-0}
MOTION=${MOTION:-0}
mkdir -p "$OUT/results"
LOG="$OUT/probes.log"
say() { echo "[probes $(date +%H:%M:%S)] $*" >> "$LOG"; }
cli() { "$PY" -m slarm_bench.cli "$@"; }
READY="$OUT/.eval-data-ready"
say "preparing synthetic train ($TRAIN_SCENES scenes)"
cli prepare synthetic --split train --scenes "$TRAIN_SCENES" --workers "$(nproc)" --quiet >> "$LOG" 2>&1 || {
  say "train data preparation failed"; exit 1; }
(
  cli prepare synthetic --split test --scenes 50 --workers 4 --quiet >> "$LOG" 2>&1 &&
    cli prepare synthetic --split val --scenes 20 --workers 4 --quiet >> "$LOG" 2>&1 &&
    { [ "$MOTION" = 0 ] || cli prepare synthetic --split mini --quiet >> "$LOG" 2>&1; } && touch "$READY"
  say "test and val data prepared rc=$?"
) &
index=0
for spec in "$@"; do
  delay=$((STAGGER * index)); index=$((index + 1))
  name=${spec%%=*}; rest=${spec#*=}
  model=${rest%%@*}; rest=${rest#*@}
  init=${rest%%:*}; flags=""
  [ "$rest" != "$init" ] && flags=${rest#*:}
  start=(--init-from "$init")
  [ "$init" = scratch ] && start=()
  (
    sleep "$delay"
    # shellcheck disable=SC2086  # FLAGS are words on purpose
    "$PY" -m slarm_bench.train "$model" --out-dir "$OUT/$name" --data-root "$SLARM_BENCH_DATA" \
      --steps "$STEPS" --batch-size 4 --warmup 100 --ckpt-every 200 --log-every 25 --num-workers 3 \
      --num-targets 4 --feature-targets 2 --lpips-start 1000000000 --max-scenes "$TRAIN_SCENES" \
      "${start[@]}" $flags > "$OUT/$name.log" 2>&1
    say "trained $name ($model from $init, $flags) rc=$?"
    ckpt="$OUT/$name/$model.safetensors"
    [ -f "$ckpt" ] || { say "no export for $name"; exit 1; }
    while [ ! -f "$READY" ]; do sleep 5; done
    cli run --model "$model" --checkpoint "$ckpt" --protocol synthetic --results "$OUT/results" --device cuda \
      --quiet > "$OUT/$name.score.log" 2>&1
    say "scored $name on synthetic rc=$?"
    case "$model" in
      slarm*) "$PY" benchmarks/bench_semantic_val.py "$ckpt" --split val --scenes 20 --device cuda \
                > "$OUT/$name.val.txt" 2>&1
              say "val semantics of $name rc=$?" ;;
    esac
    if [ "$MOTION" != 0 ]; then
      "$PY" benchmarks/bench_motion_learned.py "$model=$ckpt" --windows 8 --device cuda > "$OUT/$name.motion.txt" 2>&1
      say "velocities of $name rc=$?"
    fi
  ) &
done
wait
say "ALL DONE"
