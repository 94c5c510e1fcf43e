#!/usr/bin/env bash
# History benchmarks (issue 25), each measured side by side in one run:
#
#   scripts/bench-history.sh [--pairs N] [--sensors N] [--rps N] [--parts 123]
#                            [--api-priority realtime|high|normal]
#
# 1. Disk: a day of one reading per second for --sensors sensors (default
#    50; a slow sine, a fast one and noise, 0.001 resolution), replayed
#    (checkpoints every second) into a 1-minute tier kept 7 days, then into
#    a raw tier kept 2 days; the history column family's table files after a
#    full compaction (`replay --compact`), per sensor-day and per reading.
# 2. Replay: workload v1 10M with topologies/workload-v1.yaml and with
#    topologies/workload-v1-history-1m.yaml (a 1-minute tier on every
#    sensor), alternating, --pairs times (default 3); both must MATCH
#    reference.py; the geometric mean of history/plain throughput.
# 3. Query: that day of history for the first 10 sensors followed by the
#    10M workload, replayed with the 1-minute topology at half the plain
#    replay rate of (2) while `GET /twins/{id}/history?step=1m` over the
#    24 hours (1,440 points) runs at --rps requests/s (default 100;
#    benches/http.rs: open loop, latency from the scheduled send, HDR
#    histogram; counted after 3 s, once the day is checkpointed).
#    --api-priority sets the topology's node.http.priority (default: the
#    topology's default, realtime).
#
# --parts picks which to run (default 123; 3 without 2 paces at
# $HALF_RATE, default 1,500,000 events/s).
#
# Environment: BENCH_KEEP_DATA keeps generated data between runs;
# CARGO_TARGET_DIR as for the build.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WL=$REPO/tests/workload
PAIRS=3
SENSORS=50
RPS=100
PARTS=123
API_PRIORITY=
while [ $# -gt 0 ]; do
    case $1 in
        --pairs) PAIRS=$2; shift ;;
        --sensors) SENSORS=$2; shift ;;
        --rps) RPS=$2; shift ;;
        --parts) PARTS=$2; shift ;;
        --api-priority) API_PRIORITY=$2; shift ;;
        *) echo "unknown argument '$1'" >&2; exit 2 ;;
    esac
    shift
done

cd "$REPO"
# shellcheck source=scripts/bench-lib.sh
. "$REPO/scripts/bench-lib.sh"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/twinstream-bench-history.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
DATA=$(bench_data_dir "$TMP")
BIN=$(bench_binary) || exit 2
bench_header "$REPO" "$BIN"

DAY_START=1699913600000 # 24 h before the workload's first event time
day=$DATA/history-day-$SENSORS.jsonl
if [ ! -s "$day" ]; then
    python3 - "$SENSORS" "$DAY_START" "$day" <<'EOF'
import math, random, sys
n, t0, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rnd = random.Random(25)
with open(out + ".tmp", "w") as f:
    for s in range(86400):
        ts = t0 + s * 1000
        slow = 5 * math.sin(2 * math.pi * s / 86400)
        fast = 0.5 * math.sin(2 * math.pi * s / 600)
        f.write("".join('{"asset":"pump-h%04d","sensor":"temperature","ts":%d,"value":%.3f}\n'
                        % (a, ts, 20 + a % 7 + slow + fast + rnd.gauss(0, 0.05)) for a in range(n)))
import os
os.replace(out + ".tmp", out)
EOF
fi

day_topology() { # $1 = history mapping
    cat >"$TMP/day.yaml" <<EOF
version: 1
node: { name: history-bench, snapshot: { interval: 1s } }
asset_types:
  pump:
    sensors: { temperature: { unit: degC } }
    history: $1
assets: [{ id: "pump-*", type: pump }]
sources:
  - { name: events, type: file, decode: { asset: asset, sensor: sensor, ts: ts, value: value } }
EOF
}

if [[ $PARTS == *1* ]]; then
echo "## 1. disk: $SENSORS sensors x 1 day at 1 Hz ($((SENSORS * 86400)) readings)"
for variant in "1m" "raw"; do
    case $variant in
        1m) day_topology "{ raw: off, tiers: [{ every: 1m, keep: 7d }], events: off }" ;;
        raw) day_topology "{ raw: 2d, tiers: off, events: off }" ;;
    esac
    rm -rf "$TMP/state"
    # After a full compaction a page is one value, however many checkpoint
    # operands made it: the size does not depend on the replay's pace.
    "$BIN" replay "$TMP/day.yaml" "$day" --report "$TMP/day.json" --state-dir "$TMP/state" --compact 2>"$TMP/day.err" ||
        { tail -n 20 "$TMP/day.err" >&2; exit 1; }
    python3 - "$TMP/day.json" "$SENSORS" "$variant" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
n, variant = int(sys.argv[2]), sys.argv[3]
b = r["history_disk_bytes"]
if variant == "1m":
    print("1m tier: %d bytes for %d buckets: %.1f KB per sensor-day (%.1f bytes per bucket); replay %.0f events/s"
          % (b, r["history_buckets"], b / n / 1000, b / r["history_buckets"], r["events_per_second"]))
else:
    print("raw tier: %d bytes for %d readings: %.2f bytes per reading, %.1f KB per sensor-day; replay %.0f events/s"
          % (b, r["history_raw"], b / r["history_raw"], b / n / 1000, r["events_per_second"]))
EOF
done
fi

data=$DATA/workload-10m.jsonl
ref=$DATA/ref-10m.json
[[ $PARTS == *[23]* ]] || exit 0
bench_workload 10m "$DATA" "$([[ $PARTS == *2* ]] && echo ref)" || exit 2
plain_rates=("$((${HALF_RATE:-1500000} * 2))")
if [[ $PARTS == *2* ]]; then
echo "## 2. replay of workload v1 10M: plain vs a 1-minute tier on every sensor"
plain_rates=()
for p in $(seq 1 "$PAIRS"); do
    for topo in workload-v1 workload-v1-history-1m; do
        rm -rf "$TMP/state"
        "$BIN" replay "topologies/$topo.yaml" "$data" --report "$TMP/r.json" --state-dir "$TMP/state" 2>"$TMP/r.err" ||
            { tail -n 20 "$TMP/r.err" >&2; exit 1; }
        verdict=$(python3 "$WL/compare.py" "$ref" "$TMP/r.json" | tail -n1 | cut -d: -f1)
        eps=$(python3 -c "import json,sys; print(int(json.load(open(sys.argv[1]))['events_per_second']))" "$TMP/r.json")
        echo "pair $p $topo: $eps events/s $verdict"
        [ "$verdict" = MATCH ] || exit 1
        echo "$p $topo $eps" >>"$TMP/rates"
        [ $topo = workload-v1 ] && plain_rates+=("$eps")
    done
done
python3 - "$TMP/rates" <<'EOF'
import math, sys
rows = [l.split() for l in open(sys.argv[1])]
pairs = {}
for p, topo, eps in rows:
    pairs.setdefault(p, {})[topo] = float(eps)
ratios = [v["workload-v1-history-1m"] / v["workload-v1"] for v in pairs.values()]
print("history/plain per pair: %s; geometric mean %.2f" % (" ".join("%.2f" % r for r in ratios),
      math.exp(sum(map(math.log, ratios)) / len(ratios))))
EOF
fi

[[ $PARTS == *3* ]] || exit 0
echo "## 3. a 24-hour query at 1-minute steps while ingesting at half the plain replay rate"
half=$(printf '%s\n' "${plain_rates[@]}" | sort -n | awk '{a[NR]=$1} END {print int(a[int((NR+1)/2)] / 2)}')
combined=$DATA/history-day10-workload-10m.jsonl
if [ ! -s "$combined" ]; then
    grep -E '"pump-h000[0-9]"' "$day" >"$combined.tmp"
    cat "$data" >>"$combined.tmp"
    mv "$combined.tmp" "$combined"
fi
path="/twins/{id}/history?sensor=temperature&step=1m&from=$DAY_START&to=$((DAY_START + 86400000))"
query_topology=topologies/workload-v1-history-1m.yaml
if [ -n "$API_PRIORITY" ]; then
    query_topology=$TMP/query.yaml
    sed -e "s|^node:\$|node:\n  http: { priority: $API_PRIORITY }|" topologies/workload-v1-history-1m.yaml >"$query_topology"
    echo "  # node.http.priority: $API_PRIORITY"
fi
cargo bench --quiet --bench http -- --data "$combined" --topology "$query_topology" \
    --ids 10 --rps "$RPS" --connections 4 --warmup 3 --rate "$half" --only-paced --path "$path" --target-ms 10 |
    sed -e "s|^|  |"
