#!/usr/bin/env bash
# Kafka ingest benchmark: twinstream next to a bare rdkafka consumer on one
# real Kafka-compatible broker (tansu, SQLite storage), in the same run, then
# the latency produce -> twin update and produce -> alert out at half of
# twinstream's rate (phase C). The driver is benches/kafka.rs; its doc
# comment says what each figure means.
#
#   scripts/bench-kafka.sh [FILE]    FILE: workload v1 JSON lines
#                                    (default: generate 2M events)
#
# Environment: BENCH_BIN (a binary to measure instead of the release build),
# BENCH_KEEP_DATA (a directory for the generated workload, reused),
# BENCH_LATENCY_RATE (run phase C alone at this many records/s),
# BENCH_LATENCY_LINGER_MS and BENCH_LATENCY_FETCH_WAIT_MS (phase C's
# producer linger.ms, default 1, and consumers' fetch.wait.max.ms, default 10).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/bench-lib.sh
. "$REPO/scripts/bench-lib.sh"
cd "$REPO"

WL=$REPO/tests/workload
FILE=${1:-}
if [ -z "$FILE" ]; then
    DATA=${BENCH_KEEP_DATA:-$(mktemp -d)}
    FILE="$DATA/workload-2m.jsonl"
    if [ ! -s "$FILE" ]; then
        # The 2M-event workload v1, as scripts/bench-replay.sh makes it.
        python3 "$WL/gen_workload.py" --assets 2000 --out "$FILE" >/dev/null
    fi
fi
BIN=$(bench_binary)
bench_header "$REPO" "$BIN"
echo "# Kafka ingest: twinstream vs a bare rdkafka consumer, one tansu broker, 6 partitions"
TWINSTREAM_BIN=$BIN cargo bench --quiet --bench kafka -- "$FILE"
