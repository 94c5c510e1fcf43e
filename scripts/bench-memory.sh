#!/usr/bin/env bash
# Memory per active twin (DESIGN.md target: at most 2 KB per twin with 4
# sensors and windows).
#
#   scripts/bench-memory.sh            N1=100000 N2=300000 assets
#   N1=20000 N2=60000 scripts/bench-memory.sh     (quicker)
#
# For each N, writes a JSON-lines file with one reading per sensor for N assets
# (4 sensors, one timestamp: every twin ends up with 4 latest values and 4 open
# 1 s windows), runs `twinstream run` on a workload-v1 topology whose file
# source reads it (run mode keeps tailing after EOF), waits until a durable
# checkpoint covers every line, samples VmRSS / VmHWM from /proc for ~5 s
# (last sample kept), and stops it with SIGTERM. Prints per N the steady RSS
# and the peak (VmHWM), then the cost per twin: (RSS2 - RSS1) / (N2 - N1), and
# the same for the peak.
#
# Environment: WORKLOAD_TOPOLOGY (default topologies/workload-v1.yaml; e.g.
# topologies/workload-v1-model.yaml for twins with a model), N1, N2 (asset counts), DEADLINE (seconds to wait for the
# checkpoint, default 600), CARGO_TARGET_DIR (honoured by the release build).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N1=${N1:-100000}
N2=${N2:-300000}
DEADLINE=${DEADLINE:-600}
[ "$N2" -gt "$N1" ] || { echo "N2 ($N2) must be greater than N1 ($N1)" >&2; exit 2; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/twinstream-bench-memory.XXXXXX")
PID=
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

cd "$REPO"
# shellcheck source=scripts/bench-lib.sh
. "$REPO/scripts/bench-lib.sh"
BIN=$(bench_binary) || exit 2

bench_header "$REPO" "$BIN"

# measure N -> sets RSS_KB, HWM_KB
measure() {
    local n=$1 lines=$(($1 * 4))
    local data=$TMP/events-$n.jsonl topo=$TMP/topology-$n.yaml state=$TMP/state-$n log=$TMP/run-$n.log
    write_twin_readings "$n" "$data"
    workload_topology "$REPO" "$data" "$topo" || exit 2

    "$BIN" --log-format json run "$topo" --state-dir "$state" 2>"$log" &
    PID=$!
    local t0=$SECONDS
    until grep '"checkpoint durable"' "$log" 2>/dev/null | grep -q "\"line\":$lines[,}]"; do
        if ! kill -0 "$PID" 2>/dev/null; then
            echo "N=$n: twinstream exited early:" >&2
            tail -n 20 "$log" >&2
            exit 1
        fi
        if [ $((SECONDS - t0)) -ge "$DEADLINE" ]; then
            echo "N=$n: no durable checkpoint at line $lines after ${DEADLINE}s:" >&2
            tail -n 5 "$log" >&2
            exit 1
        fi
        sleep 0.2
    done
    sleep 1 # settle
    for _ in 1 2 3 4 5; do
        RSS_KB=$(status_kb VmRSS "$PID")
        HWM_KB=$(status_kb VmHWM "$PID")
        sleep 1
    done
    kill -TERM "$PID"
    wait "$PID" || { echo "N=$n: twinstream exited with $? after SIGTERM:" >&2; tail -n 5 "$log" >&2; }
    PID=
    rm -rf "$state" "$data"
    printf '%-8s %8d %14.1f %14.1f\n' N="$n" "$lines" "$(echo "$RSS_KB" | awk '{print $1/1024}')" "$(echo "$HWM_KB" | awk '{print $1/1024}')"
}

printf '%-8s %8s %14s %14s\n' assets events steady_rss_mib peak_hwm_mib
measure "$N1"
RSS1=$RSS_KB HWM1=$HWM_KB
measure "$N2"
RSS2=$RSS_KB HWM2=$HWM_KB
awk -v r1="$RSS1" -v r2="$RSS2" -v h1="$HWM1" -v h2="$HWM2" -v n1="$N1" -v n2="$N2" 'BEGIN {
    printf "per twin: steady %.0f B, peak %.0f B  ((X2 - X1) / (%d - %d))\n", (r2 - r1) * 1024 / (n2 - n1), (h2 - h1) * 1024 / (n2 - n1), n2, n1
}'
