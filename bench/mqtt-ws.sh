#!/usr/bin/env bash
# MQTT over WebSocket: agent RSS per connected device with ws:// and wss:// (one WebSocket
# per device) against nats-server's websocket listener (MQTT at path /mqtt), keepalive
# 60 s, 1 msg/10 s, no command subscription; and mqtt:// against the same server's MQTT
# listener, so the difference is the WebSocket layer. wss:// uses a CA made here by openssl.
# A fresh agent per row. (Debian's mosquitto is built without websockets.)
#   bench/mqtt-ws.sh [DEVICES]    # default 2000; prints Markdown rows
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N="${1:-2000}"
cargo build --release --workspace --quiet
BIN=target/release
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
wait_port() { for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# A CA and a server certificate for 127.0.0.1 (for wss://).
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=bench-ca" -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$WORK/srv.key" -out "$WORK/srv.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$WORK/ext"
openssl x509 -req -in "$WORK/srv.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial -days 2 -extfile "$WORK/ext" -out "$WORK/srv.pem" 2>/dev/null

# Two servers (one websocket listener each): NAME PORT MQTT WS TLS-BLOCK. MQTT needs a
# server name and JetStream. The first is also the control plane.
start_nats() {
  cat >"$WORK/$1.conf" <<CONF
server_name: $1
listen: 127.0.0.1:$2
jetstream { store_dir: "$WORK/$1-js" }
mqtt { listen: "127.0.0.1:$3" }
websocket { listen: "127.0.0.1:$4", $5 }
CONF
  nats-server -c "$WORK/$1.conf" </dev/null >"$WORK/$1.log" 2>&1 &
  pids+=($!)
  wait_port "$2" && wait_port "$3" && wait_port "$4"
}
NPORT=$(free_port) MQ1=$(free_port) WS1=$(free_port)
NPORT2=$(free_port) MQ2=$(free_port) WS2=$(free_port)
start_nats ws "$NPORT" "$MQ1" "$WS1" "no_tls: true"
start_nats wss "$NPORT2" "$MQ2" "$WS2" "tls { cert_file: \"$WORK/srv.pem\", key_file: \"$WORK/srv.key\" }"
export PLURIBUS_NATS_URL="nats://127.0.0.1:$NPORT" PLURIBUS_NAMESPACE=benchws

# One row pair: LABEL FLEET BROKER [deploy flags...]
measure() {
  local label=$1 fleet=$2 broker=$3; shift 3
  "$BIN/pluribus-agent" --name "$fleet" </dev/null >/dev/null 2>"$WORK/$fleet.log" &
  local agent=$!
  pids+=($agent)
  sleep 2
  local base; base=$(rss_kb "$agent")
  local t0; t0=$(date +%s%3N)
  "$BIN/pluribusctl" deploy-fleet "$fleet" --count "$N" --sink mqtt --broker "$broker" "$@" \
    --interval 10s --keepalive 60s --command-topic '' --timeout 120s >/dev/null 2>&1
  python3 bench/hb.py "$NPORT" benchws wait "$fleet" "$N" 120 >/dev/null
  local t1; t1=$(date +%s%3N)
  sleep 12
  local after; after=$(rss_kb "$agent")
  echo "| $N devices over $label, 1 agent, nats-server: all connected after | $((t1 - t0)) ms |"
  echo "| agent RSS per connected $label device | $(( (after - base) * 1024 / N )) B (agent ${base} → ${after} KB) |"
  "$BIN/pluribusctl" delete-fleet "$fleet" >/dev/null 2>&1 || true
  kill -9 "$agent" 2>/dev/null || true
  wait "$agent" 2>/dev/null || true
  sleep 2
}

measure "mqtt:// (TCP)" plain "mqtt://127.0.0.1:$MQ1"
measure "ws:// (WebSocket)" ws "ws://127.0.0.1:$WS1/mqtt"
measure "wss:// (WebSocket over TLS)" wss "wss://127.0.0.1:$WS2/mqtt" --ca "$WORK/ca.pem"
