#!/usr/bin/env bash
# What an agent costs at rest as the cluster grows: N real `pluribus-agent` processes
# (release build) on one real nats-server, one fleet of DEVICES_PER_AGENT devices per agent
# (one shard each) on the `nats` sink, then, after SETTLE seconds, a WINDOW-second
# measurement by bench/agents.py: per-agent RSS and CPU (from /proc), heartbeat msgs and
# bytes/s (a subscriber on the heartbeat subject), lease writes/s (a subscriber on the
# leases bucket's `$KV.<bucket>.>` subjects), KV writes/s (each bucket's stream sequence,
# from nats-server's /jsz), JetStream API requests/s (/jsz), what the server delivered to
# each agent (/connz) and the server's own CPU and RSS. Each N gets a fresh nats-server.
#
#   bench/agents.sh                      # N = 5, 25 and 50
#   bench/agents.sh 5 25 50 100          # any list of N
#   bench/agents.sh --json 5             # only the JSON lines (one per N) on stdout
#   WINDOW=60 SETTLE=30 DEVICES_PER_AGENT=20 INTERVAL=10s bench/agents.sh
#   DEVICES_PER_AGENT=10000 SHARD_SIZE=500 bench/agents.sh 2   # a realistic agent: 20 shards
#   NO_BUILD=1 bench/agents.sh           # use target/release as it is
#   BIN=/other/target/release bench/agents.sh   # binaries of another build (no build)
#   AGENT_FLAGS='--lease-ttl 30s' bench/agents.sh   # extra flags for every agent
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

JSON=""
NS_LIST=()
for arg in "$@"; do
  case "$arg" in
    --json) JSON=--json ;;
    ''|*[!0-9]*) echo "bench/agents.sh: '$arg' is not a number of agents (use e.g. 5 25 50, or --json)" >&2; exit 2 ;;
    *) NS_LIST+=("$arg") ;;
  esac
done
[[ ${#NS_LIST[@]} -gt 0 ]] || NS_LIST=(5 25 50)
WINDOW=${WINDOW:-60}
SETTLE=${SETTLE:-30}
DEVICES_PER_AGENT=${DEVICES_PER_AGENT:-20}
SHARD_SIZE=${SHARD_SIZE:-$DEVICES_PER_AGENT}
INTERVAL=${INTERVAL:-10s}
AGENT_FLAGS=${AGENT_FLAGS:-}

command -v nats-server >/dev/null || { echo "nats-server not found: run deploy/install-deps.sh" >&2; exit 1; }
if [[ -n "${BIN:-}" ]]; then
  [[ -x "$BIN/pluribus-agent" && -x "$BIN/pluribusctl" ]] || { echo "BIN=$BIN holds no pluribus-agent and pluribusctl" >&2; exit 1; }
elif [[ -z "${NO_BUILD:-}" ]]; then
  cargo build --release -p pluribus-agent -p pluribusctl --quiet
fi
BIN=${BIN:-target/release}
say() { echo "$@" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pids=()
WORK=""
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  [[ -n "$WORK" ]] && rm -rf "$WORK"
  WORK=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM

run_one() {
  local n=$1
  WORK=$(mktemp -d)
  local port mon
  port=$(free_port)
  mon=$(free_port)
  export PLURIBUS_NATS_URL="nats://127.0.0.1:$port"
  export PLURIBUS_NAMESPACE="benchagents"
  nats-server -js -a 127.0.0.1 -p "$port" -m "$mon" -sd "$WORK/js" </dev/null >"$WORK/nats.log" 2>&1 &
  local nats_pid=$!
  pids+=("$nats_pid")
  for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

  local agent_pids=()
  for i in $(seq 1 "$n"); do
    # shellcheck disable=SC2086
    "$BIN/pluribus-agent" --name "a$i" $AGENT_FLAGS </dev/null >/dev/null 2>"$WORK/agent$i.log" &
    pids+=($!)
    agent_pids+=($!)
  done
  say "N=$n: $n agents started; waiting until all are alive"
  local alive=0
  for _ in $(seq 1 240); do
    alive=$("$BIN/pluribusctl" agents --json 2>/dev/null | python3 -c 'import json,sys; print(sum(1 for a in json.load(sys.stdin)["agents"] if a["alive"]))' 2>/dev/null || echo 0)
    [[ "$alive" == "$n" ]] && break
    sleep 0.5
  done
  [[ "$alive" == "$n" ]] || { say "only $alive of $n agents alive after 120 s (logs in $WORK)"; return 1; }

  local devices=$((n * DEVICES_PER_AGENT))
  "$BIN/pluribusctl" deploy-fleet bench --count "$devices" --shard-size "$SHARD_SIZE" \
    --sink nats --subject 'bench.{fleet}.{device_id}' --interval "$INTERVAL" --timeout 120s >/dev/null
  say "N=$n: fleet of $devices devices leased ($SHARD_SIZE per shard); settling ${SETTLE}s, then measuring ${WINDOW}s"
  sleep "$SETTLE"
  local csv
  csv=$(IFS=,; echo "${agent_pids[*]}")
  python3 bench/agents.py --port "$port" --monitor "$mon" --ns "$PLURIBUS_NAMESPACE" \
    --window "$WINDOW" --agents "$csv" --nats-pid "$nats_pid" --devices "$devices" $JSON
  # Every shard must still be held by its own agent: a run where shards moved is not at rest.
  "$BIN/pluribusctl" status bench --json 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin)
f = [f for f in s.get("fleets", []) if f.get("name") == "bench"]
if f:
    print("N=%s: after the window, fleet bench: %s" % (sys.argv[1], {k: f[0].get(k) for k in ("desired", "assigned", "active", "pending")}), file=sys.stderr)
' "$n" || true
  cleanup
}

for n in "${NS_LIST[@]}"; do
  run_one "$n"
done
