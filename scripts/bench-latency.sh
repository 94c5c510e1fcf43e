#!/usr/bin/env bash
# Apply latency under load (issue 9 targets: p99 under 5 ms at 1.5M events/s;
# p99 under 10 ms while a snapshot of 100k dirty twins is written).
#
#   scripts/bench-latency.sh [paced | snapshot]...    (default: both)
#
# Apply latency is the engine's own histogram twinstream_apply_latency_seconds:
# from a chunk decoded to its events applied by their twin (routing, worker
# mailbox, any snapshot work between inputs). The script replays with
# `--http` on a loopback port, scrapes /metrics every 0.2 s and computes
# quantiles from the last scrape before the replay ends (within a bucket:
# linear interpolation; the bucket bounds are printed too).
#
# * paced: workload v1 10m (10k twins) at --rate 1500000 (PACED_RATE).
# * snapshot: 100,000 assets x 4 sensors x 10 events/s x 2 s (8M events,
#   gen_workload.py --assets 100000 --seconds 2) at --rate 1000000: every
#   snapshot (interval 1 s) writes up to 100k dirty twins while events keep
#   arriving (SNAPSHOT_RATE). Also prints the snapshots' twins and durations
#   from the log.
# Besides the quantiles it prints the share of batches applied within 2.5, 5,
# 10, 25 and 50 ms (bucket bounds: exact), the figure to compare builds by
# when the node saturates; each second's p99 and share within 10 ms (so a
# steady stretch shows apart from the moments that cost: twins being
# created, every twin closing its windows at once); and (builds that export
# them) the quantiles of each hop of twinstream_hop_latency_seconds: decode,
# apply, output, durable.
#
# Environment: BENCH_KEEP_DATA (keep generated workloads,
# shared with bench-replay.sh), BENCH_BIN, CARGO_TARGET_DIR, BENCH_TOPOLOGY
# (a variant of topologies/workload-v1.yaml to replay with, e.g. another
# node.snapshot).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WL=$REPO/tests/workload
CASES=("$@")
[ ${#CASES[@]} -gt 0 ] || CASES=(paced snapshot)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/twinstream-bench-latency.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
DATA=${BENCH_KEEP_DATA:-$TMP}
mkdir -p "$DATA"

cd "$REPO"
# shellcheck source=scripts/bench-lib.sh
. "$REPO/scripts/bench-lib.sh"
BIN=$(bench_binary) || exit 2
bench_header "$REPO" "$BIN"

workload() { # name gen-args...
    local name=$1 data=$DATA/workload-$1.jsonl
    shift
    if [ ! -s "$data" ] || [ ! -s "$data.meta.json" ]; then
        python3 "$WL/gen_workload.py" "$@" --out "$data" >/dev/null
    fi
    echo "$data"
}

# run NAME DATA RATE: replays DATA at RATE with the API, scraping /metrics.
run() {
    local name=$1 data=$2 rate=$3
    local port state=$TMP/state-$1 log=$TMP/$1.log
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    rm -rf "$state"
    "$BIN" --log-format json replay "${BENCH_TOPOLOGY:-topologies/workload-v1.yaml}" "$data" --report "$TMP/$name.json" \
        --state-dir "$state" --rate "$rate" --http "127.0.0.1:$port" 2>"$log" &
    local pid=$!
    python3 - "$port" "$pid" "$name" "$TMP/$name.json" "$log" <<'PY'
import json, os, re, sys, time, urllib.request
port, pid, name, report, log = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
last = None
def histogram(name, labels="", text=None):
    """The buckets and count of histogram `name` whose labels before `le`
    are `labels` (e.g. 'hop="apply",'), in `text` (the last scrape)."""
    buckets, count = [], 0
    for line in (text or last).splitlines():
        m = re.match(re.escape(name) + r'_bucket\{' + re.escape(labels) + r'le="([^"]+)"\} (\S+)', line)
        if m:
            buckets.append((float(m.group(1)), float(m.group(2))))
        m = re.match(re.escape(name) + r'_count' + (re.escape("{" + labels.rstrip(",") + "}") if labels else "") + r' (\S+)', line)
        if m:
            count = float(m.group(1))
    return sorted(buckets), count
# (time, apply-latency buckets and count) of every scrape: the per-second figures.
series = []
while True:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            last = r.read().decode()
        series.append((time.monotonic(), *histogram("twinstream_apply_latency_seconds", text=last)))
    except OSError:
        pass
    # The replay is the shell's child: gone, or a zombie, once it exited.
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
    except FileNotFoundError:
        break
    time.sleep(0.2)
if last is None:
    sys.exit(f"{name}: /metrics never answered")
buckets, count = histogram("twinstream_apply_latency_seconds")
def q(p, buckets=buckets, count=count):
    want, lo, below = p * count, 0.0, 0.0
    for le, n in buckets:
        if n >= want:
            frac = 0 if n == below else (want - below) / (n - below)
            return lo + (min(le, 300) - lo) * frac, lo, le
        lo, below = le, n
    return float("inf"), lo, float("inf")
for _ in range(100):  # the report is written as the process exits
    if os.path.exists(report):
        break
    time.sleep(0.1)
r = json.load(open(report)) if os.path.exists(report) else {}
snaps = []
for l in open(log):
    try:
        j = json.loads(l)
    except ValueError:
        continue
    if j.get("message") == "checkpoint durable" and j.get("twins", 0) > 0:
        snaps.append((j["twins"], j["ms"]))
out = [f"{name:9s} events={r.get('events', '?')} engine_events_per_s={r.get('events_per_second', 0):.0f} batches={count:.0f}"]
for p in (0.5, 0.99, 0.999):
    v, lo, hi = q(p)
    out.append(f"p{p * 100:g}_ms={v * 1e3:.2f} (bucket {lo * 1e3:g}-{hi * 1e3:g})")
print(" ".join(out))
# The share of batches applied within some bucket bounds (exact, unlike the
# interpolated quantiles): comparable between builds when a node saturates.
within = {le: n for le, n in buckets}
shares = [f"{ms:g}ms={within[ms / 1e3] / count * 100:.1f}%" for ms in (2.5, 5, 10, 25, 50) if ms / 1e3 in within and count]
print(f"{'':9s} within {' '.join(shares)}")
# Each second of the run on its own (from the first batch applied): the
# tail of a steady stretch apart from the moments that cost (twins being
# created, every twin closing its windows at once).
seconds = []
started = next((s for s in series if s[2] > 0), None)
if started:
    prev = started
    for s in series:
        if s[0] - prev[0] >= 1.0 or (s is series[-1] and s[0] > prev[0]):
            n = s[2] - prev[2]
            if n > 0:
                d = [(le, b - a) for (le, b), (_, a) in zip(s[1], prev[1])]
                seconds.append((q(0.99, d, n)[0] * 1e3, dict(d).get(0.005, 0) / n * 100, dict(d).get(0.01, 0) / n * 100))
            prev = s
if seconds:
    ok = sum(1 for p99, _, _ in seconds if p99 < 10)
    print(f"{'':9s} per second: p99 under 10 ms in {ok} of {len(seconds)}; p99_ms=[{' '.join(f'{p:.1f}' for p, _, _ in seconds)}]")
    print(f"{'':9s} per second: within 10ms %=[{' '.join(f'{w:.1f}' for _, _, w in seconds)}]")
# Each hop of the pipeline (builds that export twinstream_hop_latency_seconds).
for hop in ("decode", "apply", "output", "durable", "end_to_end"):
    hb, hc = histogram("twinstream_hop_latency_seconds", f'hop="{hop}",')
    if hc:
        qs = " ".join(f"p{p * 100:g}_ms={q(p, hb, hc)[0] * 1e3:.2f}" for p in (0.5, 0.99, 0.999))
        print(f"{'':9s} hop {hop:10s} n={hc:.0f} {qs}")
if snaps:
    big = max(snaps)
    print(f"{'':9s} snapshots={len(snaps)} largest_twins={big[0]} its_ms={big[1]} all(twins,ms)={snaps[:12]}")
PY
    wait "$pid" || { echo "$name: replay failed" >&2; tail -n 5 "$log" >&2; return 1; }
}

for c in "${CASES[@]}"; do
    case $c in
        paced) run paced "$(workload 10m)" "${PACED_RATE:-1500000}" ;;
        snapshot) run snapshot "$(workload 100k-2s --assets 100000 --seconds 2)" "${SNAPSHOT_RATE:-1000000}" ;;
        *) echo "unknown case '$c' (paced, snapshot)" >&2; exit 2 ;;
    esac
done
