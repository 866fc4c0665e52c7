#!/usr/bin/env bash
# MQTT over TLS (issue 3: "report TLS separately"): agent RSS per connected device with
# mqtts:// (one TLS connection per device), keepalive 60 s, 1 msg/10 s, against a
# mosquitto TLS listener with a CA made here by openssl.
#   bench/mqtt-tls.sh [DEVICES]    # default 2000; prints a Markdown row
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N="${1:-2000}"
cargo build --release --workspace --quiet
BIN=target/release
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# A CA and a server certificate for 127.0.0.1.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=bench-ca" -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$WORK/srv.key" -out "$WORK/srv.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$WORK/ext"
openssl x509 -req -in "$WORK/srv.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial -days 2 -extfile "$WORK/ext" -out "$WORK/srv.pem" 2>/dev/null

MPORT=$(free_port)
cat >"$WORK/m.conf" <<CONF
listener $MPORT 127.0.0.1
cafile $WORK/ca.pem
certfile $WORK/srv.pem
keyfile $WORK/srv.key
allow_anonymous true
max_connections -1
$( [[ "$(id -u)" == 0 ]] && echo "user root" )
CONF
mosquitto -c "$WORK/m.conf" </dev/null >/dev/null 2>&1 &
pids+=($!)
NPORT=$(free_port)
nats-server -js -a 127.0.0.1 -p "$NPORT" -sd "$WORK/js" </dev/null >/dev/null 2>&1 &
pids+=($!)
export PLURIBUS_NATS_URL="nats://127.0.0.1:$NPORT" PLURIBUS_NAMESPACE=benchtls
for p in "$MPORT" "$NPORT"; do for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break; sleep 0.1; done; done
"$BIN/pluribus-agent" --name tls </dev/null >/dev/null 2>"$WORK/agent.log" &
AGENT=$!
pids+=($AGENT)
sleep 2
base=$(rss_kb "$AGENT")
t0=$(date +%s%3N)
"$BIN/pluribusctl" deploy-fleet tls --count "$N" --sink mqtt --broker "mqtts://127.0.0.1:$MPORT" --ca "$WORK/ca.pem" \
  --interval 10s --keepalive 60s --command-topic '' --timeout 120s >/dev/null 2>&1
python3 bench/hb.py "$NPORT" benchtls wait tls "$N" 120 >/dev/null
t1=$(date +%s%3N)
sleep 12
after=$(rss_kb "$AGENT")
per=$(( (after - base) * 1024 / N ))
echo "| $N devices over mqtts:// (TLS, one connection each), 1 agent: all connected after | $((t1 - t0)) ms |"
echo "| agent RSS per connected TLS device | $per B (agent ${base} → ${after} KB) |"
