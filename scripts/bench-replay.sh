#!/usr/bin/env bash
# End-to-end replay benchmark on workload v1 (tests/workload/WORKLOAD.md).
#
#   scripts/bench-replay.sh [--semantics] [--model] [SIZE...]   SIZE: small | 2m | 10m   (default: 2m 10m)
#
# Per size: generates the workload with gen_workload.py, computes the reference
# outputs with reference.py (once), replays it with the release binary and
# RocksDB snapshots on (`twinstream replay topologies/workload-v1.yaml FILE
# --report R --state-dir FRESH`), and prints one line:
#
#   size events wall_s events_per_s engine_events_per_s peak_rss_mib result
#
# wall_s is the whole process (start-up, replay, final snapshot, report);
# engine_events_per_s is what the engine itself measured (report field).
# result is compare.py's verdict against the reference (MATCH / DIFFER).
# After it, a `#` line with the reference point measured in the same run: a
# single-threaded serde_json decode-only loop over the same file
# (DECODE_CEILING_FILE, benches/decode.rs), and the engine's ratio to it.
# Exits non-zero if any size DIFFERs or a replay fails.
#
# --semantics: after each conformance replay, replays the same file with
# topologies/workload-v1-semantics.yaml (staleness timers on every sensor, two
# tumbling windows per sensor, five rules and a join) and with
# workload-v1-semantics-sliding.yaml (the second window sliding), and prints
# their lines (result `n/a`: they close more windows than reference.py knows)
# and each one's throughput ratio to the conformance run, side by side.
#
# --model: after each conformance replay, replays the same file with
# topologies/workload-v1-model.yaml (a 2-state model filtering vibration on
# every asset; the outputs are the workload's, so it must MATCH too) and
# prints its line and its throughput ratio to the conformance run.
#
# Environment:
#   BENCH_KEEP_DATA    a directory to keep generated workloads and reference
#                      results in between runs (keyed by size); without it
#                      everything lives in a temporary directory removed on exit
#   CARGO_TARGET_DIR   honoured by the release build (convention here:
#                      /root/.cache/twinstream/target)
#
# Generating 10m takes ~1-2 min and ~835 MB; reference.py on it several
# minutes. Use BENCH_KEEP_DATA to pay that once.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WL=$REPO/tests/workload
TOPO=$REPO/topologies/workload-v1.yaml


SEMANTICS=0
MODEL=0
while [ $# -gt 0 ]; do
    case $1 in
        --semantics) SEMANTICS=1 ;;
        --model) MODEL=1 ;;
        *) break ;;
    esac
    shift
done
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(2m 10m)
for s in "${SIZES[@]}"; do
    case $s in small | 2m | 10m) ;; *) echo "unknown size '$s' (small, 2m, 10m)" >&2; exit 2 ;; esac
done

cd "$REPO"
# shellcheck source=scripts/bench-lib.sh
. "$REPO/scripts/bench-lib.sh"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/twinstream-bench-replay.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
DATA=$(bench_data_dir "$TMP")
BIN=$(bench_binary) || exit 2

bench_header "$REPO" "$BIN"
DECODE_BIN=$(cargo bench --quiet --bench decode --no-run --message-format=json-render-diagnostics |
    python3 -c 'import json, sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "decode":
        print(m["executable"])')
ESTIMATES=$(dirname "$(dirname "$BIN")")/criterion/decode
if [ -f "$ESTIMATES/decoder/new/estimates.json" ] && [ -f "$ESTIMATES/serde-borrowed/new/estimates.json" ]; then
    python3 - "$ESTIMATES" <<'EOF'
import json, os, sys, time
d = sys.argv[1]
ns = {k: json.load(open(f"{d}/{k}/new/estimates.json"))["mean"]["point_estimate"] for k in ("decoder", "serde-borrowed")}
when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(os.path.getmtime(f"{d}/decoder/new/estimates.json")))
print("# decode bench (cargo bench --bench decode, %s UTC, one thread, 50k lines): decoder %.2fM lines/s, serde_json ceiling %.2fM lines/s"
      % (when, 50000 / ns["decoder"] * 1e3, 50000 / ns["serde-borrowed"] * 1e3))
EOF
fi

have_time=0
[ -x /usr/bin/time ] && have_time=1

# Runs "$@", sets WALL (seconds) and PEAK_KB (max resident set, KiB).
measure() {
    local t0 t1 rc=0
    t0=$(date +%s%N)
    if [ $have_time = 1 ]; then
        /usr/bin/time -f %M -o "$TMP/time.out" "$@" || rc=$?
        PEAK_KB=$(tail -n1 "$TMP/time.out")
    else
        "$@" &
        local pid=$! hwm
        PEAK_KB=0
        while kill -0 "$pid" 2>/dev/null; do
            hwm=$(awk '/^VmHWM:/{print $2}' "/proc/$pid/status" 2>/dev/null || true)
            [ -n "$hwm" ] && PEAK_KB=$hwm
            sleep 0.1
        done
        wait "$pid" || rc=$?
    fi
    t1=$(date +%s%N)
    WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}')
    return $rc
}

# Prints one result line from a report and the last measurement.
print_line() {
    python3 - "$1" "$WALL" "$PEAK_KB" "$2" "$3" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
wall, peak_kb, size, verdict = float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
ev = r["events"]
print("%-8s %10d %8.2f %12.0f %12.0f %10.1f  %s" % (size, ev, wall, ev / wall, r.get("events_per_second", 0), peak_kb / 1024, verdict))
EOF
}

printf '%-8s %10s %8s %12s %12s %10s  %s\n' size events wall_s events/s engine_ev/s peak_mib result
failed=0
for size in "${SIZES[@]}"; do
    data=$DATA/workload-$size.jsonl
    ref=$DATA/ref-$size.json
    bench_workload "$size" "$DATA" ref || exit 2

    state=$TMP/state-$size
    report=$TMP/report-$size.json
    rm -rf "$state"
    if ! measure "$BIN" replay "$TOPO" "$data" --report "$report" --state-dir "$state" 2>"$TMP/replay-$size.err"; then
        echo "$size: replay failed:" >&2
        tail -n 20 "$TMP/replay-$size.err" >&2
        failed=1
        continue
    fi
    verdict=$(python3 "$WL/compare.py" "$ref" "$report" | tail -n1 | cut -d: -f1) || true
    [ "$verdict" = MATCH ] || { failed=1; python3 "$WL/compare.py" "$ref" "$report" >&2 || true; }
    print_line "$report" "$size" "$verdict"
    base_wall=$WALL
    # The reference point, measured now on the same machine: one thread of
    # serde_json over the same file (benches/decode.rs `ceiling`).
    if ceiling=$(DECODE_CEILING_FILE=$data "$DECODE_BIN" 2>/dev/null | grep '^ceiling_'); then
        python3 - "$report" "$ceiling" "$(nproc)" <<'EOF2'
import json, sys
r = json.load(open(sys.argv[1]))
c = float(sys.argv[2].split()[0].split("=")[1])
cores = int(sys.argv[3])
e = r["events_per_second"]
print("# %s: decode-only ceiling %.2fM events/s on one thread (x%d cores = %.2fM); engine/ceiling = %.2f of one thread, %.2f of all cores"
      % (sys.argv[1].split("report-")[-1][:-5], c / 1e6, cores, c * cores / 1e6, e / c, e / (c * cores)))
EOF2
    fi
    rm -rf "$state"
    if [ $SEMANTICS = 1 ]; then
        for variant in semantics semantics-sliding; do
            sreport=$TMP/report-$size-$variant.json
            rm -rf "$state"
            if ! measure "$BIN" replay "$REPO/topologies/workload-v1-$variant.yaml" "$data" --report "$sreport" \
                --state-dir "$state" 2>"$TMP/replay-$size-$variant.err"; then
                echo "$size: $variant replay failed:" >&2
                tail -n 20 "$TMP/replay-$size-$variant.err" >&2
                failed=1
                continue
            fi
            print_line "$sreport" "$size+${variant/semantics/sem}" "n/a"
            awk -v s="$size" -v v="$variant" -v a="$base_wall" -v b="$WALL" \
                'BEGIN{printf "# %s: %s/conformance throughput = %.2f (wall %.2f s vs %.2f s)\n", s, v, a/b, b, a}'
        done
    fi
    if [ $MODEL = 1 ]; then
        mreport=$TMP/report-$size-model.json
        rm -rf "$state"
        if measure "$BIN" replay "$REPO/topologies/workload-v1-model.yaml" "$data" --report "$mreport" \
            --state-dir "$state" 2>"$TMP/replay-$size-model.err"; then
            mverdict=$(python3 "$WL/compare.py" "$ref" "$mreport" | tail -n1 | cut -d: -f1) || true
            [ "$mverdict" = MATCH ] || failed=1
            print_line "$mreport" "$size+model" "$mverdict"
            awk -v s="$size" -v a="$base_wall" -v b="$WALL" \
                'BEGIN{printf "# %s: model/conformance throughput = %.2f (wall %.2f s vs %.2f s)\n", s, a/b, b, a}'
        else
            echo "$size: model replay failed:" >&2
            tail -n 20 "$TMP/replay-$size-model.err" >&2
            failed=1
        fi
    fi
    rm -rf "$state"
done
exit $failed
