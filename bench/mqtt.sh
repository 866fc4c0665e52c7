#!/usr/bin/env bash
# MQTT sink benchmarks (issue 3), release build, everything on loopback:
#   1. 10k devices in one agent, one mosquitto: connect rate, RSS per connected device
#   2. 19k devices in one agent (its own TCP connection each; 20k open files per process)
#   3. 50k devices on 3 agents and 3 mosquitto instances, source IPs 127.0.0.2-7
#   4. the most messages/s one agent pushes through one mosquitto (QoS 0, 100-byte-ish JSON)
# Devices send 1 msg/10s at keepalive 60s (1-3). Prints a Markdown table; stops what it starts.
#   bench/mqtt.sh              # all
#   bench/mqtt.sh 1 4          # only some
#   THR_N=1000 THR_IV=10ms bench/mqtt.sh 4   # the throughput load (devices, interval in ms)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -p pluribus-agent -p pluribusctl --quiet
BIN=$PWD/target/release
WORK=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NPORT=$(free_port)
export PLURIBUS_NATS_URL="nats://127.0.0.1:$NPORT"
export PLURIBUS_NAMESPACE=mqbench
pids=()
# Brokers and agents are started in subshells ($(...), <(...)), whose `pids` the script never
# sees: they also write their pid to $WORK/pids, so that an early exit stops them too.
cleanup() {
  [[ -f $WORK/pids ]] && mapfile -t -O "${#pids[@]}" pids <"$WORK/pids"
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
wait_port() { for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

nats-server -js -a 127.0.0.1 -p "$NPORT" -sd "$WORK/js" </dev/null >/dev/null 2>&1 &
pids+=($!)
wait_port "$NPORT"

# A mosquitto on a free port; prints "pid port".
start_broker() {
  local port; port=$(free_port)
  cat >"$WORK/m$port.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
max_queued_messages 100000
sys_interval 1
CONF
  [[ $(id -u) == 0 ]] && echo "user root" >>"$WORK/m$port.conf"
  mosquitto -c "$WORK/m$port.conf" </dev/null >"$WORK/m$port.log" 2>&1 &
  echo $! >>"$WORK/pids"
  wait_port "$port"
  echo "$! $port"
}
start_agent() {
  "$BIN/pluribus-agent" --name "$1" --heartbeat 250ms </dev/null >/dev/null 2>"$WORK/$1.log" &
  echo $! >>"$WORK/pids"
  echo $!
}
stop() { kill -9 "$@" 2>/dev/null || true; for p in "$@"; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# The broker's own counters ($SYS, every second): "publishes received, publishes sent".
broker_counts() {
  mosquitto_sub -p "$1" -t '$SYS/broker/publish/messages/received' -t '$SYS/broker/publish/messages/sent' -C 2 -W 5 -v |
    awk '/received/ {r=$2} /sent/ {s=$2} END {print r, s}'
}
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
ms() { date +%s%3N; }
hb() { python3 bench/hb.py "$NPORT" "$PLURIBUS_NAMESPACE" "$@"; }
settle() { for _ in $(seq 1 100); do (( $(rss_kb "$1") == ${2:-0} )) && break; set -- "$1" "$(rss_kb "$1")"; sleep 1; done; }

# Rows are printed as soon as they are measured.
echo "| measure | result |"
echo "|---|---|"
row() { echo "$1"; }
want() { [[ $# -eq 0 || " $SEL " == *" $1 "* ]]; }
SEL=" $* "
[[ $# -eq 0 ]] && SEL=" 1 2 3 4 "

# One agent, one broker, N devices: connect rate and RSS per device.
one_agent() { # n label source-ips
  local n=$1 label=$2 src=${3:-}
  read -r bpid bport < <(start_broker)
  local a; a=$(start_agent "a-$n"); sleep 2
  local base; base=$(rss_kb "$a")
  local args=(deploy-fleet "c$n" --count "$n" --sink mqtt --broker "mqtt://127.0.0.1:$bport" --interval 10s --no-wait)
  [[ -n "$src" ]] && args+=(--source-ip "$src")
  local t0; t0=$(ms)
  "$BIN/pluribusctl" "${args[@]}" >/dev/null
  read -r t1 fails < <(hb wait "c$n" "$n" 180)
  sleep 15  # a keepalive-free stretch: every device has sent at least once
  local r; r=$(rss_kb "$a"); local mr; mr=$(rss_kb "$bpid")
  row "| $label: all $n connected after | $((t1 - t0)) ms ($(( n * 1000 / (t1 - t0) )) connects/s; failures $fails) |"
  row "| $label: agent RSS per connected device | $(( (r - base) * 1024 / n )) B (agent ${base}→${r} KB; mosquitto ${mr} KB) |"
  "$BIN/pluribusctl" delete-fleet "c$n" >/dev/null 2>&1 || true
  stop "$a" "$bpid"
}

if want 1; then one_agent 10000 "10k devices, 1 agent, 1 mosquitto"; fi
if want 2; then one_agent 19000 "19k devices, 1 agent, 1 mosquitto, source IPs 127.0.0.2-3" "127.0.0.2,127.0.0.3"; fi

if want 3; then
  brokers=() bpids=() apids=()
  for _ in 1 2 3; do read -r p port < <(start_broker); bpids+=("$p"); brokers+=("mqtt://127.0.0.1:$port"); done
  for i in 1 2 3; do apids+=("$(start_agent "m$i")"); done
  sleep 2
  bases=(); for a in "${apids[@]}"; do bases+=("$(rss_kb "$a")"); done
  t0=$(ms)
  "$BIN/pluribusctl" deploy-fleet c50k --count 50000 --sink mqtt --broker "$(IFS=,; echo "${brokers[*]}")" \
    --source-ip 127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6,127.0.0.7 --interval 10s --no-wait >/dev/null
  read -r t1 fails < <(hb wait c50k 50000 300)
  sleep 15
  total=0; per=""
  for i in 0 1 2; do r=$(rss_kb "${apids[$i]}"); total=$(( total + r - bases[i] )); per+="${bases[$i]}→$r "; done
  row "| 50k devices, 3 agents, 3 mosquitto: all connected after | $((t1 - t0)) ms ($(( 50000 * 1000 / (t1 - t0) )) connects/s; failures $fails) |"
  row "| 50k devices, 3 agents: agent RSS per connected device | $(( total * 1024 / 50000 )) B (agents KB: ${per% }) |"
  "$BIN/pluribusctl" delete-fleet c50k >/dev/null 2>&1 || true
  stop "${apids[@]}" "${bpids[@]}"
fi

if want 4; then
  THR_N=${THR_N:-1000} THR_IV=${THR_IV:-10ms}
  ask=$(python3 -c "import sys; n,iv=int(sys.argv[1]),sys.argv[2]; print(int(n*1000/float(iv.rstrip('ms'))))" "$THR_N" "$THR_IV")
  read -r bpid bport < <(start_broker)
  a=$(start_agent thr); sleep 2
  "$BIN/pluribusctl" deploy-fleet thr --count "$THR_N" --sink mqtt --broker "mqtt://127.0.0.1:$bport" --interval "$THR_IV" >/dev/null 2>&1
  hb wait thr "$THR_N" 60 >/dev/null
  sleep 3
  timeout 12 mosquitto_sub -p "$bport" -t 'devices/+/telemetry' >/dev/null &
  sub=$!
  sleep 1
  read -r rx0 tx0 < <(broker_counts "$bport")
  c0=$(cpu_ticks "$a"); m0=$(cpu_ticks "$bpid"); t0=$(ms)
  read -r rate failed < <(hb rate thr 10)
  read -r rx1 tx1 < <(broker_counts "$bport")
  c1=$(cpu_ticks "$a"); m1=$(cpu_ticks "$bpid"); t1=$(ms)
  wait "$sub" || true
  received=$(( (rx1 - rx0) * 1000 / (t1 - t0) )); delivered=$(( (tx1 - tx0) * 1000 / (t1 - t0) ))
  cpu=$(( (c1 - c0) * 100 / $(getconf CLK_TCK) / 10 )); mcpu=$(( (m1 - m0) * 100 / $(getconf CLK_TCK) / 10 ))
  row "| one agent → one mosquitto, $THR_N devices every $THR_IV ($ask/s asked), QoS 0 | agent sent ${rate} msg/s (failed ${failed}/s); mosquitto received ${received} msg/s and sent ${delivered} msg/s to one subscriber (mosquitto_sub); CPU: agent ${cpu}%, mosquitto ${mcpu}% (of one core) |"
  stop "$a" "$bpid"
fi

