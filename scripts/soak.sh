#!/usr/bin/env bash
# The chaos soak, as long as you like (tests/soak.rs says what it does and
# checks; `make test` runs a short one).
#
#   scripts/soak.sh [SECONDS]            (default 900: about 180 faults)
#
#   SOAK_SEED=N       replay a run's schedule (every run prints its seed)
#   SOAK_MEAN_GAP=S   mean seconds between faults (default 5)
#   SOAK_RATE=N       readings per second, half MQTT, half Kafka (default 300)
#
# Needs root (each node's state directory is a tmpfs the soak fills) and
# what scripts/install-deps.sh installs. Prints the seed, every fault and
# the verdict; keeps the JSON summary, every process's log and every sink's
# output under $SOAK_OUT (default ~/.cache/twinstream/soak/SEED). Exits 0
# when the verdict is PASS.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh test
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/twinstream/target}
export CARGO_TOOLS_DIR=${CARGO_TOOLS_DIR:-$HOME/.cache/twinstream/tools}
export PATH="$CARGO_TOOLS_DIR/bin:$HOME/.cargo/bin:$PATH"
export SOAK_SECONDS=${1:-${SOAK_SECONDS:-900}}
export SOAK_SEED=${SOAK_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
out=${SOAK_OUT:-$HOME/.cache/twinstream/soak/$SOAK_SEED}
mkdir -p "$out"
export SOAK_REPORT="$out/report.json" SOAK_LOGS="$out/logs"

echo "soak: ${SOAK_SECONDS} s of faults, seed $SOAK_SEED; output in $out"
status=0
cargo test --release --test soak -- --nocapture 2>&1 | tee "$out/soak.log" || status=$?
if [ -f "$SOAK_REPORT" ]; then
    echo "soak: summary in $SOAK_REPORT"
fi
exit "$status"
