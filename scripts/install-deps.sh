#!/usr/bin/env bash
# Installs what twinstream's build, demo and tests need and is not there yet.
#
# Idempotent: checks before acting, prints one line per thing it installs and
# nothing at all when everything is present. Runs `apt-get update` at most once,
# and only when an apt package must be installed.
#
# Adding a dependency:
#   * a Debian package: add a line to APT_PACKAGES ("package" or "package:binary").
#   * a rustup component: add it to RUSTUP_COMPONENTS.
#   * a cargo-installed tool: add a line to CARGO_TOOLS (see the format there).
set -euo pipefail

# "package" (installed if `dpkg-query` says it is not) or "package:binary"
# (skipped when `binary` is already on PATH, whoever installed it).
APT_PACKAGES=(
    gcc:cc              # C compiler (rocksdb, lz4)
    g++:c++             # C++ compiler (rocksdb)
    make:make           # the Makefile; rocksdb's bundled build does not need it
    libclang-dev        # bindgen for rocksdb's bindings
    python3:python3     # tests run tests/workload/*.py
    procps:kill         # tests use the `kill` and `ps` binaries
    mosquitto:mosquitto # tests start a real MQTT broker (issue 5)
    openssl:openssl     # tests make a throwaway CA for MQTT over TLS
    mosquitto-clients:mosquitto_pub # the MQTT demo publishes readings and shows commands
    prometheus:prometheus # tests scrape /metrics with a real Prometheus (issue 7)
    curl:curl           # fetches the tansu sources to patch
    patch:patch         # applies scripts/tansu/*.patch
)

# Checked with `cargo <name> --version`; added with `rustup component add`.
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
install_tansu() {
    local src here
    if [ -x "$CARGO_TOOLS_DIR/bin/tansu" ] && [ -f "$CARGO_TOOLS_DIR/$TANSU_STAMP" ]; then return 0; fi
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    say "building tansu $TANSU_VERSION with scripts/tansu/*.patch into $CARGO_TOOLS_DIR (12-17 min once)"
    src=$(mktemp -d)
    for crate in tansu tansu-broker; do
        curl -sSfL "https://static.crates.io/crates/$crate/$crate-$TANSU_VERSION.crate" | tar xz -C "$src" \
            || die "cannot download $crate $TANSU_VERSION from crates.io"
    done
    for p in "$here"/tansu/*.patch; do
        quiet patch -d "$src/tansu-broker-$TANSU_VERSION" -p1 -i "$p"
    done
    printf '\n[patch.crates-io]\ntansu-broker = { path = "../tansu-broker-%s" }\n' "$TANSU_VERSION" \
        >>"$src/tansu-$TANSU_VERSION/Cargo.toml"
    # Its own target dir: tools never churn the project's build cache. The
    # crate's Cargo.lock pins every other dependency.
    quiet env CARGO_TARGET_DIR="$CARGO_TOOLS_DIR/target" cargo install --force --root "$CARGO_TOOLS_DIR" \
        --path "$src/tansu-$TANSU_VERSION" --features dynostore,libsql
    touch "$CARGO_TOOLS_DIR/$TANSU_STAMP"
    rm -rf "$src"
}

install_apt_packages
ensure_cargo
install_rustup_components
install_cargo_tools
install_tansu
