#!/usr/bin/env bash
# Failover (issue 15 §2): SIGKILL one of N agents under a large fleet and time until every
# device runs again; count the KV writes each agent makes a second while nothing changes.
#   bench/failover.sh                       # 3 agents, 100k generic devices, 10 s interval
#   DEVICES=20000 AGENTS=2 bench/failover.sh
#   BIN=/path/to/other/build bench/failover.sh   # the same run with other binaries
# The same on a 3-node NATS cluster, with a node killed: bench/cluster.sh.
# Prints a Markdown table. Time to "running again" is read from the agents' heartbeats
# (500 ms apart here), so it is late by up to half a second. KV writes are the growth of
# each bucket's stream sequence (nats-server /jsz) over WINDOW seconds, divided by agents.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DEVICES=${DEVICES:-100000}
AGENTS=${AGENTS:-3}
WINDOW=${WINDOW:-20}
if [[ -z "${BIN:-}" ]]; then
  cargo build --release -p pluribus-agent -p pluribusctl --quiet
  BIN=target/release
fi
WORK=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  # BENCH_LOGS=DIR keeps the agents' logs.
  [[ -n ${BENCH_LOGS:-} ]] && mkdir -p "$BENCH_LOGS" && cp "$WORK"/*.log "$BENCH_LOGS"/
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; }
ms() { date +%s%3N; }
export PLURIBUS_NAMESPACE=fo
PORT=$(free_port); MON=$(free_port)
nats-server -js -a 127.0.0.1 -p "$PORT" -m "$MON" -sd "$WORK/js" </dev/null >/dev/null 2>&1 &
pids+=($!); disown $!
wait_port "$PORT"
export PLURIBUS_NATS_URL="nats://127.0.0.1:$PORT"

agent_pids=()
for i in $(seq 1 "$AGENTS"); do
  "$BIN/pluribus-agent" --name "a$i" --heartbeat 500ms </dev/null >/dev/null 2>"$WORK/a$i.log" &
  pids+=($!); agent_pids+=($!); disown $!
done

# Devices started by live agents, from heartbeats; $3 limits to the agents not named.
active() {
  "$BIN/pluribusctl" agents --json 2>/dev/null | python3 -c 'import sys,json
skip=sys.argv[1]
try: print(sum(a["active"] for a in json.load(sys.stdin)["agents"] if a["alive"] and a["name"]!=skip))
except Exception: print(-1)' "${1:-}"
}
wait_active() { # total timeout_s [agent to leave out]
  local deadline=$(( $(date +%s) + $2 ))
  while (( $(date +%s) < deadline )); do
    [[ "$(active "${3:-}")" == "$1" ]] && return 0
    sleep 0.1
  done
  echo "timed out waiting for $1 devices" >&2; return 1
}
# Stream sequences of the leases, liveness (both buckets, summed) and agents buckets (all
# writes, TTL expiries included).
seqs() {
  curl -s "http://127.0.0.1:$MON/jsz?streams=true" | python3 -c 'import sys,json
d=json.load(sys.stdin); out={}
for a in d.get("account_details",[]):
  for s in a.get("stream_detail",[]):
    out[s["name"]]=s["state"]["last_seq"]
live=out.get("KV_fo_pluribus_live",0)+out.get("KV_fo_pluribus_live2",0)
print(out.get("KV_fo_pluribus_leases",0), live, out.get("KV_fo_pluribus_agents",0))'
}

for _ in $(seq 1 100); do [[ "$(active)" == 0 ]] && break; sleep 0.2; done
sleep 2
"$BIN/pluribusctl" deploy-fleet big --count "$DEVICES" --sink nats --subject "bench.{fleet}.{device_id}" \
  --interval 10s --timeout 120s >/dev/null 2>&1
wait_active "$DEVICES" 120
sleep 3
read -r l0 v0 h0 < <(seqs)
sleep "$WINDOW"
read -r l1 v1 h1 < <(seqs)
lease_w=$(python3 -c "print(round(($l1-$l0)/$WINDOW/$AGENTS, 2))")
live_w=$(python3 -c "print(round(($v1-$v0)/$WINDOW/$AGENTS, 2))")
hb_w=$(python3 -c "print(round(($h1-$h0)/$WINDOW/$AGENTS, 2))")
shards=$(( (DEVICES + 499) / 500 ))

rows=()
rows+=("| KV writes/s per agent, steady ($DEVICES devices, $shards shards over $AGENTS agents): leases bucket | $lease_w |")
rows+=("| KV writes/s per agent, steady: the two liveness buckets (one renewal a second in each) | $live_w |")
rows+=("| KV writes/s per agent, steady: agents bucket (heartbeats, 500 ms here) | $hb_w |")

t0=$(ms)
echo "a1 killed at $(date -u +%H:%M:%S.%3N)" >&2
kill -9 "${agent_pids[0]}"
wait_active "$DEVICES" 120 a1
t1=$(ms)
rows+=("| agent a1 SIGKILLed: every device runs again on the others | $((t1 - t0)) ms |")

echo "| measure | result |"
echo "|---|---|"
printf '%s\n' "${rows[@]}"
