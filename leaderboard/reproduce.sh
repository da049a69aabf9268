#!/usr/bin/env bash
# Re-create leaderboard/results and LEADERBOARD.md: every project plugin and the raw-pixels
# baseline on the synthetic world, CPU, quick regime, seeds 0-2, under one cheap setting
# sized for a shared 2-core machine (1 epoch over 128 training pairs; 256 test pairs).
set -euo pipefail
cd "$(dirname "$0")/.."
PLUGINS="${PLUGINS:-safa,cvm_net,aenet,l2ltr,saig}"
COMMON=(--dataset synthetic --regime quick --device cpu --results-dir leaderboard/results
  --set dataset_options.n_train=128 --set dataset_options.n_test=256)
for seed in 0 1 2; do
  # a failed run is recorded in its result file and listed on the page, so keep going
  python -m benchmark run --plugins "$PLUGINS" --epochs 1 --batch-size 32 --seed "$seed" \
    "${COMMON[@]}" || true
  python -m benchmark run --plugins raw-pixels --seed "$seed" "${COMMON[@]}" || true
done
python -m benchmark leaderboard
