#!/usr/bin/env bash
# Soak (issue 15 §4): a steady load for a long time, sampling every 30 s what could grow:
# the agents' and nats-server's RSS (and mosquitto's), each agent's heartbeat size, and
# the messages and bytes of every JetStream stream (the KV buckets, the events stream).
# Prints a Markdown table of the slopes and checks (bench/soak.py) and exits non-zero if
# a check failed:
#   RSS flat within 5% after the warm-up; no stream beyond its bound (or, without one,
#   growing); messages per second within 0.5% of the schedule over every minute.
#
#   bench/soak.sh [--quick] [nats|mqtt|churn]
#     nats   (default) 50k generic devices on the nats sink, 1 msg/s each (50k msg/s), 2 agents
#     mqtt   10k devices on the mqtt sink into one mosquitto, 1 msg/s each, 1 agent
#     churn  the nats run with the fleet scaled 50k -> 25k -> 50k every minute (down at :00,
#            up at :30); RSS is compared at full size only, the rate is not checked
#   --quick  5 minutes (1 of warm-up) instead of 1 hour (3 of warm-up)
#   SOAK_DEVICES=N SOAK_DURATION=SECONDS SOAK_WARMUP=SECONDS override; SOAK_SAMPLES=FILE
#   keeps every sample as JSON lines.
# The binaries are copied before the run, so a rebuild while it runs changes nothing.
set -euo pipefail
QUICK=0
MODE=nats
for a in "$@"; do
  case "$a" in
    --quick) QUICK=1 ;;
    nats|mqtt|churn) MODE=$a ;;
    *) echo "soak.sh: unknown argument '$a' (use --quick and one of nats, mqtt, churn)" >&2; exit 2 ;;
  esac
done
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_nats "soak$MODE"
mkdir -p "$WORK/bin"
cp "$BIN/pluribus-agent" "$BIN/pluribusctl" "$WORK/bin/"
BIN=$WORK/bin
if ((QUICK)); then DURATION=300; WARMUP=60; else DURATION=3600; WARMUP=180; fi
DURATION=${SOAK_DURATION:-$DURATION}
WARMUP=${SOAK_WARMUP:-$WARMUP}
case $MODE in
  mqtt) DEVICES=${SOAK_DEVICES:-10000}; AGENTS=1 ;;
  *) DEVICES=${SOAK_DEVICES:-50000}; AGENTS=2 ;;
esac
NATS_PID=${pids[0]}

agent_pids=()
for i in $(seq 1 "$AGENTS"); do
  "$BIN/pluribus-agent" --name "a$i" </dev/null >/dev/null 2>"$WORK/a$i.log" &
  pids+=($!)
  agent_pids+=("--pid" "agent a$i=$!")
done
sleep 2

extra=()
case $MODE in
  mqtt)
    MQ=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_connections -1\n' "$MQ" >"$WORK/mosquitto.conf"
    [[ $(id -u) == 0 ]] && echo "user root" >>"$WORK/mosquitto.conf"
    mosquitto -c "$WORK/mosquitto.conf" </dev/null >"$WORK/mosquitto.log" 2>&1 &
    pids+=($!)
    extra=(--pid "mosquitto=$!")
    for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$MQ") 2>/dev/null && break; sleep 0.1; done
    "$BIN/pluribusctl" deploy-fleet soak --count "$DEVICES" --sink mqtt --broker "mqtt://127.0.0.1:$MQ" \
      --qos 0 --interval 1s --keepalive 60s --topic 'soak/{device_id}' --command-topic '' --timeout 120s >/dev/null
    ;;
  *)
    "$BIN/pluribusctl" deploy-fleet soak --count "$DEVICES" --sink nats \
      --subject 'soak.{fleet}.{device_id}' --interval 1s --timeout 120s >/dev/null
    ;;
esac
echo "soak.sh: $MODE, $DEVICES devices at 1 msg/s each on $AGENTS agent(s), ${DURATION}s (warm-up ${WARMUP}s)" >&2

churn=()
if [[ $MODE == churn ]]; then
  echo up >"$WORK/phase"
  churn=(--churn --phase-file "$WORK/phase")
  (
    # Scale down at :15 and up at :45 of every minute from the start; the samples (every
    # 30 s, at :00 and :30) land 15 s after a change, the phase file telling which size
    # they saw.
    start=$(date +%s)
    for ((k = 0; ; k++)); do
      sleep $(( start + 60 * k + 15 - $(date +%s) )) 2>/dev/null || true
      echo down >"$WORK/phase"
      "$BIN/pluribusctl" scale soak --count $(( DEVICES / 2 )) --timeout 25s >/dev/null 2>&1 || echo "soak.sh: scale down failed" >&2
      sleep $(( start + 60 * k + 45 - $(date +%s) )) 2>/dev/null || true
      echo up >"$WORK/phase"
      "$BIN/pluribusctl" scale soak --count "$DEVICES" --timeout 25s >/dev/null 2>&1 || echo "soak.sh: scale up failed" >&2
    done
  ) &
  pids+=($!)
fi

samples=${SOAK_SAMPLES:-$WORK/samples.jsonl}
python3 bench/soak.py --nats "$PORT" --mon "$MON" --ns "$PLURIBUS_NAMESPACE" --fleet soak \
  --duration "$DURATION" --warmup "$WARMUP" --sample 30 --rate "$DEVICES" \
  "${agent_pids[@]}" --pid "nats-server=$NATS_PID" "${extra[@]}" "${churn[@]}" --samples "$samples" | tee "$WORK/report.md"
tail -n1 "$WORK/report.md" | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["ok"] else 1)'
