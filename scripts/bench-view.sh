#!/usr/bin/env bash
# The operator's view at fleet scale in a real headless Chromium, and what
# watching costs ingestion (the driver is benches/view.rs; its doc comment
# says what each figure means).
#
#   scripts/bench-view.sh [SIZE] [BENCH ARGS...]   SIZE of the workload the cost part replays: small | 2m | 10m (default 2m)
#
# Builds the release binary, generates workload v1 (as scripts/bench-replay.sh
# does) and runs `cargo bench --bench view -- --data FILE BENCH ARGS...`:
# the fleet page with 10,000 twins (interactive after load, pushed change
# visible) and the replay with nobody watching against ten event streams.
# BENCH ARGS: --twins, --loads, --pushes, --pairs, --parts fleet,cost.
#
# Environment:
#   BENCH_BIN          a twinstream binary to measure instead of the release build
#   BENCH_KEEP_DATA    keep generated workloads in this directory between runs
#   CARGO_TARGET_DIR   honoured by the builds (convention here:
#                      /root/.cache/twinstream/target)
set -euo pipefail

# shellcheck source=scripts/bench-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
bench_cargo_driver view 2m "$@"
