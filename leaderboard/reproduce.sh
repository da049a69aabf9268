#!/usr/bin/env bash
# Re-create leaderboard/results and LEADERBOARD.md: every project plugin and the raw-pixels
# baseline on the synthetic worlds, CPU, quick regime, seeds 0-2, under one setting sized for
# a 2-core machine: 6 epochs over 1,000 training pairs, 500 test pairs (R@1% uses K = 6).
# Cost (params, GMACs, latency) is profiled on seed 0 only: it does not depend on the seed.
# JOBS=2 runs two jobs at a time, each on one thread.
set -euo pipefail
cd "$(dirname "$0")/.."
PLUGINS="${PLUGINS:-safa cvm_net aenet l2ltr saig}"
OUT="${OUT:-leaderboard/results}"
export OMP_NUM_THREADS=1 OUT

job() {
  # one (seed, plugin) run; a failed run is recorded in its result file, so keep going
  local seed=$1 plugin=$2 profile=false
  [ "$seed" = 0 ] && profile=true
  local data=(--dataset synthetic --set dataset_options.n_train=1000 --set dataset_options.n_test=500)
  [ "$plugin" = vigor ] && data=(--dataset synthetic-vigor --split same-area)
  python -m benchmark run --plugins "$plugin" --regime quick --device cpu --epochs 6 \
    --results-dir "$OUT" --seed "$seed" --set profile="$profile" "${data[@]}" || true
}
export -f job

for seed in 0 1 2; do
  for plugin in $PLUGINS raw-pixels vigor; do echo "$seed $plugin"; done
done | xargs -P "${JOBS:-1}" -L 1 bash -c 'job "$@"' _
python -m benchmark leaderboard --results-dir "$OUT"
