#!/usr/bin/env bash
# Cluster ingest scaling benchmark: one node, then three nodes of a cluster,
# applying the same records from one real Kafka-compatible broker (tansu),
# next to a bare consumer's rate, in one run. The driver is
# benches/cluster_ingest.rs; its doc comment says what each figure means.
#
#   scripts/bench-cluster-ingest.sh [RECORDS] [ASSETS] [ROUNDS]   (default 300000, 10000, 2)
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
TWINSTREAM_BIN=$BIN cargo bench --quiet --bench cluster_ingest -- "${1:-300000}" "${2:-10000}" "${3:-2}"
