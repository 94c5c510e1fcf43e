#!/usr/bin/env bash
# HTTP read benchmark: GET /twins/{id} latency at 2,000 requests/s while
# replaying workload v1, and how much the query load slows ingestion (the
# driver is benches/http.rs; its doc comment says what each figure means).
#
#   scripts/bench-http.sh [SIZE] [BENCH ARGS...]   SIZE: small | 2m | 10m (default 10m: the load counts after a 2 s warm-up, and 2m replays in ~1 s)
#
# Builds the release binary, generates the workload (gen_workload.py, as
# scripts/bench-replay.sh does) and runs `cargo bench --bench http -- --data
# FILE BENCH ARGS...` with TWINSTREAM_BIN pointing at the binary. It prints
# four phases - R (replay, no queries), Q (replay with queries), H0 (replay
# at half R's rate), H (the same with queries) - then the targets (p99 < 2 ms
# in H, H/H0 >= 0.90), reported, never asserted. BENCH ARGS: --rps,
# --connections, --ids, --seed.
#
# Environment:
#   BENCH_BIN          a twinstream binary to measure instead of the release build
#   BENCH_KEEP_DATA    keep generated workloads in this directory between runs
#   CARGO_TARGET_DIR   honoured by the builds (convention here:
#                      /root/.cache/twinstream/target)
set -euo pipefail

# shellcheck source=scripts/bench-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
bench_cargo_driver http 10m "$@"
