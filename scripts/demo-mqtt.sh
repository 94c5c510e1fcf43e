#!/usr/bin/env bash
# The MQTT demo in one command (`make demo-mqtt` builds first, then runs this):
# a local Mosquitto, 20 simulated pumps publishing to it
# (scripts/mqtt-demo-publisher.py | mosquitto_pub), twinstream ingesting them
# with topologies/mqtt-demo.yaml and sending `cooling` commands back, and a
# watcher printing each command as a device receives it (`device <- ...`).
# Alerts print as JSON lines; Ctrl-C (or SIGTERM) stops twinstream cleanly,
# then everything else.
#
# MQTT_PORT (default 18830) and DEMO_STATE (default state/mqtt-demo) choose
# the broker's port and the state directory (the broker keeps its sessions
# there too, so a second run resumes both).
set -euo pipefail
cd "$(dirname "$0")/.."

die() { printf 'demo-mqtt: %s\n' "$*" >&2; exit 1; }

port="${MQTT_PORT:-18830}"
state="${DEMO_STATE:-state/mqtt-demo}"
bin="${TWINSTREAM_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/twinstream/target}/release/twinstream}"
[ -x "$bin" ] || die "no twinstream binary at $bin: run \`make build\` (or \`make demo-mqtt\`)"
for tool in mosquitto mosquitto_pub mosquitto_sub python3; do
    command -v "$tool" >/dev/null || die "$tool is missing: run scripts/install-deps.sh"
done
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is already in use; choose another with MQTT_PORT=..."
fi

mkdir -p "$state/broker"
state="$(cd "$state" && pwd)"
# No inflight or queue limit: acks wait for durable checkpoints; no Nagle
# delays (README, MQTT).
cat >"$state/broker/mosquitto.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
persistence true
persistence_location $state/broker/
max_queued_messages 0
max_inflight_messages 0
set_tcp_nodelay true
user $(id -un)
log_dest file $state/broker/mosquitto.log
EOF
sed -e "s/port: 18830/port: $port/" -e "s|state_dir: state/mqtt-demo|state_dir: $state|" \
    topologies/mqtt-demo.yaml >"$state/topology.yaml"

cleanup() {
    pkill -TERM -P $$ 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT

mosquitto -c "$state/broker/mosquitto.conf" &
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || die "mosquitto did not start; see $state/broker/mosquitto.log"
echo "demo-mqtt: Mosquitto on 127.0.0.1:$port, state in $state" >&2

mosquitto_sub -h 127.0.0.1 -p "$port" -i demo-device -c -q 1 -t 'plant/+/commands' -F 'device <- %t %p' &
python3 scripts/mqtt-demo-publisher.py 20 0.5 | mosquitto_pub -h 127.0.0.1 -p "$port" -i demo-pumps -q 1 -l -t plant/telemetry &

# A session of its own: a terminal's Ctrl-C reaches it once, through the trap.
RUST_LOG="${RUST_LOG:-info}" setsid "$bin" run "$state/topology.yaml" &
node=$!
trap 'kill -TERM "$node" 2>/dev/null || true' INT TERM
set +e
wait "$node"
status=$?
while kill -0 "$node" 2>/dev/null; do
    wait "$node"
    status=$?
done
exit "$status"
