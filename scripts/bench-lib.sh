# Shared by the bench-*.sh scripts (sourced, not run).

# Prints the path of the twinstream binary to measure: $BENCH_BIN if set (e.g.
# a build with `--no-default-features`: the system allocator instead of
# mimalloc), else the release build, built now if needed (cargo says where).
bench_binary() {
    local bin=${BENCH_BIN:-}
    if [ -z "$bin" ]; then
        bin=$(cargo build --quiet --release --bin twinstream --message-format=json-render-diagnostics |
            python3 -c 'import json, sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "twinstream":
        print(m["executable"])')
    fi
    [ -x "$bin" ] || { echo "no twinstream binary to measure (${bin:-release build failed})" >&2; return 2; }
    echo "$bin"
}

# One line describing the machine, and one the binary and its commit.
bench_header() {
    local repo=$1 bin=$2
    echo "# $(date -u '+%Y-%m-%dT%H:%M:%SZ')  $(nproc) cpus  $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')  $(free -g | awk '/^Mem:/{print $2 " GiB"}')"
    echo "# twinstream $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$repo" diff --quiet HEAD 2>/dev/null || echo '+dirty')  $bin"
}

# The kB value of field $1 (VmRSS, VmHWM) in /proc/$2/status.
status_kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$2/status"; }

# Writes one reading per sensor for $1 assets to $2 (4 sensors, one
# timestamp: every twin ends up with 4 latest values and 4 open 1 s windows
# of topologies/workload-v1.yaml).
write_twin_readings() {
    python3 -c 'import sys
n = int(sys.argv[1])
rows = (("vibration", "3.5"), ("temperature", "60.25"), ("pressure", "5.0"), ("current", "35.5"))
with open(sys.argv[2], "w") as f:
    for i in range(n):
        f.write("".join("{\"asset\":\"pump-%07d\",\"sensor\":\"%s\",\"ts\":1700000000123,\"value\":%s}\n" % (i, s, v) for s, v in rows))' "$1" "$2"
}

# Writes to $3 topologies/workload-v1.yaml (in repo $1; $WORKLOAD_TOPOLOGY
# instead when set) with its file source
# reading $2.
workload_topology() {
    sed -e "s|^    type: file .*|    type: file\n    path: \"$2\"|" "${WORKLOAD_TOPOLOGY:-$1/topologies/workload-v1.yaml}" >"$3"
    grep -q "path: \"$2\"" "$3" || { echo "could not set the source path in $3" >&2; return 2; }
}

# Prints the directory generated workloads live in: $BENCH_KEEP_DATA
# (created, absolute) when set, so they are paid for once, else $1 (the
# caller's temporary directory).
bench_data_dir() {
    if [ -n "${BENCH_KEEP_DATA:-}" ]; then
        mkdir -p "$BENCH_KEEP_DATA"
        (cd "$BENCH_KEEP_DATA" && pwd)
    else
        echo "$1"
    fi
}

# Makes sure $2/workload-$1.jsonl holds workload v1 of size $1 (small, 2m,
# 10m), generating it unless a complete one is there (the generator writes
# its sidecar last); with a third argument `ref`, also $2/ref-$1.json,
# reference.py's outputs for it (computed again when older than the file).
bench_workload() {
    local size=$1 dir=$2 gen wl
    wl=$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/workload" && pwd)
    case $size in
        small) gen="--assets 200 --seconds 5 --late-frac 0.005" ;;
        2m) gen="--assets 2000" ;;
        10m) gen="" ;;
        *) echo "unknown size '$size' (small, 2m, 10m)" >&2; return 2 ;;
    esac
    local data=$dir/workload-$size.jsonl ref=$dir/ref-$size.json err
    # What the tools print goes to the terminal only when they fail.
    err=$(mktemp)
    if [ ! -s "$data" ] || [ ! -s "$data.meta.json" ]; then
        # shellcheck disable=SC2086
        python3 "$wl/gen_workload.py" $gen --out "$data" >/dev/null 2>"$err" ||
            { cat "$err" >&2; rm -f "$err"; return 2; }
        rm -f "$ref"
    fi
    if [ "${3:-}" = ref ] && { [ ! -s "$ref" ] || [ "$ref" -ot "$data" ]; }; then
        python3 "$wl/reference.py" "$data" --json >"$ref.tmp" 2>"$err" ||
            { cat "$err" >&2; rm -f "$err" "$ref.tmp"; return 2; }
        mv "$ref.tmp" "$ref"
    fi
    rm -f "$err"
}

# The whole of a script whose driver is a cargo bench target: workload v1 of
# the size its first argument names (unless that starts with `-`; else
# $2), the binary to measure, the header, then `cargo bench --bench $1 --
# --data FILE REST...` with TWINSTREAM_BIN set. Generated data is removed
# afterwards unless BENCH_KEEP_DATA keeps it.
bench_cargo_driver() {
    local name=$1 size=$2 repo tmp data bin status=0
    shift 2
    if [ $# -gt 0 ] && [[ $1 != -* ]]; then
        size=$1
        shift
    fi
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    cd "$repo"
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/twinstream-bench-$name.XXXXXX")
    data=$(bench_data_dir "$tmp")
    bench_workload "$size" "$data" || { rm -rf "$tmp"; return 2; }
    bin=$(bench_binary) || { rm -rf "$tmp"; return 2; }
    bench_header "$repo" "$bin"
    TWINSTREAM_BIN=$bin cargo bench --quiet --bench "$name" -- --data "$data/workload-$size.jsonl" "$@" || status=$?
    rm -rf "$tmp"
    return "$status"
}
