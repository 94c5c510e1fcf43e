#!/usr/bin/env bash
# Cluster ingest scaling benchmark: one node, then three nodes of a cluster,
# applying the same records from one real Kafka-compatible broker (tansu),
# next to a bare consumer's rate, in one run. The driver is
# benches/cluster_ingest.rs; its doc comment says what each figure means.
#
#   scripts/bench-cluster-ingest.sh [RECORDS] [ASSETS] [ROUNDS] [--history]   (default 300000, 10000, 2)
#
# --history: each round also runs one node keeping a 1-minute tier of history
# (the changelog's cost of moving history with a shard).
#
# Environment: BENCH_BIN (a binary to measure instead of the release build),
# BENCH_TANSU_STORAGE=memory (tansu's in-memory storage: a faster broker).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/bench-lib.sh
. "$REPO/scripts/bench-lib.sh"
cd "$REPO"
BIN=$(bench_binary)
bench_header "$REPO" "$BIN"
HISTORY=()
ARGS=()
for a in "$@"; do
    if [ "$a" = --history ]; then HISTORY=(--history); else ARGS+=("$a"); fi
done
TWINSTREAM_BIN=$BIN cargo bench --quiet --bench cluster_ingest -- "${ARGS[0]:-300000}" "${ARGS[1]:-10000}" "${ARGS[2]:-2}" "${HISTORY[@]}"
