#!/usr/bin/env bash
# MQTT ingest benchmark: twinstream next to a bare rumqttc subscriber on one
# real Mosquitto, in the same run (the driver is benches/mqtt.rs; its doc
# comment says what each figure means).
#
#   scripts/bench-mqtt.sh [N] [BENCH ARGS...]     N: messages per phase (default 200000)
#
# Builds the release binary, then runs `cargo bench --bench mqtt -- --messages N
# BENCH ARGS...` with TWINSTREAM_BIN pointing at it. Per Mosquitto setting
# (`--inflight 0,20` by default: max_inflight_messages unlimited, then the
# broker's default 20) it starts a fresh broker on 127.0.0.1 and an ephemeral
# port and prints:
#
#   A  the bare subscriber's rate (QoS 1, acks at once)
#   B  twinstream's ingest rate (QoS 1, acks once in the inbox, then once a
#      checkpoint is durable: `--ack-after inbox,checkpoint`) and B/A
#   C  latency publish -> twin update and publish -> alert out at half of A's
#      rate: p50/p99/p99.9/max
#
# then a summary table and the targets (B/A >= 0.90, p99 < 10 ms), reported,
# never asserted. Other BENCH ARGS: --assets, --inflight, --ack-after, --sync, --snapshot-interval,
# --latency-secs, --throttled-budget, --timeout (`cargo bench --bench mqtt --
# --help`). Exits non-zero only on a real failure (a timeout, a broker or
# twinstream error), never on a missed target.
#
# Environment:
#   BENCH_BIN         a twinstream binary to measure instead of the release build
#   MOSQUITTO         the broker executable (default: mosquitto on PATH)
#   CARGO_TARGET_DIR  honoured by the builds (convention here:
#                     /root/.cache/twinstream/target)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

N=200000
if [ $# -gt 0 ] && [[ $1 != -* ]]; then
    N=$1
    shift
fi
[[ $N =~ ^[1-9][0-9]*$ ]] || { echo "N must be a positive number of messages, not '$N'" >&2; exit 2; }

if [ -z "${MOSQUITTO:-}" ]; then
    if command -v mosquitto >/dev/null; then
        MOSQUITTO=$(command -v mosquitto)
    elif [ -x /usr/sbin/mosquitto ]; then
        MOSQUITTO=/usr/sbin/mosquitto
    else
        echo "no mosquitto (scripts/install-deps.sh installs it, or set MOSQUITTO)" >&2
        exit 2
    fi
fi
export MOSQUITTO

cd "$REPO"
# shellcheck source=scripts/bench-lib.sh
. "$REPO/scripts/bench-lib.sh"
BIN=$(bench_binary) || exit 2

bench_header "$REPO" "$BIN"
TWINSTREAM_BIN=$BIN exec cargo bench --quiet --bench mqtt -- --messages "$N" "$@"
