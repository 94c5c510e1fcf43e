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
