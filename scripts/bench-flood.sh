#!/usr/bin/env bash
# Flood benchmark: ten times the node's sustainable rate through MQTT and
# Kafka at once for five minutes, on a real Mosquitto and tansu, the node
# held to a CPU quota (the driver is benches/flood.rs; its doc comment says
# what each figure means and what the verdict checks).
#
#   scripts/bench-flood.sh [BENCH ARGS...]
#
# BENCH ARGS: --seconds (300), --factor (10), --cpu (0.25 cores),
# --quota-period-ms (100), --probe,
# --assets, --rss-bound-mib (512), --catch-up-limit, --catch-up-cpu,
# --catch-up-probe
# (`cargo bench --bench flood -- --help`). Needs root (the quota is a
# cgroup). Exits non-zero when the verdict fails (a reading lost or applied
# twice, a dead letter, memory over the bound) or something breaks.
#
# Environment:
#   BENCH_BIN         a twinstream binary to measure instead of the release build
#   MOSQUITTO         the broker executable (default: mosquitto on PATH)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
if [ -z "${MOSQUITTO:-}" ]; then
    MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
fi
[ -x "$MOSQUITTO" ] || { echo "no mosquitto (scripts/install-deps.sh installs it, or set MOSQUITTO)" >&2; exit 2; }
export MOSQUITTO
# shellcheck source=scripts/bench-lib.sh
. "$REPO/scripts/bench-lib.sh"
BIN=$(bench_binary) || exit 2
bench_header "$REPO" "$BIN"
echo "# Flood: ten times the sustainable rate through MQTT and Kafka"
TWINSTREAM_BIN=$BIN exec cargo bench --quiet --bench flood -- "$@"
