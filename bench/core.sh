#!/usr/bin/env bash
# Core benchmarks (issue 2): deploy time for 10k and 100k devices on 2 agents, RSS per
# generic device on the nats sink, and failover time after SIGKILL.
#   bench/core.sh            # prints a Markdown table; nothing is left running
#   bench/core.sh lag        # only the steady-lag run (issue 15 §3): 1M generic devices on 2
#                            # agents at a 10 s interval (100k msg/s), tick lag p50/p99/max and
#                            # the achieved rate over CORE_LAG_WINDOWS (default 3) windows of
#                            # 10 s, and each agent's CPU over them. CORE_LAG_DEVICES=N changes
#                            # the count; CORE_AGENT_ARGS adds agent flags (e.g. --wake-grid 2ms).
# Runs release binaries against a nats-server on a free port, everything on loopback.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_nats bench

# Called as $(start_agent NAME): a subshell, so the caller adds the pid to pids.
start_agent() {
  "$BIN/pluribus-agent" --name "$1" ${CORE_AGENT_ARGS:-} </dev/null >/dev/null 2>"$WORK/$1.log" &
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

if [[ "${1:-}" == lag ]]; then
  n=${CORE_LAG_DEVICES:-1000000}
  cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
  t0=$(ms)
  "$BIN/pluribusctl" deploy-fleet lag --count "$n" --sink nats --subject "bench.{fleet}.{device_id}" --interval 10s --timeout 300s >/dev/null 2>&1
  wait_agent_devices "$n" 300
  t1=$(ms)
  # Every device has sent at least once (slots are spread over the interval from 2 s after
  # the deploy), plus time for the start-up work to end.
  sleep 15
  echo "| window | achieved msg/s (asked $((n / 10))) | tick lag p50 | p99 | p999 | max | agent CPU (a1 + a2, % of one core) |"
  echo "|---|---|---|---|---|---|---|"
  hz=$(getconf CLK_TCK)
  for w in $(seq 1 "${CORE_LAG_WINDOWS:-3}"); do
    c0=$(( $(cpu_ticks "$A1") + $(cpu_ticks "$A2") ))
    "$BIN/pluribusctl" report lag --window 10s --json 2>/dev/null >"$WORK/lag$w.json"
    c1=$(( $(cpu_ticks "$A1") + $(cpu_ticks "$A2") ))
    python3 -c '
import json, sys
f = json.load(open(sys.argv[1]))["fleets"][0]
lag = f["tick_lag_us"]
cpu = 100.0 * (int(sys.argv[3]) / int(sys.argv[4])) / 10.0
print("| %s | %s | %.1f ms | %.1f ms | %s | %.1f ms | %.0f %% |" % (sys.argv[2], "{:,.0f}".format(f["msgs_per_s"]),
      lag["p50"] / 1000, lag["p99"] / 1000, ("%.1f ms" % (lag["p999"] / 1000)) if "p999" in lag else "–", lag["max"] / 1000, cpu))
' "$WORK/lag$w.json" "$w" "$((c1 - c0))" "$hz"
  done
  r1=$(rss_kb "$A1"); r2=$(rss_kb "$A2")
  echo
  echo "$n devices started $((t1 - t0)) ms after the deploy; RSS per device $(python3 -c "print(round(((($r1-$base1)+($r2-$base2))*1024)/$n))") B"
  exit 0
fi

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
