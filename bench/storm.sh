#!/usr/bin/env bash
# Reconnect storm (issue 11): N MQTT devices (default 2000) on one agent are partitioned
# at once for 20 s (`pluribusctl network set --offline`, connections closed) and released
# at once; their reconnect backoff (sink.reconnect: 1s doubling to 8s) decides how many
# come back together. Run once per jitter mode (none, equal, full); the figures are
# mosquitto's own: "New client connected" lines per second of its log after the release.
#   bench/storm.sh                 # prints a Markdown table; nothing is left running
#   N=5000 MODES="none full" bench/storm.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -p pluribus-agent -p pluribusctl --quiet
BIN=target/release
WORK=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
export PLURIBUS_NATS_URL="nats://127.0.0.1:$PORT" PLURIBUS_NAMESPACE=benchstorm
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT
nats-server -js -a 127.0.0.1 -p "$PORT" -sd "$WORK/js" </dev/null >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

N=${N:-2000}
MODES=${MODES:-none equal full}
PARTITION=${PARTITION:-20}
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

"$BIN/pluribus-agent" --name a1 </dev/null >/dev/null 2>"$WORK/a1.log" &
pids+=($!)
sleep 2

connects() { grep -c "New client connected.* as storm-" "$1" || true; }
wait_connects() { # log count timeout_s
  local deadline=$(( $(date +%s) + $3 ))
  while (( $(date +%s) < deadline )); do
    (( $(connects "$1") >= $2 )) && return 0
    sleep 0.5
  done
  echo "timed out: $(connects "$1") of $2 connects in $1" >&2; return 1
}

echo "| reconnect jitter | peak connects/s at the broker | seconds from release to all $N back | connects per second after the release |"
echo "|---|---|---|---|"
for mode in $MODES; do
  mport=$(free_port)
  log="$WORK/mosquitto-$mode.log"
  conf="$WORK/mosquitto-$mode.conf"
  printf 'listener %s 127.0.0.1\nallow_anonymous true\nlog_dest file %s\nlog_type notice\nlog_timestamp true\npersistence false\nmax_connections -1\n' "$mport" "$log" >"$conf"
  [[ $(id -u) == 0 ]] && echo "user root" >>"$conf"
  "$MOSQUITTO" -c "$conf" </dev/null >/dev/null 2>&1 &
  mpid=$!
  pids+=("$mpid")
  for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$mport") 2>/dev/null && break; sleep 0.1; done
  cat >"$WORK/storm.yaml" <<EOF
name: storm
count: $N
device:
  interval: 5s
sink:
  type: mqtt
  brokers: [mqtt://127.0.0.1:$mport]
  topic: storm/{device_id}
  command_topic: ''
  reconnect: {min: 1s, max: 8s, jitter: $mode}
EOF
  "$BIN/pluribusctl" deploy-fleet --file "$WORK/storm.yaml" >/dev/null 2>&1
  wait_connects "$log" "$N" 120
  sleep 3
  before=$(wc -l <"$log")
  "$BIN/pluribusctl" network set storm --offline --for "${PARTITION}s" >/dev/null
  released=$(( $(date +%s) + PARTITION ))
  wait_connects "$log" $(( 2 * N )) $(( PARTITION + 90 ))
  # Per second of mosquitto's clock, the connects after the partition began.
  tail -n +"$((before + 1))" "$log" | grep "New client connected.* as storm-" | cut -d: -f1 | sort | uniq -c | awk -v rel="$released" '
    { n[$2] = $1; if ($1 > peak) peak = $1; last = $2; if (!first) first = $2 }
    END {
      hist = ""; for (t = first; t <= last; t++) hist = hist (hist == "" ? "" : " ") (n[t] + 0)
      printf "%d|%d|%s\n", peak, last - rel + 1, hist
    }' >"$WORK/out"
  IFS='|' read -r peak took hist <"$WORK/out"
  echo "| $mode | $peak | $took | $hist |"
  "$BIN/pluribusctl" delete-fleet storm >/dev/null 2>&1
  sleep 3
  kill -9 "$mpid" 2>/dev/null || true
  wait "$mpid" 2>/dev/null || true
done
