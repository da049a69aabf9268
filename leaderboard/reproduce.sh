#!/usr/bin/env bash
# Re-create leaderboard/results and LEADERBOARD.md: every project plugin and the raw-pixels
# baseline on the synthetic worlds, CPU, quick regime, seeds 0-2, under one cheap setting
# sized for a shared 2-core machine (3 epochs over 384 training pairs; 256 test pairs).
# Cost (params, GMACs, latency) is profiled on seed 0 only: it does not depend on the seed.
set -euo pipefail
cd "$(dirname "$0")/.."
PLUGINS="${PLUGINS:-safa,cvm_net,aenet,l2ltr,saig}"

run() {
  # a failed run is recorded in its result file and listed on the page, so keep going
  python -m benchmark run --regime quick --device cpu --results-dir leaderboard/results \
    --set dataset_options.n_train=384 --set dataset_options.n_test=256 \
    --seed "$seed" --set profile="$profile" "$@" || true
}

for seed in 0 1 2; do
  profile=$([ "$seed" = 0 ] && echo true || echo false)
  run --plugins "$PLUGINS" --dataset synthetic --epochs 3 --batch-size 32
  run --plugins raw-pixels --dataset synthetic
  # VIGOR trains on semi-positives and offsets: the synthetic VIGOR-style world
  run --plugins vigor --dataset synthetic-vigor --split same-area --epochs 3 --batch-size 32
done
python -m benchmark leaderboard
