#!/usr/bin/env bash
# The README's first command: brings up a local Pluribus cluster and shows it working.
#   deploy/demo.sh          # install what is missing, build, start NATS + 2 agents,
#                           # deploy a 1000-device demo fleet, show status and `watch`
#   deploy/demo.sh stop     # stop everything the demo started (keeps the JetStream store,
#                           # so the next start brings the same fleets back)
#   deploy/demo.sh reset    # stop, and delete the store and logs: the next start is clean
# Everything lives in .pluribus-demo/ (logs, pids, the JetStream store).
# PLURIBUS_DEMO_DIR moves that folder; PLURIBUS_DEMO_PORT picks the NATS port (default 4222); PLURIBUS_DEMO_WATCH how many
# seconds `watch` runs (default 10; 0 = until Ctrl-C).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -d "$HOME/.cargo/bin" && ":$PATH:" != *":$HOME/.cargo/bin:"* ]]; then
  PATH="$HOME/.cargo/bin:$PATH"
fi
DIR="${PLURIBUS_DEMO_DIR:-.pluribus-demo}"
PORT="${PLURIBUS_DEMO_PORT:-4222}"
WATCH="${PLURIBUS_DEMO_WATCH:-10}"
export PLURIBUS_NATS_URL="nats://127.0.0.1:$PORT"
BIN=target/release

stop_all() {
  for pidfile in "$DIR"/*.pid; do
    [[ -f "$pidfile" ]] || continue
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
}

case "${1:-}" in
  stop)
    stop_all
    echo "demo stopped. Logs and the JetStream store are kept in $DIR/: the next"
    echo "deploy/demo.sh brings back the fleets you left (deploy/demo.sh reset starts clean)."
    exit 0
    ;;
  reset)
    stop_all
    rm -rf "$DIR"
    echo "demo stopped and $DIR/ deleted (fleets, logs): the next deploy/demo.sh starts clean"
    exit 0
    ;;
  "") ;;
  *)
    echo "error: unknown argument '$1': use deploy/demo.sh, deploy/demo.sh stop or deploy/demo.sh reset" >&2
    exit 2
    ;;
esac

bash deploy/install-deps.sh
# The first build takes a few minutes: show cargo's progress (it only redraws on a terminal).
echo "== building (release; the first build takes a few minutes)"
cargo build --release --workspace

mkdir -p "$DIR"
stop_all
if [[ -d "$DIR/js" ]]; then
  echo "== reusing the JetStream store in $DIR/js: fleets from the last run come back (deploy/demo.sh reset starts clean)"
fi
if (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "error: something already listens on 127.0.0.1:$PORT: stop it, or run with PLURIBUS_DEMO_PORT=<free port>" >&2
  exit 1
fi

echo "== starting nats-server on $PLURIBUS_NATS_URL (JetStream store in $DIR/js)"
nats-server -js -a 127.0.0.1 -p "$PORT" -sd "$DIR/js" -l "$DIR/nats.log" </dev/null >/dev/null 2>&1 &
echo $! >"$DIR/nats.pid"
for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

for name in agent-1 agent-2; do
  echo "== starting $name (log: $DIR/$name.log)"
  "$BIN/pluribus-agent" --name "$name" </dev/null >"$DIR/$name.out" 2>"$DIR/$name.log" &
  echo $! >"$DIR/$name.pid"
done

echo "== deploying fleet 'demo': 1000 generic devices, 1 msg/s each, to NATS subjects pluribus.telemetry.demo.<device>"
"$BIN/pluribusctl" deploy-fleet demo --count 1000 --sink nats --interval 1s --shard-size 100 --replace --timeout 60s
echo
"$BIN/pluribusctl" status
echo
# Devices send their first message 2 s after the deploy; give the rates a moment.
sleep 3
if [[ "$WATCH" == 0 ]]; then
  echo "== pluribusctl watch (Ctrl-C to leave; the cluster keeps running)"
  "$BIN/pluribusctl" watch || true
else
  echo "== pluribusctl watch for ${WATCH}s"
  "$BIN/pluribusctl" watch --count "$WATCH" || true
fi
cat <<MSG

The cluster is still running. Try:
  export PLURIBUS_NATS_URL=$PLURIBUS_NATS_URL
  $BIN/pluribusctl scale demo --count 2000
  kill -9 \$(cat $DIR/agent-1.pid)        # its devices come back on agent-2 within a few seconds
  $BIN/pluribusctl status
  $BIN/pluribusctl events --since 10m
  deploy/demo.sh stop      # keeps the fleets for the next start; deploy/demo.sh reset forgets them
MSG
