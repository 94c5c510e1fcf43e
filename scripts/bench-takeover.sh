#!/usr/bin/env bash
# Shard takeover benchmark: two twinstream nodes in a cluster on one real
# Kafka-compatible broker (tansu); one is killed (`kill -9`) and restarted
# RUNS times. The driver is benches/takeover.rs; its doc comment says what
# each figure means.
#
#   scripts/bench-takeover.sh [RUNS] [TWINS_PER_SHARD]     (default 5, 10000)
#
# Environment: BENCH_BIN (a binary to measure instead of the release build),
# BENCH_SESSION_TIMEOUT (the group's session timeout, default 6s).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/bench-lib.sh
. "$REPO/scripts/bench-lib.sh"
cd "$REPO"
BIN=$(bench_binary)
bench_header "$REPO" "$BIN"
TWINSTREAM_BIN=$BIN cargo bench --quiet --bench takeover -- "${1:-5}" "${2:-10000}"
