#!/usr/bin/env bash
# Fuzzes one target with AFL++ for SECONDS (cargo-afl: stable toolchain,
# AFL++ built from the crate's bundled source).
#
#   scripts/fuzz.sh TARGET SECONDS
#
# Targets (src/fuzzing.rs says what each must hold for any input): scanner,
# decode, topology, expr, stored, http. Starts from fuzz/corpus/TARGET and
# the crashes found before (fuzz/crashes/TARGET); prints executions, paths,
# coverage and crashes; copies every new crash to fuzz/crashes/TARGET
# (replayed by `cargo test`, tests/fuzz_corpora.rs) and exits 1 when there
# is one. The instrumented build (its own target directory, so the normal
# build stays as it is) and AFL++'s output are under
# ~/.cache/twinstream/fuzz (FUZZ_DIR). Installs cargo-afl when missing.
# FUZZ_RESUME=1 continues the target's last campaign (its queue, and its
# executions and run time count on) instead of starting from the seeds.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${1:?usage: scripts/fuzz.sh TARGET SECONDS}
seconds=${2:?usage: scripts/fuzz.sh TARGET SECONDS}
case "$target" in
    scanner | decode | topology | expr | stored | http) ;;
    *) echo "unknown target $target (scanner decode topology expr stored http)" >&2; exit 2 ;;
esac
fuzz_dir=${FUZZ_DIR:-$HOME/.cache/twinstream/fuzz}
mkdir -p "$fuzz_dir"

if ! cargo afl --version >/dev/null 2>&1; then
    cargo install --locked cargo-afl@0.18.2
fi
# AFL++ itself, built once per cargo-afl version.
cargo afl config --build >/dev/null 2>&1 || true  # "already built" is fine

export CARGO_TARGET_DIR="$fuzz_dir/target"
(cd fuzz && cargo afl build --release --bin "$target")
harness="$CARGO_TARGET_DIR/release/$target"

# Seeds: the corpus and the crashes found before (they must not crash now).
seeds="$fuzz_dir/seeds/$target"
rm -rf "$seeds" && mkdir -p "$seeds"
cp fuzz/corpus/"$target"/* "$seeds"/
if compgen -G "fuzz/crashes/$target/*" >/dev/null; then
    cp fuzz/crashes/"$target"/* "$seeds"/
fi
rm -f "$seeds/README.md"
out="$fuzz_dir/out/$target"
mkdir -p "$fuzz_dir/out"
input=$seeds
if [ "${FUZZ_RESUME:-0}" = 1 ] && [ -f "$out/default/fuzzer_stats" ]; then
    input=-  # AFL++ resumes in place
else
    rm -rf "$out"
fi

timeout_ms=1000
if [ "$target" = http ]; then
    # The harness starts a node in-process on its first input.
    timeout_ms=10000
    export AFL_FORKSRV_INIT_TMOUT=60000
fi
AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 \
    AFL_SKIP_CRASHES=0 AFL_NO_AFFINITY=${AFL_NO_AFFINITY:-1} \
    cargo afl fuzz -i "$input" -o "$out" -V "$seconds" -t "$timeout_ms" "$harness" >"$fuzz_dir/$target.log" 2>&1 || {
    echo "afl-fuzz failed; its output:" >&2
    tail -40 "$fuzz_dir/$target.log" >&2
    exit 2
}

stats="$out/default/fuzzer_stats"
field() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
echo "fuzz $target: $(field execs_done) executions in $(field run_time) s ($(field execs_per_sec)/s)," \
    "$(field corpus_count) paths, edges $(field edges_found)/$(field total_edges) ($(field bitmap_cvg))," \
    "$(field saved_crashes) crashes, $(field saved_hangs) hangs, stability $(field stability)"

found=0
mkdir -p "fuzz/crashes/$target"
for c in "$out"/default/crashes/id:*; do
    [ -e "$c" ] || continue
    name=$(sha1sum "$c" | cut -c1-16)
    cp "$c" "fuzz/crashes/$target/$name"
    echo "crash: fuzz/crashes/$target/$name" >&2
    found=1
done
exit "$found"
