#!/usr/bin/env bash
# Installs what one of twinstream's make targets needs and is not there yet.
#
#   scripts/install-deps.sh [build|demo-mqtt|test]     (default: test, everything)
#
#   build      compilers and libclang: enough for `make build` and `make demo`
#   demo-mqtt  build + Mosquitto, its clients and python3 (`make demo-mqtt`)
#   test       everything the test suite starts: Mosquitto, Prometheus,
#              openssl, python3, headless Chromium with its WebDriver,
#              rustfmt and clippy, and the Kafka-compatible
#              test broker (tansu), built from source once (12-17 min on 2
#              cores, then cached under $CARGO_TOOLS_DIR)
#
# Idempotent: checks before acting, prints one line per thing it installs and
# nothing at all when everything is present. Runs `apt-get update` at most once,
# and only when an apt package must be installed.
#
# Adding a dependency:
#   * a Debian package: add a line to the profile's list below ("package" or
#     "package:binary").
#   * a rustup component: add it to RUSTUP_COMPONENTS (test profile).
#   * a cargo-installed tool: add a line to CARGO_TOOLS (see the format there).
set -euo pipefail

PROFILE=${1:-test}

# "package" (installed if `dpkg-query` says it is not) or "package:binary"
# (skipped when `binary` is already on PATH, whoever installed it).
BUILD_PACKAGES=(
    gcc:cc              # C compiler (rocksdb, lz4)
    g++:c++             # C++ compiler (rocksdb)
    make:make           # the Makefile; rocksdb's bundled build does not need it
    libclang-dev        # bindgen for rocksdb's bindings
)
MQTT_DEMO_PACKAGES=(
    mosquitto:mosquitto # the demo's MQTT broker
    mosquitto-clients:mosquitto_pub # the demo publishes readings and shows commands
    python3:python3     # scripts/mqtt-demo-publisher.py
)
# The tests also run the MQTT demo (its packages above): Mosquitto, its
# clients and python3 (which runs tests/workload/*.py too).
TEST_PACKAGES=(
    procps:kill         # tests use the `kill` and `ps` binaries
    openssl:openssl     # tests make a throwaway CA for MQTT over TLS
    prometheus:prometheus # tests scrape /metrics with a real Prometheus (issue 7)
    patch:patch         # applies scripts/tansu/*.patch
    chromium:chromium   # the web view's tests open it in a real headless browser (issue 26)
    chromium-driver:chromedriver # ...driven through WebDriver
)

case $PROFILE in
    build) APT_PACKAGES=("${BUILD_PACKAGES[@]}") ;;
    demo-mqtt) APT_PACKAGES=("${BUILD_PACKAGES[@]}" "${MQTT_DEMO_PACKAGES[@]}") ;;
    test) APT_PACKAGES=("${BUILD_PACKAGES[@]}" "${MQTT_DEMO_PACKAGES[@]}" "${TEST_PACKAGES[@]}") ;;
    *)
        printf 'install-deps: unknown profile `%s` (build, demo-mqtt or test)\n' "$PROFILE" >&2
        exit 2
        ;;
esac

# Checked with `cargo <name> --version`; added with `rustup component add`
# (test profile: `make test` checks formatting and lints).
RUSTUP_COMPONENTS=(
    rustfmt:fmt
    clippy:clippy
)

# "binary|cargo install arguments": installed with `cargo install` when `binary`
# is on neither PATH nor $CARGO_TOOLS_DIR/bin (tansu: 12-17 min once, then cached).
CARGO_TOOLS=()
# Cargo-installed tools go to a cache outside the repo so a fresh clone reuses them.
CARGO_TOOLS_DIR="${CARGO_TOOLS_DIR:-$HOME/.cache/twinstream/tools}"

say() { printf 'install-deps: %s\n' "$*"; }
die() { printf 'install-deps: error: %s\n' "$*" >&2; exit 1; }

# Runs a command quietly; shows its output only if it fails.
quiet() {
    local log
    log=$(mktemp)
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        die "failed: $*"
    fi
    rm -f "$log"
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

# `type -P` finds files only: `command -v kill` would be satisfied by bash's builtin.
have_bin() { type -P "$1" >/dev/null 2>&1; }

dpkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

install_apt_packages() {
    local entry pkg bin missing=()
    for entry in "${APT_PACKAGES[@]}"; do
        pkg=${entry%%:*}
        bin=
        [[ $entry == *:* ]] && bin=${entry#*:}
        if [ -n "$bin" ] && have_bin "$bin"; then continue; fi
        dpkg_installed "$pkg" && continue
        missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    have_bin apt-get || die "missing ${missing[*]} and no apt-get to install them"
    for pkg in "${missing[@]}"; do say "installing apt package $pkg"; done
    quiet as_root apt-get update
    quiet as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${missing[@]}"
}

ensure_cargo() {
    if ! have_bin cargo && [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    have_bin cargo || die "no cargo: install the Rust toolchain first (https://rustup.rs)"
}

install_rustup_components() {
    local entry comp sub
    for entry in "${RUSTUP_COMPONENTS[@]}"; do
        comp=${entry%%:*}
        sub=${entry#*:}
        # rustup's cargo-fmt/cargo-clippy proxies exist without the component
        # and fail, so this tests the real thing.
        cargo "$sub" --version >/dev/null 2>&1 && continue
        have_bin rustup || die "cargo $sub is missing and there is no rustup to add $comp"
        say "installing rustup component $comp"
        quiet rustup component add "$comp"
    done
}

install_cargo_tools() {
    local entry bin args
    for entry in ${CARGO_TOOLS[@]+"${CARGO_TOOLS[@]}"}; do
        bin=${entry%%|*}
        args=${entry#*|}
        if have_bin "$bin" || [ -x "$CARGO_TOOLS_DIR/bin/$bin" ]; then continue; fi
        say "installing cargo tool $bin into $CARGO_TOOLS_DIR (cargo install $args)"
        # Its own target dir: tools never churn the project's build cache.
        # shellcheck disable=SC2086  # args is a word list by design
        quiet env CARGO_TARGET_DIR="$CARGO_TOOLS_DIR/target" cargo install --root "$CARGO_TOOLS_DIR" $args
    done
}

# The Kafka-compatible broker the tests start: tansu 0.6.0 (SQLite storage
# survives restarts) with scripts/tansu/*.patch applied. Its group coordinator
# drops a member that missed its heartbeats inside the heartbeat that noticed,
# without a new generation: the other members' heartbeats keep succeeding and
# the next sync hands out the old assignment, so a dead member's partitions
# stay unassigned. The patch moves the group to a new generation (members
# rejoin, the leader assigns again), as Kafka does. The stamp file names the
# patch level the binary was built with.
TANSU_VERSION=0.6.0
TANSU_STAMP=tansu-$TANSU_VERSION-patch-3

# The directory holding the sources of crate $2 at version $3, as cargo
# fetched them for the throwaway package in $1: from crates.io, a mirror or a
# vendored directory, whatever cargo's own configuration (source
# replacement, proxies) says. No download URL is hard-coded here.
crate_source() {
    local dir=$1 crate=$2 version=$3
    cargo metadata --format-version 1 --manifest-path "$dir/Cargo.toml" 2>"$dir/metadata.err" |
        python3 -c '
import json, os, sys
crate, version = sys.argv[1], sys.argv[2]
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == crate and p["version"] == version:
        print(os.path.dirname(p["manifest_path"]))
        break
' "$crate" "$version"
}

# Runs "$@" with its output in $log, printing a line every minute (how long,
# how many crates compiled) so a long build is never silent.
with_progress() {
    local what=$1 log=$2 pid started status
    shift 2
    started=$SECONDS
    "$@" >"$log" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        for _ in $(seq 60); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 1
        done
        kill -0 "$pid" 2>/dev/null || break
        say "$what: $(((SECONDS - started) / 60)) min, $(grep -c '^ *Compiling ' "$log" || true) crates compiled"
    done
    status=0
    wait "$pid" || status=$?
    if [ "$status" -ne 0 ]; then
        tail -n 40 "$log" >&2
        die "$what failed (exit $status; whole log: $log)"
    fi
}

install_tansu() {
    local src here broker tansu
    if [ -x "$CARGO_TOOLS_DIR/bin/tansu" ] && [ -f "$CARGO_TOOLS_DIR/$TANSU_STAMP" ]; then return 0; fi
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    say "building the test broker (tansu $TANSU_VERSION with scripts/tansu/*.patch) into $CARGO_TOOLS_DIR: 12-17 min on 2 cores, once"
    src=$(mktemp -d)
    mkdir -p "$src/fetch/src"
    printf '[package]\nname = "tansu-sources"\nversion = "0.0.0"\nedition = "2021"\n\n[dependencies]\ntansu = "=%s"\ntansu-broker = "=%s"\n' \
        "$TANSU_VERSION" "$TANSU_VERSION" >"$src/fetch/Cargo.toml"
    : >"$src/fetch/src/lib.rs"
    broker=$(crate_source "$src/fetch" tansu-broker "$TANSU_VERSION")
    if [ -z "$broker" ]; then
        cat "$src/fetch/metadata.err" >&2
        die "cargo could not fetch tansu-broker $TANSU_VERSION (see above)"
    fi
    # `tansu` has no library, so cargo leaves it out of the metadata (with a
    # warning) but has fetched it next to tansu-broker all the same.
    tansu=
    for d in "$(dirname "$broker")/tansu-$TANSU_VERSION" "$(dirname "$broker")/tansu"; do
        if grep -q "^version = \"$TANSU_VERSION\"" "$d/Cargo.toml" 2>/dev/null; then tansu=$d; fi
    done
    [ -n "$tansu" ] || die "cargo fetched tansu-broker into $(dirname "$broker") but not tansu $TANSU_VERSION beside it"
    # Copies: cargo's registry sources are read-only and shared.
    cp -R "$tansu" "$src/tansu"
    cp -R "$broker" "$src/tansu-broker"
    chmod -R u+w "$src/tansu" "$src/tansu-broker"
    for p in "$here"/tansu/*.patch; do
        quiet patch -d "$src/tansu-broker" -p1 -i "$p"
    done
    printf '\n[patch.crates-io]\ntansu-broker = { path = "../tansu-broker" }\n' >>"$src/tansu/Cargo.toml"
    # Its own target dir: tools never churn the project's build cache. The
    # crate's Cargo.lock pins every other dependency.
    with_progress "building tansu" "$src/build.log" \
        env CARGO_TARGET_DIR="$CARGO_TOOLS_DIR/target" cargo install --force --root "$CARGO_TOOLS_DIR" \
        --path "$src/tansu" --features dynostore,libsql
    touch "$CARGO_TOOLS_DIR/$TANSU_STAMP"
    rm -rf "$src"
    say "tansu built in $CARGO_TOOLS_DIR/bin"
}

install_apt_packages
ensure_cargo
if [ "$PROFILE" = test ]; then
    install_rustup_components
    install_cargo_tools
    install_tansu
fi
