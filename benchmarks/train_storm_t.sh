#!/usr/bin/env bash
# Kept for the commands recorded in baselines/*.yaml: benchmarks/train_storm_t.sh OUT_DIR [MINUTES] [MODEL]
# [SCENES] [BATCH] is benchmarks/train_gpu.sh with MINUTES 15 and MODEL storm-t by default.
set -euo pipefail
OUT_DIR=${1:?usage: train_storm_t.sh OUT_DIR [MINUTES] [MODEL] [SCENES] [BATCH]}
exec "$(dirname "${BASH_SOURCE[0]}")/train_gpu.sh" "$OUT_DIR" "${2:-15}" "${3:-storm-t}" "${@:4}"
