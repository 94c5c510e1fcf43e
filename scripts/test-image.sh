#!/usr/bin/env bash
# Builds the twinstream image from this checkout with podman and checks it in
# containers: `check` on a good and a broken topology, the README's `docker
# run` recipe (HTTP on 0.0.0.0 with a write token, /healthz, /metrics, a
# command POSTed with and without the token), a
# clean stop on SIGTERM, the state surviving a restart in the named volume, and
# the process running as uid 10001.
#
#   scripts/test-image.sh               # base images if missing, build, checks
#   scripts/test-image.sh --skip-build  # checks only, on an existing $IMAGE
#
# No container registry is reachable here, so the Dockerfile's two bases
# (RUST_IMAGE, RUNTIME_IMAGE) are the local Debian stand-ins that
# scripts/base-images.sh makes. Slow: the build compiles RocksDB and
# librdkafka inside the image (38 min here on 2 cores shared with another
# cargo build; a rebuild after a source change took 91 s: it reuses the cargo
# cache mounts). Containers use the host's network (`--network host`), so the
# HTTP port is a free one picked here; the recipe's
# `-p 8080:8080` has no effect there. Run as root. Exits non-zero if any check
# fails; removes its containers and volume on exit.
#
# Also checks that the recipe without TWINSTREAM_WRITE_TOKEN still refuses to
# start (the demo topology needs it) and says why.
#
# Environment: IMAGE (default twinstream:test), RUST_BASE, RUNTIME_BASE,
# BUILD_LOG (default /tmp/twinstream-image-build.log), STOP_TIMEOUT (s, 30).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
IMAGE="${IMAGE:-twinstream:test}"
RUST_BASE="${RUST_BASE:-localhost/twinstream-rust:bookworm}"
RUNTIME_BASE="${RUNTIME_BASE:-localhost/twinstream-debian:bookworm-slim}"
BUILD_LOG="${BUILD_LOG:-/tmp/twinstream-image-build.log}"
STOP_TIMEOUT="${STOP_TIMEOUT:-30}"
TOKEN=test-write-token
PODMAN=(podman --runtime runc)

SKIP_BUILD=0
for a in "$@"; do
    case "$a" in
        --skip-build) SKIP_BUILD=1 ;;
        -h | --help)
            sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "test-image: unknown argument: $a (see --help)" >&2
            exit 2
            ;;
    esac
done

say() { printf 'test-image: %s\n' "$*"; }
die() {
    printf 'test-image: error: %s\n' "$*" >&2
    exit 1
}
for t in podman curl python3; do
    command -v "$t" >/dev/null 2>&1 || die "needs $t (podman: scripts/base-images.sh installs it)"
done
[ "$(id -u)" -eq 0 ] || die "run as root (podman with the runc runtime, host network)"

RUN_ID="twinstream-test-$(date +%s)-$$"
VOLUME="$RUN_ID-state"
TMP=$(mktemp -d /tmp/twinstream-test-image.XXXXXX)
CONTAINERS=()

cleanup() {
    local c
    for c in "${CONTAINERS[@]}"; do
        "${PODMAN[@]}" rm -f -t 0 "$c" >/dev/null 2>&1 || true
    done
    "${PODMAN[@]}" volume rm -f "$VOLUME" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- results ---------------------------------------------------------------
RESULTS=()
FAILED=0
T_START=$SECONDS
T_CHECK=$SECONDS
begin() {
    T_CHECK=$SECONDS
    say "-- $*"
}
pass() {
    local line
    line=$(printf 'PASS  %-44s %4ds  %s' "$1" $((SECONDS - T_CHECK)) "${2:-}")
    echo "$line"
    RESULTS+=("$line")
}
fail() {
    local line
    line=$(printf 'FAIL  %-44s %4ds  %s' "$1" $((SECONDS - T_CHECK)) "${2:-}")
    echo "$line"
    RESULTS+=("$line")
    FAILED=$((FAILED + 1))
}
summary() {
    echo
    echo "test-image: summary ($IMAGE)"
    local r
    for r in "${RESULTS[@]}"; do echo "  $r"; done
    local total=${#RESULTS[@]}
    echo "test-image: $((total - FAILED)) passed, $FAILED failed in $((SECONDS - T_START)) s"
}
# Stops here: the remaining checks need what failed.
abort() {
    summary
    exit 1
}

# --- helpers ---------------------------------------------------------------
# A TCP port nobody listens on (the containers share the host's network).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A TCP socket listening on 0.0.0.0:PORT (the host's network namespace).
listening_on_all() {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v a="00000000:$hex" '$2 == a && $4 == "0A" { found = 1 } END { exit !found }' /proc/net/tcp
}

running() { [ "$("${PODMAN[@]}" inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }

# Retries CMD... every 0.2 s until it succeeds, the deadline (s) passes, or
# the container has exited. Returns 0 on success.
wait_for() {
    local container=$1 deadline=$((SECONDS + $2))
    shift 2
    while :; do
        "$@" && return 0
        running "$container" || {
            "$@"
            return
        }
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}

# GET PATH on the container's API; the body on stdout.
get() { curl -fsS --max-time 2 "http://127.0.0.1:$PORT$1" 2>/dev/null; }
healthz() { get /healthz >/dev/null; }
metric() { # NAME{LABELS} -> value (0 if absent)
    get /metrics | awk -v m="$1" '$1 == m { v = $2 } END { print v == "" ? 0 : v }'
}
metrics_ready() { get /metrics | grep -q '^twinstream_events_applied_total'; }
twin_version() { # ASSET -> its version (fails if the twin is unknown yet)
    get "/twins/$1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])' 2>/dev/null
}
twin_seen() { twin_version pump-000 >/dev/null; }

# Starts the README recipe in the background: NAME.
start_node() {
    local name=$1
    CONTAINERS+=("$name")
    "${PODMAN[@]}" run -d --name "$name" --network host \
        -e TWINSTREAM_WRITE_TOKEN="$TOKEN" -e TWINSTREAM_HTTP="0.0.0.0:$PORT" \
        -v "$REPO/topologies/demo.yaml:/topology.yaml:ro" -v "$VOLUME:/state" \
        "$IMAGE" >/dev/null
}
show_logs() { "${PODMAN[@]}" logs "$1" 2>&1 | tail -n 20 | sed 's/^/    | /'; }

# Stops NAME with SIGTERM; checks the exit code and the clean-stop line.
stop_check() {
    local name=$1 label=$2
    begin "$label: podman stop (SIGTERM, timeout ${STOP_TIMEOUT} s)"
    local t0=$SECONDS
    "${PODMAN[@]}" stop -t "$STOP_TIMEOUT" "$name" >/dev/null 2>&1
    local took=$((SECONDS - t0))
    local code
    code=$("${PODMAN[@]}" inspect -f '{{.State.ExitCode}}' "$name" 2>/dev/null)
    local clean
    clean=$("${PODMAN[@]}" logs "$name" 2>&1 | grep 'stopped cleanly' | tail -n 1)
    if [ "$code" = 0 ] && [ -n "$clean" ] && [ "$took" -lt "$STOP_TIMEOUT" ]; then
        clean=${clean##*stopped cleanly}
        pass "$label: SIGTERM stops it cleanly" "exit 0 in ${took} s; ${clean# }"
    else
        fail "$label: SIGTERM stops it cleanly" "exit code ${code:-?} after ${took} s, 'stopped cleanly' ${clean:+found}${clean:-missing}"
        show_logs "$name"
    fi
}

# --- 1. base images and build ----------------------------------------------
if [ "$SKIP_BUILD" -eq 1 ]; then
    "${PODMAN[@]}" image exists "$IMAGE" || die "--skip-build: no image $IMAGE"
    say "--skip-build: using the existing $IMAGE"
else
    begin "base images (scripts/base-images.sh)"
    if RUST_BASE="$RUST_BASE" RUNTIME_BASE="$RUNTIME_BASE" "$REPO/scripts/base-images.sh"; then
        pass "base images" "$RUST_BASE, $RUNTIME_BASE"
    else
        fail "base images" "scripts/base-images.sh failed"
        abort
    fi

    begin "podman build -t $IMAGE (log: $BUILD_LOG; ~40 min from scratch on 2 busy cores, ~2 min after a source change)"
    if "${PODMAN[@]}" build --network host \
        --build-arg RUST_IMAGE="$RUST_BASE" --build-arg RUNTIME_IMAGE="$RUNTIME_BASE" \
        -t "$IMAGE" . >"$BUILD_LOG" 2>&1; then
        size=$("${PODMAN[@]}" image inspect -f '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }')
        pass "image build" "$IMAGE, $size"
    else
        fail "image build" "see $BUILD_LOG"
        tail -n 40 "$BUILD_LOG" | sed 's/^/    | /'
        abort
    fi
fi

# --- 2. check ----------------------------------------------------------------
begin "twinstream check on topologies/demo.yaml"
out=$("${PODMAN[@]}" run --rm --network host -v "$REPO/topologies/demo.yaml:/topology.yaml:ro" \
    "$IMAGE" check /topology.yaml 2>&1)
code=$?
if [ "$code" -eq 0 ]; then
    pass "check demo.yaml succeeds" "$(echo "$out" | head -n 1)"
else
    fail "check demo.yaml succeeds" "exit $code"
    echo "$out" | tail -n 20 | sed 's/^/    | /'
fi

begin "twinstream check on a broken topology"
# demo.yaml with a typo: the pump-* assets of an unknown type `pmup`.
chmod 755 "$TMP"
sed 's/^    type: pump$/    type: pmup/' topologies/demo.yaml >"$TMP/broken.yaml"
chmod 644 "$TMP/broken.yaml"
typo_line=$(grep -n '^    type: pmup$' "$TMP/broken.yaml" | cut -d: -f1)
[ -n "$typo_line" ] || die "topologies/demo.yaml no longer has a '    type: pump' line to break"
want="/topology.yaml:$typo_line:11: "
out=$("${PODMAN[@]}" run --rm --network host -v "$TMP/broken.yaml:/topology.yaml:ro" \
    "$IMAGE" check /topology.yaml 2>&1)
code=$?
diag=$(echo "$out" | grep -F "$want" | head -n 1)
if [ "$code" -ne 0 ] && [ -n "$diag" ]; then
    pass "check broken.yaml fails at file:line:col" "exit $code: $diag"
else
    fail "check broken.yaml fails at file:line:col" "exit $code, no line starting $want"
    echo "$out" | tail -n 20 | sed 's/^/    | /'
fi

# --- 3. run: the README recipe -------------------------------------------------
begin "run without TWINSTREAM_WRITE_TOKEN (the recipe before issue 22)"
NOTOKEN="$RUN_ID-notoken"
CONTAINERS+=("$NOTOKEN")
out=$("${PODMAN[@]}" run --name "$NOTOKEN" --network host -e TWINSTREAM_HTTP="0.0.0.0:$(free_port)" \
    -v "$REPO/topologies/demo.yaml:/topology.yaml:ro" --tmpfs /state "$IMAGE" 2>&1)
code=$?
msg=$(echo "$out" | grep -F 'TWINSTREAM_WRITE_TOKEN' | head -n 1)
if [ "$code" -ne 0 ] && [ -n "$msg" ]; then
    pass "no write token: refuses to start, says why" "exit $code: ${msg#error: }"
else
    fail "no write token: refuses to start, says why" "exit $code"
    echo "$out" | tail -n 20 | sed 's/^/    | /'
fi

PORT=$(free_port)
RUN1="$RUN_ID-run1"
begin "run (README recipe: TWINSTREAM_WRITE_TOKEN, TWINSTREAM_HTTP=0.0.0.0:$PORT, volume $VOLUME)"
# As in the recipe, `run -v NAME:/state` creates the volume (from the image's
# /state: owned by uid 10001).
if ! start_node "$RUN1"; then
    fail "run 1: container starts" "podman run failed"
    abort
fi
if wait_for "$RUN1" 60 healthz; then
    pass "run 1: GET /healthz answers" "127.0.0.1:$PORT/healthz: $(get /healthz | head -c 60)"
    # TWINSTREAM_HTTP=0.0.0.0 is what `-p` needs: a listener on every
    # interface, not the topology's 127.0.0.1 (seen in /proc: no traffic).
    begin "listens on 0.0.0.0 (what -p 8080:8080 needs)"
    if listening_on_all "$PORT"; then
        pass "run 1: listens on 0.0.0.0:$PORT" "not the topology's 127.0.0.1:8080"
    else
        fail "run 1: listens on 0.0.0.0:$PORT" "no LISTEN socket on 0.0.0.0:$PORT in /proc/net/tcp"
    fi
else
    fail "run 1: GET /healthz answers" "no answer within 60 s (running: $(running "$RUN1" && echo yes || echo no))"
    show_logs "$RUN1"
    abort
fi

begin "GET /metrics"
if wait_for "$RUN1" 30 metrics_ready; then
    pass "run 1: GET /metrics answers" "twinstream_events_applied_total $(metric twinstream_events_applied_total)"
else
    fail "run 1: GET /metrics answers" "no twinstream_events_applied_total within 30 s"
fi

begin "GET /: the operator's view, from the binary"
view_headers=$(curl -fsS -D - -o /dev/null --max-time 5 "http://127.0.0.1:$PORT/" 2>/dev/null | tr -d '\r')
if grep -qi "^content-security-policy: default-src 'none'; script-src 'self'" <<<"$view_headers" &&
    get /view/app.js | grep -q "twinstream's operator view"; then
    pass "run 1: GET / serves the view" "with its CSP; /view/app.js from the binary"
else
    fail "run 1: GET / serves the view" "headers: $(head -c 300 <<<"$view_headers")"
fi

begin "POST /twins/pump-007/commands: the write token guards writes"
post_command() { # [TOKEN] -> HTTP status
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X POST -H 'Content-Type: application/json' \
        ${1:+-H "Authorization: Bearer $1"} \
        -d '{"command": "set_pressure", "value": 8, "idempotency_key": "test-image"}' \
        "http://127.0.0.1:$PORT/twins/pump-007/commands"
}
without=$(post_command)
with=$(post_command "$TOKEN")
if [ "$without" = 401 ] && { [ "$with" = 202 ] || [ "$with" = 200 ]; }; then
    pass "run 1: TWINSTREAM_WRITE_TOKEN guards writes" "POST without it: $without, with it: $with"
else
    fail "run 1: TWINSTREAM_WRITE_TOKEN guards writes" "POST without it: $without (want 401), with it: $with (want 202)"
fi

begin "runs as the unprivileged user"
pid=$("${PODMAN[@]}" inspect -f '{{.State.Pid}}' "$RUN1" 2>/dev/null)
uid=$(awk '/^Uid:/ { print $3 }' "/proc/$pid/status" 2>/dev/null)
top_user=$("${PODMAN[@]}" top "$RUN1" user 2>/dev/null | tail -n +2 | head -n 1 | tr -d ' ')
exec_uid=$("${PODMAN[@]}" exec "$RUN1" id -u 2>/dev/null)
if [ "$uid" = 10001 ] && [ "$top_user" = twinstream ] && [ "$exec_uid" = 10001 ]; then
    pass "run 1: process runs as uid 10001" "pid $pid: euid $uid, podman top: $top_user, exec id -u: $exec_uid"
else
    fail "run 1: process runs as uid 10001" "pid ${pid:-?}: euid ${uid:-?}, podman top: ${top_user:-?}, exec id -u: ${exec_uid:-?}"
fi

begin "twins update (GET /twins/pump-000), then a snapshot"
# The demo's twins are new: none restored from the store.
if wait_for "$RUN1" 30 twin_seen; then
    # Let it apply events for a few seconds (~10 a second on pump-000) and
    # snapshot (every 2 s): run 2, read at once, can only be that far if it
    # resumed.
    grown() { [ "$(twin_version pump-000)" -ge 50 ] 2>/dev/null; }
    wait_for "$RUN1" 30 grown
    v1=$(twin_version pump-000)
    new1=$(metric 'twinstream_twins_started_total{from="new"}')
    store1=$(metric 'twinstream_twins_started_total{from="store"}')
    if [ "$store1" = 0 ] && [ "${new1%.*}" -gt 0 ] 2>/dev/null; then
        pass "run 1: fresh twins apply events" "pump-000 version $v1; twins started new $new1, from store $store1"
    else
        fail "run 1: fresh twins apply events" "pump-000 version $v1; twins started new $new1, from store $store1"
    fi
else
    v1=
    fail "run 1: fresh twins apply events" "GET /twins/pump-000: no twin within 30 s"
fi

stop_check "$RUN1" "run 1"

# --- 4. the state survives in the volume ---------------------------------------
begin "state in the volume, then run 2 on it"
files=$("${PODMAN[@]}" run --rm --network host -v "$VOLUME:/state" --entrypoint ls "$IMAGE" -ln /state 2>&1)
if echo "$files" | grep -q ' CURRENT$' && echo "$files" | grep -q ' demo-windows.jsonl$'; then
    owner=$(echo "$files" | awk '$NF == "CURRENT" { print $3 }')
    pass "volume holds the RocksDB state" "/state/CURRENT (uid $owner), /state/demo-windows.jsonl"
else
    fail "volume holds the RocksDB state" "no CURRENT or demo-windows.jsonl in /state"
    echo "$files" | sed 's/^/    | /'
fi

PORT=$(free_port)
RUN2="$RUN_ID-run2"
begin "run 2 on the same volume"
start_node "$RUN2" || {
    fail "run 2: container starts" "podman run failed"
    abort
}
if wait_for "$RUN2" 60 twin_seen; then
    # Read at once: a twin starting afresh would be far below run 1's version.
    v2=$(twin_version pump-000)
    store2=$(metric 'twinstream_twins_started_total{from="store"}')
    if [ -n "$v1" ] && [ "$v2" -ge "$v1" ] && [ "${store2%.*}" -gt 0 ] 2>/dev/null; then
        pass "run 2: twins resume from the volume" "pump-000 version $v2 >= $v1 (run 1); twins started from store $store2"
    else
        fail "run 2: twins resume from the volume" "pump-000 version $v2 vs ${v1:-?} (run 1); twins started from store $store2"
        show_logs "$RUN2"
    fi
else
    fail "run 2: twins resume from the volume" "GET /twins/pump-000: no answer within 60 s"
    show_logs "$RUN2"
fi

stop_check "$RUN2" "run 2"

summary
[ "$FAILED" -eq 0 ]
