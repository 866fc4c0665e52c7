#!/usr/bin/env bash
# Load-shape benchmarks (issue 6): how close one agent gets to a fleet-wide rate target
# (1k, 10k, 100k msg/s on the nats sink), and tick lateness p99 at 50k msg/s.
#   bench/load.sh            # prints a Markdown table; nothing is left running
# The achieved rate and lateness come from the agent's own counters and HDR histogram,
# over a 10 s window (`pluribusctl report --window 10s`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_nats benchload
"$BIN/pluribus-agent" --name a1 </dev/null >/dev/null 2>"$WORK/a1.log" &
pids+=($!)
sleep 2

echo "| target | devices | achieved msg/s | error | tick lag p50 | tick lag p99 | tick lag max |"
echo "|---|---|---|---|---|---|---|"
for rate in 1000 10000 50000 100000; do
  "$BIN/pluribusctl" deploy-fleet "r$rate" --count 10000 --rate "$rate/s" --sink nats \
    --subject "bench.{fleet}.{device_id}" --timeout 60s >/dev/null 2>&1
  sleep 5
  "$BIN/pluribusctl" report "r$rate" --window 10s --json 2>/dev/null | python3 -c '
import json, sys
target = float(sys.argv[1])
f = json.load(sys.stdin)["fleets"][0]
a, lag, n = f["msgs_per_s"], f["tick_lag_us"], f["active"]
p50, p99, mx = lag["p50"] / 1000, lag["p99"] / 1000, lag["max"] / 1000
print(f"| {target:,.0f} msg/s | {n:,} | {a:,.1f} | {100*(a-target)/target:+.2f}% | {p50:.1f} ms | {p99:.1f} ms | {mx:.1f} ms |")
' "$rate"
  "$BIN/pluribusctl" delete-fleet "r$rate" >/dev/null 2>&1
done
