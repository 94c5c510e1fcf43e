#!/usr/bin/env bash
# One million twins on one node: memory with all of them in memory, restart
# to ready, and the first read of any twin after it (issue 9 targets: 1M
# twins under 2.5 GB RSS; ready in under 5 s; the first event for any twin
# applied within milliseconds of readiness).
#
#   scripts/bench-restart.sh            N=1000000 assets
#   N=100000 scripts/bench-restart.sh   (quicker)
#
# 1. load: writes one reading per sensor for N assets (4 sensors: every twin
#    holds 4 latest values and 4 open 1 s windows), runs `twinstream run` on
#    topologies/workload-v1.yaml reading that file until a durable checkpoint
#    covers every line, samples VmRSS / VmHWM, and stops it with SIGTERM
#    (with CRASH=1: SIGKILL, so the restart replays the store's log, which
#    RocksDB bounds at 64 MiB).
# 2. restart: starts it again on the same state with the HTTP API and times
#    spawn -> `/readyz` answering 200 (polled every 5 ms); then reads
#    READS random twins with `GET /twins/{id}?fresh=true` - each one is not
#    in memory, so the read restores it from the store and the twin itself
#    answers - and prints the latency of the first and p50 / p99 / max of
#    all; then samples RSS (N twins on disk, READS in memory).
#
# Environment: N, READS (default 200), CRASH, DEADLINE (seconds to wait for the
# load's checkpoint, default 900), BENCH_KEEP=1 (keep the state and logs and
# print where), BENCH_BIN, CARGO_TARGET_DIR.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${N:-1000000}
READS=${READS:-200}
DEADLINE=${DEADLINE:-900}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/twinstream-bench-restart.XXXXXX")
PID=
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    if [ -n "${BENCH_KEEP:-}" ]; then
        echo "kept: $TMP" >&2
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT

cd "$REPO"
# shellcheck source=scripts/bench-lib.sh
. "$REPO/scripts/bench-lib.sh"
BIN=$(bench_binary) || exit 2
bench_header "$REPO" "$BIN"

mib() { awk -v kb="$1" 'BEGIN {printf "%.1f", kb / 1024}'; }
now_ms() { date +%s%3N; }

data=$TMP/events.jsonl topo=$TMP/topology.yaml state=$TMP/state lines=$((N * 4))
write_twin_readings "$N" "$data"
workload_topology "$REPO" "$data" "$topo" || exit 2

# 1. load
"$BIN" --log-format json run "$topo" --state-dir "$state" 2>"$TMP/load.log" &
PID=$!
t0=$SECONDS
until grep '"checkpoint durable"' "$TMP/load.log" 2>/dev/null | grep -q "\"line\":$lines[,}]"; do
    kill -0 "$PID" 2>/dev/null || { echo "load: twinstream exited early:" >&2; tail -n 20 "$TMP/load.log" >&2; exit 1; }
    [ $((SECONDS - t0)) -lt "$DEADLINE" ] || { echo "load: no checkpoint at line $lines after ${DEADLINE}s" >&2; exit 1; }
    sleep 0.2
done
load_s=$((SECONDS - t0))
sleep 1 # settle
for _ in 1 2 3; do
    RSS_KB=$(status_kb VmRSS "$PID") HWM_KB=$(status_kb VmHWM "$PID")
    sleep 1
done
t=$(now_ms)
if [ -n "${CRASH:-}" ]; then
    kill -KILL "$PID"
    wait "$PID" 2>/dev/null || true
else
    kill -TERM "$PID"
    wait "$PID" || { echo "load: twinstream exited with $? after SIGTERM" >&2; tail -n 5 "$TMP/load.log" >&2; exit 1; }
fi
PID=
stop_ms=$(($(now_ms) - t))
echo "load      stop=$([ -n "${CRASH:-}" ] && echo SIGKILL || echo SIGTERM) twins=$N events=$lines load_s=$load_s steady_rss_mib=$(mib "$RSS_KB") peak_hwm_mib=$(mib "$HWM_KB") stop_ms=$stop_ms store_mib=$(du -sm "$state" | cut -f1)"

# 2. restart
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
t=$(now_ms)
"$BIN" --log-format json run "$topo" --state-dir "$state" --http "127.0.0.1:$PORT" 2>"$TMP/restart.log" &
PID=$!
until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/readyz")" = 200 ]; do
    kill -0 "$PID" 2>/dev/null || { echo "restart: twinstream exited:" >&2; tail -n 20 "$TMP/restart.log" >&2; exit 1; }
    [ $(($(now_ms) - t)) -lt 120000 ] || { echo "restart: not ready after 120 s" >&2; exit 1; }
    sleep 0.005
done
ready_ms=$(($(now_ms) - t))
rss_ready=$(status_kb VmRSS "$PID")
python3 - "$PORT" "$N" "$READS" <<'PY'
import json, random, sys, time, urllib.request
port, n, reads = map(int, sys.argv[1:])
rng = random.Random(9)
lat = []
for asset in rng.sample(range(n), reads):
    t = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/twins/pump-{asset:07d}?fresh=true") as r:
        body = json.load(r)
        assert r.headers["X-Twinstream-Read"] == "twin", r.headers
    lat.append((time.perf_counter() - t) * 1000)
    assert body["stats"]["events"] == 4, body
first = lat[0]
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(f"reads     n={reads} first_ms={first:.2f} p50_ms={q(0.5):.2f} p99_ms={q(0.99):.2f} max_ms={lat[-1]:.2f}")
PY
rss_after=$(status_kb VmRSS "$PID")
started=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk '$1 == "twinstream_twins_started_total{from=\"store\"}" {print $2}')
echo "restart   ready_ms=$ready_ms rss_at_ready_mib=$(mib "$rss_ready") rss_after_reads_mib=$(mib "$rss_after") twins_restored=${started:-0}"
kill -TERM "$PID"
wait "$PID" || true
PID=
