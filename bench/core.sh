#!/usr/bin/env bash
# Core benchmarks (issue 2): deploy time for 10k and 100k devices on 2 agents, RSS per
# generic device on the nats sink, and failover time after SIGKILL.
#   bench/core.sh            # prints a Markdown table; nothing is left running
# Runs release binaries against a nats-server on a free port, everything on loopback.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_nats bench

# Called as $(start_agent NAME): a subshell, so the caller adds the pid to pids.
start_agent() {
  "$BIN/pluribus-agent" --name "$1" </dev/null >/dev/null 2>"$WORK/$1.log" &
  echo $!
}
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
ms() { date +%s%3N; }
wait_running() { # fleet count timeout_s
  local deadline=$(( $(date +%s) + $3 ))
  while (( $(date +%s) < deadline )); do
    local r
    r=$("$BIN/pluribusctl" status "$1" --json | python3 -c 'import sys,json; print(json.load(sys.stdin)["fleets"][0]["assigned"])')
    [[ "$r" == "$2" ]] && return 0
    sleep 0.2
  done
  echo "timed out waiting for $2 running in $1" >&2; return 1
}
# Devices started by the agents' shard runners, from heartbeats; $3 limits to one agent.
wait_agent_devices() { # total timeout_s [agent-name]
  local deadline=$(( $(date +%s) + $2 ))
  while (( $(date +%s) < deadline )); do
    local n
    n=$("$BIN/pluribusctl" agents --json | python3 -c 'import sys,json
only=sys.argv[1]
print(sum(a["active"] for a in json.load(sys.stdin)["agents"] if a["alive"] and (not only or a["name"]==only)))' "${3:-}")
    [[ "$n" == "$1" ]] && return 0
    sleep 0.1
  done
  echo "timed out waiting for $1 devices ${3:-}" >&2; return 1
}

A1=$(start_agent a1)
A2=$(start_agent a2)
pids+=("$A1" "$A2")
sleep 2
base1=$(rss_kb "$A1"); base2=$(rss_kb "$A2")

rows=()
for n in 10000 100000; do
  t0=$(ms)
  "$BIN/pluribusctl" deploy-fleet "f$n" --count "$n" --sink nats --subject "bench.{fleet}.{device_id}" --interval 10s --timeout 120s 2>/dev/null >/dev/null
  t1=$(ms)
  wait_agent_devices "$n" 60
  t2=$(ms)
  rows+=("| deploy-fleet of $n devices on 2 agents: command returns (every shard leased) | $((t1 - t0)) ms |")
  rows+=("| deploy-fleet of $n devices on 2 agents: agents report all devices started | $((t2 - t0)) ms |")
  "$BIN/pluribusctl" delete-fleet "f$n" >/dev/null 2>&1 || true
  wait_agent_devices 0 60
done

# RSS: 100k devices resident, measured after they settle.
"$BIN/pluribusctl" deploy-fleet rss --count 100000 --sink nats --subject "bench.{fleet}.{device_id}" --interval 10s --timeout 120s >/dev/null 2>&1
wait_agent_devices 100000 60
sleep 12
r1=$(rss_kb "$A1"); r2=$(rss_kb "$A2")
per=$(python3 -c "print(round(((($r1-$base1)+($r2-$base2))*1024)/100000))")
rows+=("| RSS per generic device on the nats sink (100k devices, 2 agents, 0.1 msg/s each) | $per B (agents: ${base1}→${r1} KB, ${base2}→${r2} KB) |")

# Failover: SIGKILL a1, time until the survivor runs all 100k again.
t0=$(ms)
kill -9 "$A1"
wait_agent_devices 100000 120 a2
t1=$(ms)
rows+=("| failover after SIGKILL (100k devices, default 10 s lease TTL): survivor runs all 100k | $((t1 - t0)) ms |")

echo "| measure | result |"
echo "|---|---|"
printf '%s\n' "${rows[@]}"
