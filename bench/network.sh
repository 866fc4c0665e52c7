#!/usr/bin/env bash
# Network impairments (issue 11): the cost of impairments on vs off for one agent running
# 100k generic devices on the nats sink at 10k msg/s (interval 10s).
#   bench/network.sh         # prints a Markdown table; nothing is left running
# Off: the fleet has no network rules. On: `pluribusctl network set net $ON_FLAGS` on the
# same running fleet (default: latency 50ms ± 10ms normal and 1% loss, every device).
#   ON_FLAGS='--loss 1%' bench/network.sh    # other impairments
#   AGENT=/tmp/old/pluribus-agent bench/network.sh   # another agent binary (before/after)
#   PROFILE=/tmp/prof bench/network.sh       # also a 10 s perf profile of the agent, off and
#                                            # on, after each CPU window (not during it):
#                                            # PROFILE/off.data, PROFILE/on.data
# CPU is the agent's user+system time over a 20 s window, in % of one core.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The two binaries only (lib.sh's bench_nats builds the whole workspace).
cargo build --release -p pluribus-agent -p pluribusctl --quiet
BIN=target/release
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export PLURIBUS_NATS_URL="nats://127.0.0.1:$PORT" PLURIBUS_NAMESPACE=benchnet
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT
nats-server -js -a 127.0.0.1 -p "$PORT" -sd "$WORK/js" </dev/null >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

N=${N:-100000}
ON_FLAGS=${ON_FLAGS:---latency 50ms --jitter 10ms --distribution normal --loss 1%}
WINDOW=${WINDOW:-20}
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
cpu_pct() { # pid seconds -> % of one core
  local t0 t1
  t0=$(cpu_ticks "$1"); sleep "$2"; t1=$(cpu_ticks "$1")
  python3 -c "print(round(($t1 - $t0) / $(getconf CLK_TCK) / $2 * 100, 1))"
}
wait_devices() { # total timeout_s
  local deadline=$(( $(date +%s) + $2 ))
  while (( $(date +%s) < deadline )); do
    local n
    n=$("$BIN/pluribusctl" agents --json | python3 -c 'import sys,json; print(sum(a["devices"] for a in json.load(sys.stdin)["agents"] if a["alive"]))')
    [[ "$n" == "$1" ]] && return 0
    sleep 0.2
  done
  echo "timed out waiting for $1 devices" >&2; return 1
}

"${AGENT:-$BIN/pluribus-agent}" --name a1 </dev/null >/dev/null 2>"$WORK/a1.log" &
A1=$!
pids+=("$A1")
sleep 2
base=$(rss_kb "$A1")

"$BIN/pluribusctl" deploy-fleet net --count "$N" --sink nats --subject "bench.{fleet}.{device_id}" --interval 10s --timeout 120s >/dev/null 2>&1
wait_devices "$N" 60
sleep 15
off_rss=$(rss_kb "$A1")
off_cpu=$(cpu_pct "$A1" "$WINDOW")
profile() { # name
  [[ -n "${PROFILE:-}" ]] || return 0
  mkdir -p "$PROFILE"
  perf record -e cpu-clock -F 999 -g -p "$A1" -o "$PROFILE/$1.data" -- sleep 10 >/dev/null 2>&1 || echo "perf record failed" >&2
}
profile off

# shellcheck disable=SC2086
"$BIN/pluribusctl" network set net $ON_FLAGS >/dev/null
# Every device sends at least once (interval 10s) with the rules, so each has its state.
sleep 15
on_rss=$(rss_kb "$A1")
on_cpu=$(cpu_pct "$A1" "$WINDOW")
profile on
injected=$("$BIN/pluribusctl" report net --json | python3 -c '
import sys, json
n = json.load(sys.stdin)["fleets"][0].get("network", {})
print("dropped %d, delayed %d, added delay p50 %d us" % (n.get("dropped", 0), n.get("delayed", 0), n.get("added_delay_us", {}).get("p50", 0)))')

per() { python3 -c "print(round(($1 - $base) * 1024 / $N))"; }
echo "| measure ($N devices, 1 agent, $((N / 10)) msg/s, nats sink) | impairments off | on (\`$ON_FLAGS\`, every device) |"
echo "|---|---|---|"
echo "| agent CPU, % of one core over ${WINDOW} s | $off_cpu % | $on_cpu % |"
echo "| RSS per device | $(per "$off_rss") B | $(per "$on_rss") B |"
echo
echo "injected while on: $injected"
