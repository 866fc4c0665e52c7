#!/usr/bin/env bash
# Pluribus on a 3-node NATS cluster (buckets with 3 replicas), everything on loopback:
#   1. deploy time for 100k devices on 2 agents, each agent on a different node
#   2. a NATS node SIGKILLed (the node agent a1 is connected to) under 20k devices sending
#      every second: messages lost as a probe on another node counts them
#   3. an agent SIGKILLed: failover time with R3 leases
#   bench/cluster.sh                          # prints a Markdown table; nothing is left running
#   PLURIBUS_LEASE_TTL=30s bench/cluster.sh   # the agents' lease TTL (default 3s)
#   KILL=live-leader bench/cluster.sh         # in 2., kill the node that leads the (first) liveness
#                                             # bucket's stream (the agents renew their key in
#                                             # the second one, led elsewhere, meanwhile)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
#   BIN=/path/to/build N=20000 L=5000 bench/cluster.sh   # other binaries, smaller fleets
if [[ -z "${BIN:-}" ]]; then
  cargo build --release -p pluribus-agent -p pluribusctl --quiet
  BIN=$PWD/target/release
fi
BIN=$(cd "$BIN" && pwd)
WORK=$(mktemp -d)
pids=()
cleanup() {
  [[ -f $WORK/pids ]] && mapfile -t -O "${#pids[@]}" pids <"$WORK/pids"
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  # BENCH_LOGS=DIR keeps the agents' and servers' logs.
  [[ -n ${BENCH_LOGS:-} ]] && mkdir -p "$BENCH_LOGS" && cp "$WORK"/*.log "$BENCH_LOGS"/
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ms() { date +%s%3N; }

# Three nodes routed together.
declare -a CPORT RPORT MPORT NPID
for i in 0 1 2; do CPORT[$i]=$(free_port); RPORT[$i]=$(free_port); MPORT[$i]=$(free_port); done
for i in 0 1 2; do
  routes=""
  for j in 0 1 2; do [[ $j == "$i" ]] || routes+="nats-route://127.0.0.1:${RPORT[$j]},"; done
  nats-server -js -sd "$WORK/js$i" -a 127.0.0.1 -p "${CPORT[$i]}" -m "${MPORT[$i]}" -n "n$((i + 1))" \
    --cluster_name bench --cluster "nats://127.0.0.1:${RPORT[$i]}" --routes "${routes%,}" \
    </dev/null >"$WORK/n$i.log" 2>&1 &
  NPID[$i]=$!
  echo $! >>"$WORK/pids"
done
url() { echo "nats://127.0.0.1:${CPORT[$1]}"; }
export PLURIBUS_NAMESPACE=clbench PLURIBUS_KV_REPLICAS=3
TTL=${PLURIBUS_LEASE_TTL:-3s}
KILL=${KILL:-a1-node}
# pluribusctl and the probe use node 3 unless it is the one killed.
CTL_NODE=2
ctl() { "$BIN/pluribusctl" --nats-url "$(url "$CTL_NODE")" "$@"; }
# The server name ("n1".."n3") that leads stream $1, as node $2's monitoring port says.
stream_leader() {
  curl -s "http://127.0.0.1:${MPORT[$2]}/jsz?streams=true" | python3 -c 'import sys,json
want=sys.argv[1]
for a in json.load(sys.stdin).get("account_details", []):
    for s in a.get("stream_detail", []):
        if s.get("name") == want:
            print((s.get("cluster") or {}).get("leader", "")); sys.exit()' "$1"
}
# JetStream is ready once a meta leader is elected: until then status fails.
for _ in $(seq 1 150); do ctl status >/dev/null 2>&1 && break; sleep 0.2; done
ctl status >/dev/null

start_agent() { # name node
  RUST_LOG=${RUST_LOG:-info} "$BIN/pluribus-agent" --nats-url "$(url "$2")" --name "$1" </dev/null >/dev/null 2>"$WORK/$1.log" &
  echo $! >>"$WORK/pids"
  echo $!
}
# Devices the live agents report (heartbeats), through node 2; $2 limits to one agent.
devices() {
  ctl agents --json 2>/dev/null | python3 -c 'import sys,json
only=sys.argv[1]
try: a=json.load(sys.stdin)["agents"]
except Exception: print(-1); sys.exit()
print(sum(x["active"] for x in a if x["alive"] and (not only or x["name"]==only)))' "${1:-}"
}
wait_devices() { # total timeout_s [agent]
  local deadline=$(( $(date +%s) + $2 ))
  while (( $(date +%s) < deadline )); do
    [[ $(devices "${3:-}") == "$1" ]] && return 0
    sleep 0.1
  done
  echo "timed out waiting for $1 devices ${3:-}" >&2; return 1
}

A1=$(start_agent a1 0)
A2=$(start_agent a2 1)
sleep 2
rows=()
N=${N:-100000}
t0=$(ms)
ctl deploy-fleet big --count "$N" --sink nats --subject "bench.{fleet}.{device_id}" --interval 10s --timeout 120s >/dev/null 2>&1
t1=$(ms)
wait_devices "$N" 90
t2=$(ms)
rows+=("| 3-node NATS cluster, R3 buckets: deploy-fleet of $N devices on 2 agents (on nodes 1 and 2), command returns | $((t1 - t0)) ms |")
rows+=("| same: agents report all $N devices started | $((t2 - t0)) ms |")
sleep 5

ctl delete-fleet big >/dev/null 2>&1
wait_devices 0 60
# Kill node 1 (a1's server), or with KILL=live-leader the node that leads the liveness
# bucket, under 20k devices sending every second, while a probe on another node counts what
# arrives: `lost` is seqs missing per device, so any device that stopped shows.
L=${L:-20000}
ctl deploy-fleet live --count "$L" --sink nats --subject "bench.{fleet}.{device_id}" --interval 1s --timeout 120s >/dev/null 2>&1
wait_devices "$L" 60
VICTIM=0
# The two liveness streams' leaders (the agents keep them on different nodes).
leaders="$(stream_leader "KV_${PLURIBUS_NAMESPACE}_pluribus_live" 2)/$(stream_leader "KV_${PLURIBUS_NAMESPACE}_pluribus_live2" 2)"
if [[ $KILL == live-leader ]]; then
  leader=$(stream_leader "KV_${PLURIBUS_NAMESPACE}_pluribus_live" 2)
  [[ $leader =~ ^n[123]$ ]] || { echo "cluster.sh: no leader found for the liveness stream ('$leader')" >&2; exit 1; }
  VICTIM=$(( ${leader#n} - 1 ))
  [[ $VICTIM == 2 ]] && CTL_NODE=0
fi
"$BIN/pluribusctl" --nats-url "$(url "$CTL_NODE")" probe --subject 'bench.live.>' --duration 35s --json \
  >"$WORK/probe.json" 2>/dev/null &
probe=$!
echo $probe >>"$WORK/pids"
sleep 5
t0=$(ms)
kill -9 "${NPID[$VICTIM]}"
blind=""
while (( $(ms) - t0 < 30000 )); do
  if [[ $(devices) != -1 ]]; then blind=$(( $(ms) - t0 )); break; fi
  sleep 0.1
done
wait "$probe" || true
read -r received lost < <(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["received"], s["lost"])' "$WORK/probe.json")
fenced=$(cat "$WORK"/a1.log "$WORK"/a2.log | grep -c "stopping every shard (fenced)" || true)
rows+=("| lease TTL $TTL: NATS node $((VICTIM + 1)) SIGKILLed ($KILL; liveness streams led by $leaders) under $L devices at 1 msg/s (a probe on node $((CTL_NODE + 1)) for 35 s) | $lost of $(( received + lost )) messages lost ($(python3 -c "print(round($lost*100/max(1,$received+$lost),3))")%); agents that fenced: $fenced |")
rows+=("| same: \`pluribusctl agents\` through node $((CTL_NODE + 1)) answers again after the kill (JetStream leader elections) | ${blind:-more than 30000} ms |")

# Kill agent a1: a2 takes everything over, with R3 leases on the two nodes left.
t0=$(ms)
kill -9 "$A1"
wait_devices "$L" 120 a2
t1=$(ms)
rows+=("| lease TTL $TTL: agent SIGKILLed (R3 leases on 2 of 3 nodes): survivor runs all $L | $((t1 - t0)) ms |")
kill -9 "$A2" 2>/dev/null || true

echo "| measure | result |"
echo "|---|---|"
printf '%s\n' "${rows[@]}"
