#!/usr/bin/env bash
# The fix sink (issue 14) against a real QuickFIX acceptor (testkit/fix/acceptor.py, the
# quickfix2 binding; deploy/install-deps.sh installs it). Release build, loopback.
#   bench/fix.sh [SESSIONS] [THR_DEVICES] [THR_INTERVAL] [PER]   # defaults: 1000 200 20ms 1
# 1. SESSIONS devices log on (one TCP session each, HeartBtInt 30 s, one order per 10 s):
#    logons per second (deploy to the heartbeat that shows all logged on) and agent RSS
#    per logged-on session. With PER > 1, SESSIONS*PER devices share SESSIONS sessions
#    (--devices-per-session PER): RSS per session and per device.
# 2. THR_DEVICES devices send a NewOrderSingle every THR_INTERVAL for 10 s: orders/s the
#    agent sent, orders/s the acceptor logged (it answers each with an ExecutionReport),
#    and the agent's CPU per 1000 orders.
# Prints Markdown rows.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N="${1:-1000}"
THR_N="${2:-200}"
THR_IV="${3:-20ms}"
PER="${4:-1}"
# PLURIBUS_BIN=target/debug: a quick check of the script itself, no release build.
BIN="${PLURIBUS_BIN:-target/release}"
[[ -n "${PLURIBUS_BIN:-}" ]] || cargo build --release -p pluribus-agent -p pluribusctl --quiet
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; [[ -n "${KEEP:-}" ]] && echo "kept $WORK" || rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ids() { python3 -c "import sys; print(','.join('%s-%05d' % (sys.argv[1], i) for i in range(int(sys.argv[2]) + 1)))" "$1" "$2"; }
sids() { python3 -c "import sys; print(','.join('%s-s%d' % (sys.argv[1], i) for i in range(int(sys.argv[2]) + 1)))" "$1" "$2"; }
orders() { grep -c '"type": "D"' "$WORK/events.jsonl" || true; }

FPORT=$(free_port)
python3 testkit/fix/acceptor.py --port "$FPORT" --comp-id GATEWAY --clients "$(if [[ "$PER" -gt 1 ]]; then sids fx "$N"; else ids fx "$N"; fi),$(ids thr "$THR_N")" \
  --log "$WORK/events.jsonl" </dev/null >"$WORK/acceptor.log" 2>&1 &
pids+=($!)
NPORT=$(free_port)
nats-server -js -a 127.0.0.1 -p "$NPORT" -sd "$WORK/js" </dev/null >/dev/null 2>&1 &
pids+=($!)
export PLURIBUS_NATS_URL="nats://127.0.0.1:$NPORT" PLURIBUS_NAMESPACE=benchfix
for _ in $(seq 1 200); do grep -q '"ready"' "$WORK/events.jsonl" 2>/dev/null && break; sleep 0.1; done
for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$NPORT") 2>/dev/null && break; sleep 0.1; done
"$BIN/pluribus-agent" --name fix --heartbeat 250ms </dev/null >/dev/null 2>"$WORK/agent.log" &
AGENT=$!
pids+=($AGENT)
sleep 2
hb() { python3 bench/hb.py "$NPORT" benchfix "$@"; }

base=$(rss_kb "$AGENT")
t0=$(date +%s%3N)
DEV=$((N * PER))
shared=()
[[ "$PER" -gt 1 ]] && shared=(--devices-per-session "$PER" --sender-comp-id '{fleet}-s{index}' --shard-size $((PER * (500 / PER > 0 ? 500 / PER : 1))))
"$BIN/pluribusctl" deploy-fleet fx --count "$DEV" --sink fix --fix-host "127.0.0.1:$FPORT" \
  --target-comp-id GATEWAY --heartbeat 30s --interval 10s "${shared[@]}" --no-wait >/dev/null
read -r t1 fails < <(hb wait fx "$N" 60)
sleep 12
after=$(rss_kb "$AGENT")
ms=$((t1 - t0))
echo "| $N FIX sessions ($DEV devices), 1 agent, 1 QuickFIX acceptor: all logged on after | $ms ms (~$((N * 1000 / (ms > 0 ? ms : 1))) logons/s; failures $fails) |"
echo "| agent RSS per logged-on FIX session | $(( (after - base) * 1024 / N )) B (agent ${base} → ${after} KB) |"
[[ "$PER" -gt 1 ]] && echo "| agent RSS per device ($PER devices per session) | $(( (after - base) * 1024 / DEV )) B |"

"$BIN/pluribusctl" delete-fleet fx >/dev/null
"$BIN/pluribusctl" deploy-fleet thr --count "$THR_N" --sink fix --fix-host "127.0.0.1:$FPORT" \
  --target-comp-id GATEWAY --heartbeat 30s --interval "$THR_IV" --no-wait >/dev/null
hb wait thr "$THR_N" 120 >/dev/null
sleep 3
o0=$(orders); c0=$(cpu_ticks "$AGENT"); s0=$(date +%s%3N)
read -r rate failed < <(hb rate thr 10)
o1=$(orders); c1=$(cpu_ticks "$AGENT"); s1=$(date +%s%3N)
secs_ms=$((s1 - s0))
acc=$(( (o1 - o0) * 1000 / secs_ms ))
hz=$(getconf CLK_TCK)
cpu_ms=$(( (c1 - c0) * 1000 / hz ))
sent=$(( rate * secs_ms / 1000 ))
echo "| $THR_N devices × 1 order per $THR_IV: orders/s sent by the agent | $rate (send failures/s: $failed) |"
echo "| orders/s the QuickFIX acceptor received (and answered) | $acc |"
echo "| agent CPU per 1000 orders | $(( cpu_ms * 1000 / (sent > 0 ? sent : 1) )) ms ($cpu_ms ms CPU over ${secs_ms} ms) |"
