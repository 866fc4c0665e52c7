#!/usr/bin/env bash
# What a scenario run costs the process running it (issue 12): `pluribusctl scenario run`
# drives a fleet of DEVICES (default 100,000) generic devices on 2 agents through deploy,
# wait_for, a HOLD and an expect, and we read the ctl's CPU time (utime + stime from
# /proc/PID/stat) against its wall time. The ctl's live view reads the agents' heartbeats
# every 2 s and wait_for every 500 ms; checks read heartbeats and events: no probe here
# (a probe costs what `pluribusctl probe` costs, per message received).
#   bench/scenario.sh                 # DEVICES=100000 HOLD=60s; prints a Markdown table
#   BENCH_BIN=target/debug DEVICES=100000 HOLD=30s bench/scenario.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_nats benchscen
DEVICES=${DEVICES:-100000}
HOLD=${HOLD:-60s}

"$BIN/pluribus-agent" --name a1 </dev/null >/dev/null 2>"$WORK/a1.log" &
pids+=($!)
"$BIN/pluribus-agent" --name a2 </dev/null >/dev/null 2>"$WORK/a2.log" &
pids+=($!)
for _ in $(seq 1 100); do
  n=$("$BIN/pluribusctl" agents --json | python3 -c 'import sys,json; print(sum(1 for a in json.load(sys.stdin)["agents"] if a["alive"]))')
  [[ "$n" == 2 ]] && break
  sleep 0.2
done

cat >"$WORK/s.yaml" <<YAML
fleets:
  big:
    count: ${DEVICES}
    device: {interval: 10s}
    sink: {type: nats, subject: "bench.{fleet}.{device_id}"}
steps:
  - deploy: {fleet: big, timeout: 5m}
  - wait_for: {condition: all devices active, timeout: 5m}
  - wait: ${HOLD}
  - expect:
      checks:
        - active >= 100%
        - errors == 0
        - no shard_fenced
        - lag p99 < 10s
YAML

ticks=$(getconf CLK_TCK)
t0=$(date +%s%3N)
"$BIN/pluribusctl" scenario run "$WORK/s.yaml" --report "$WORK/r.json" >"$WORK/out" 2>"$WORK/err" &
ctl=$!
cpu=0
while kill -0 "$ctl" 2>/dev/null; do
  # utime + stime (fields 14 and 15), kept while the process lives.
  c=$(awk '{print $14 + $15}' "/proc/$ctl/stat" 2>/dev/null || echo "$cpu")
  cpu=${c:-$cpu}
  sleep 0.5
done
# 0 passed, 3 a check failed (the figure is still the ctl's cost); anything else: broken.
rc=0
wait "$ctl" || rc=$?
if [[ $rc != 0 && $rc != 3 ]]; then cat "$WORK/out" "$WORK/err" >&2; exit 1; fi
verdict=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["verdict"], "/", ", ".join(c["name"]+": "+c["shown"] for c in d["checks"] if not c["passed"]) or "all checks passed")' "$WORK/r.json")
t1=$(date +%s%3N)
wall_ms=$((t1 - t0))
cpu_ms=$(python3 -c "print(round($cpu * 1000 / $ticks))")
pct=$(python3 -c "print(round(100 * $cpu_ms / $wall_ms, 2))")
echo "| measure | result |"
echo "|---|---|"
echo "| \`scenario run\` driving $DEVICES devices on 2 agents (deploy, wait_for, hold $HOLD, 4 checks): CPU of the ctl | ${cpu_ms} ms CPU over ${wall_ms} ms wall = ${pct}% of a core (verdict: $verdict) |"
