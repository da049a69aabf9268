#!/usr/bin/env bash
# Re-create leaderboard/results and LEADERBOARD.md: every project plugin and the raw-pixels
# baseline on the synthetic worlds, CPU, quick regime, seeds 0-2, under one setting sized for
# a 2-core machine: 6 epochs over 1,000 training pairs, 500 test pairs (R@1% uses K = 6).
# Each trained model's final checkpoint is then evaluated under the robustness protocols
# (same seed and data, no training), which the leaderboard shows as extra columns.
# Cost (params, GMACs, latency) is profiled on seed 0 only: it does not depend on the seed.
# JOBS=2 runs two jobs at a time, each on one thread. PLUGINS, SEEDS, EPOCHS, N_TRAIN,
# N_TEST (synthetic world only), PROTOCOLS, OUT and PAGE change the run, e.g. a quick try:
#   OUT=/tmp/lb/results PAGE=/tmp/lb/LEADERBOARD.md PLUGINS=safa SEEDS=0 EPOCHS=1 \
#     N_TRAIN=100 N_TEST=50 leaderboard/reproduce.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PLUGINS="${PLUGINS:-safa cvm_net aenet l2ltr saig raw-pixels vigor}"
SEEDS="${SEEDS:-0 1 2}"
OUT="${OUT:-leaderboard/results}" PAGE="${PAGE:-leaderboard/LEADERBOARD.md}"
EPOCHS="${EPOCHS:-6}" N_TRAIN="${N_TRAIN:-1000}" N_TEST="${N_TEST:-500}"
PROTOCOLS="${PROTOCOLS:-unknown-orientation fov=180 fov=90}"
export OMP_NUM_THREADS=1 OUT EPOCHS N_TRAIN N_TEST PROTOCOLS

job() {
  # one (seed, plugin) aligned run, then its weights under each protocol; a failed run is
  # recorded in its result file, so keep going
  local seed=$1 plugin=$2 profile=false weights protocol
  [ "$seed" = 0 ] && profile=true
  local data=(--dataset synthetic --set dataset_options.n_train="$N_TRAIN"
    --set dataset_options.n_test="$N_TEST")
  [ "$plugin" = vigor ] && data=(--dataset synthetic-vigor --split same-area)
  local args=(--plugins "$plugin" --regime quick --device cpu --results-dir "$OUT"
    --seed "$seed" "${data[@]}")
  python -m benchmark run "${args[@]}" --epochs "$EPOCHS" --set profile="$profile" || return 0
  # the newest checkpoint of this run (checkpoints/<name>-<training hash>/epoch-NNNNN/)
  weights=$(ls -d "$OUT"/checkpoints/*__"$plugin"-tiny-quick-seed"$seed"-*/epoch-*/model.safetensors \
    2>/dev/null | tail -n 1 || true)
  for protocol in $PROTOCOLS; do
    if [ -n "$weights" ]; then
      python -m benchmark eval "${args[@]}" --weights "$weights" --protocol "$protocol" \
        --set profile=false || true
    else # nothing to train (raw pixels): the same run under the protocol
      python -m benchmark run "${args[@]}" --epochs "$EPOCHS" --protocol "$protocol" \
        --set profile=false || true
    fi
  done
}
export -f job

for seed in $SEEDS; do
  for plugin in $PLUGINS; do echo "$seed $plugin"; done
done | xargs -P "${JOBS:-1}" -L 1 bash -c 'job "$@"' _
python -m benchmark leaderboard --results-dir "$OUT" --output "$PAGE"
