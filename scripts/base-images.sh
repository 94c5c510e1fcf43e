#!/usr/bin/env bash
# Makes local stand-ins for the Dockerfile's two base images, for machines that
# reach Debian's package mirrors but no container registry:
#
#   localhost/twinstream-rust:bookworm          for rust:1-bookworm   (RUST_IMAGE)
#   localhost/twinstream-debian:bookworm-slim   for debian:bookworm-slim (RUNTIME_IMAGE)
#
# Both are Debian bookworm made with debootstrap and imported with
# `podman import`. The Rust one gets the C/C++ toolchain the official image has
# (from buildpack-deps) and this machine's default rustup toolchain (>= 1.89),
# laid out as in the official image: RUSTUP_HOME=/usr/local/rustup,
# CARGO_HOME=/usr/local/cargo, /usr/local/cargo/bin on PATH.
#
#   scripts/base-images.sh              # makes the images that are missing
#   scripts/base-images.sh --rebuild    # makes both again
#
# Idempotent: an image that exists is kept (unless --rebuild). Also installs
# podman, runc, debootstrap and uidmap if missing, and sets
# `default_ulimits = []` in /etc/containers/containers.conf (this machine
# refuses rlimit changes). Run as root. Containers here run with
# `podman --runtime runc` (crun refuses the hybrid cgroup setup).
#
# The Rust image also trusts the CA certificates added to this machine
# (LOCAL_CA_DIR, /usr/local/share/ca-certificates): where HTTPS goes through
# a TLS-intercepting proxy, cargo in the build must trust it to reach
# crates.io. The Dockerfile stays as it is for the official images.
#
# Environment: RUST_BASE, RUNTIME_BASE (image names), DEBIAN_MIRROR,
# BASE_IMAGES_CACHE (debootstrap's .deb cache, kept between runs),
# LOCAL_CA_DIR (empty: add no certificate).
set -euo pipefail

RUST_BASE="${RUST_BASE:-localhost/twinstream-rust:bookworm}"
RUNTIME_BASE="${RUNTIME_BASE:-localhost/twinstream-debian:bookworm-slim}"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
CACHE="${BASE_IMAGES_CACHE:-$HOME/.cache/twinstream/debootstrap}"
CONTAINERS_CONF=/etc/containers/containers.conf
LOCAL_CA_DIR="${LOCAL_CA_DIR-/usr/local/share/ca-certificates}"
MIN_RUST=1.89 # actix-web 4.18.1's rust-version
# What rust:1-bookworm's base (buildpack-deps:bookworm) brings that a Rust
# build may use: the C/C++ toolchain, pkg-config, and the usual -dev packages.
RUST_PACKAGES=gcc,g++,libc6-dev,make,pkg-config,ca-certificates,binutils,file,patch,perl,git,curl,xz-utils,procps,netbase,zlib1g-dev,libssl-dev,libbz2-dev,liblzma-dev

REBUILD=0
for a in "$@"; do
    case "$a" in
        --rebuild) REBUILD=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "base-images: unknown argument: $a (see --help)" >&2
            exit 2
            ;;
    esac
done

say() { printf 'base-images: %s\n' "$*"; }
die() {
    printf 'base-images: error: %s\n' "$*" >&2
    exit 1
}

# Runs a command quietly; shows the end of its output only if it fails.
quiet() {
    local log
    log=$(mktemp)
    if ! "$@" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        rm -f "$log"
        die "failed: $*"
    fi
    rm -f "$log"
}

[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap and podman import need it)"
SECONDS=0

# 1. Tools.
missing=()
for pair in podman:podman runc:runc debootstrap:debootstrap newuidmap:uidmap; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]} (apt)"
    quiet apt-get update
    DEBIAN_FRONTEND=noninteractive quiet apt-get install -y --no-install-recommends "${missing[@]}"
else
    say "podman, runc, debootstrap, uidmap: present"
fi

# 2. containers.conf: no rlimit changes (this machine refuses them).
if [ -f "$CONTAINERS_CONF" ] && grep -Eq '^[[:space:]]*default_ulimits[[:space:]]*=[[:space:]]*\[[[:space:]]*\]' "$CONTAINERS_CONF"; then
    say "$CONTAINERS_CONF: default_ulimits = [] already"
else
    say "$CONTAINERS_CONF: setting default_ulimits = [] under [containers]"
    mkdir -p "$(dirname "$CONTAINERS_CONF")"
    if [ ! -s "$CONTAINERS_CONF" ]; then
        printf '[containers]\ndefault_ulimits = []\n' >"$CONTAINERS_CONF"
    else
        # Drop any other default_ulimits (it may span lines: a [ ... ] list).
        sed -i '/^[[:space:]]*default_ulimits[[:space:]]*=/,/\]/d' "$CONTAINERS_CONF"
        if grep -q '^\[containers\]' "$CONTAINERS_CONF"; then
            sed -i '/^\[containers\]/a default_ulimits = []' "$CONTAINERS_CONF"
        else
            printf '\n[containers]\ndefault_ulimits = []\n' >>"$CONTAINERS_CONF"
        fi
    fi
fi

# Writes the apt sources of an official debian image (bookworm, updates, security).
apt_sources() {
    local root=$1
    rm -f "$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
}

# Leaves no apt lists, caches or logs in a rootfs (as the official images do).
clean_rootfs() {
    local root=$1
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
        "$root"/var/cache/apt/archives/partial/* "$root"/var/log/apt/* "$root"/var/log/dpkg.log \
        "$root"/var/log/bootstrap.log "$root"/var/cache/ldconfig/aux-cache "$root"/tmp/* "$root"/root/.bash_history
    mkdir -p "$root/var/lib/apt/lists/partial"
    # As the official images: apt removes its downloads after an install.
    cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    printf 'APT::Install-Recommends "false";\n' >"$root/etc/apt/apt.conf.d/docker-no-recommends"
}

# debootstrap SUITE into ROOT with extra debootstrap args.
bootstrap() {
    local root=$1
    shift
    mkdir -p "$CACHE"
    quiet debootstrap --cache-dir="$CACHE" "$@" "$SUITE" "$root" "$MIRROR"
    apt_sources "$root"
}

# podman import ROOT NAME [--change ...]
import() {
    local root=$1 name=$2
    shift 2
    podman image rm -f "$name" >/dev/null 2>&1 || true
    tar --numeric-owner -C "$root" -c . | quiet podman import "$@" - "$name"
}

exists() { podman image exists "$1"; }

# Copies this machine's locally added CA certificates into ROOT's trust store.
add_local_cas() {
    local root=$1 c n=0
    [ -n "$LOCAL_CA_DIR" ] && [ -d "$LOCAL_CA_DIR" ] || return 0
    mkdir -p "$root/usr/local/share/ca-certificates"
    for c in "$LOCAL_CA_DIR"/*.crt; do
        [ -f "$c" ] || continue
        cp "$c" "$root/usr/local/share/ca-certificates/"
        n=$((n + 1))
    done
    [ "$n" -gt 0 ] || return 0
    say "$RUST_BASE: trusting this machine's $n local CA certificate(s) from $LOCAL_CA_DIR"
    quiet chroot "$root" update-ca-certificates
}

WORK=$(mktemp -d /var/tmp/twinstream-base-images.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# 3. The runtime base: debian:bookworm-slim.
if exists "$RUNTIME_BASE" && [ "$REBUILD" -eq 0 ]; then
    say "$RUNTIME_BASE: exists (--rebuild to make it again)"
else
    t0=$SECONDS
    root="$WORK/slim"
    say "$RUNTIME_BASE: debootstrap --variant=minbase $SUITE (a few minutes)"
    bootstrap "$root" --variant=minbase
    [ -x "$root/usr/sbin/useradd" ] && [ -x "$root/usr/sbin/groupadd" ] ||
        die "$RUNTIME_BASE: no useradd/groupadd in the minbase rootfs (package passwd); the Dockerfile's runtime stage needs them"
    [ -x "$root/usr/bin/id" ] || die "$RUNTIME_BASE: no id (coreutils) in the minbase rootfs"
    # slim: no docs, man pages or translations, now or from later installs.
    mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
EOF
    find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
    rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* "$root"/usr/share/groff/*
    clean_rootfs "$root"
    say "$RUNTIME_BASE: importing"
    import "$root" "$RUNTIME_BASE" --change 'CMD ["bash"]'
    rm -rf "$root"
    say "$RUNTIME_BASE: made in $((SECONDS - t0)) s"
fi

# 4. The builder base: rust:1-bookworm.
if exists "$RUST_BASE" && [ "$REBUILD" -eq 0 ]; then
    say "$RUST_BASE: exists (--rebuild to make it again)"
else
    t0=$SECONDS
    # This machine's default toolchain (not a directory's override).
    command -v rustc >/dev/null 2>&1 || die "no rustc on PATH: install Rust >= $MIN_RUST with rustup first"
    sysroot=$(cd / && rustc --print sysroot)
    version=$(cd / && rustc --version | awk '{print $2}')
    rustup_bin=$(command -v rustup || true)
    [ -n "$rustup_bin" ] || die "no rustup on PATH: the image's toolchain is copied from a rustup-managed one"
    [ -x "$sysroot/bin/cargo" ] || die "$sysroot has no cargo"
    if [ "$(printf '%s\n%s\n' "$MIN_RUST" "${version%%-*}" | sort -V | head -n1)" != "$MIN_RUST" ]; then
        die "this machine's Rust is $version; twinstream needs >= $MIN_RUST (actix-web 4.18.1)"
    fi
    root="$WORK/rust"
    say "$RUST_BASE: debootstrap --variant=minbase $SUITE with gcc, g++, make, pkg-config, ... (a few minutes)"
    bootstrap "$root" --variant=minbase --include="$RUST_PACKAGES"
    for b in gcc g++ cc make pkg-config strip; do
        [ -x "$root/usr/bin/$b" ] || die "$RUST_BASE: no /usr/bin/$b in the rootfs"
    done
    add_local_cas "$root"
    triple=$(basename "$sysroot" | sed 's/^[^-]*-//')
    name="$version-$triple"
    say "$RUST_BASE: copying Rust $version ($sysroot, without its HTML docs) to /usr/local/rustup/toolchains/$name"
    mkdir -p "$root/usr/local/rustup/toolchains" "$root/usr/local/cargo/bin"
    tar -C "$sysroot" --exclude=./share/doc/rust/html -c . | tar -C "$root/usr/local/rustup/toolchains" --one-top-level="$name" -x
    printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\n\n[overrides]\n' "$name" \
        >"$root/usr/local/rustup/settings.toml"
    install -m 0755 "$(readlink -f "$rustup_bin")" "$root/usr/local/cargo/bin/rustup"
    # The proxies, as rustup-init lays them out (hard links to rustup).
    for p in cargo cargo-clippy cargo-fmt cargo-miri clippy-driver rls rust-analyzer rust-gdb rust-gdbgui rust-lldb rustc rustdoc rustfmt; do
        ln "$root/usr/local/cargo/bin/rustup" "$root/usr/local/cargo/bin/$p"
    done
    chmod -R a+w "$root/usr/local/rustup" "$root/usr/local/cargo"
    clean_rootfs "$root"
    say "$RUST_BASE: importing"
    import "$root" "$RUST_BASE" \
        --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
        --change 'ENV CARGO_HOME=/usr/local/cargo' \
        --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change "ENV RUST_VERSION=$version" \
        --change 'CMD ["bash"]'
    rm -rf "$root"
    # The proxies must find the toolchain the way the official image's do.
    got=$(podman --runtime runc run --rm "$RUST_BASE" sh -c 'cargo --version && rustc --version') ||
        die "$RUST_BASE: cargo/rustc do not run in the image"
    say "$RUST_BASE: $(echo "$got" | tr '\n' ';' | sed 's/;$//; s/;/, /')"
    say "$RUST_BASE: made in $((SECONDS - t0)) s"
fi

say "done in ${SECONDS} s: $RUST_BASE, $RUNTIME_BASE"
