# Shared setup of the benchmark scripts (source it): builds the release binaries, starts a
# nats-server with JetStream on a free loopback port, and kills everything started (pids
# added to `pids`) on exit.
#   bench_nats NAMESPACE     # sets BIN, WORK, PORT, MON (monitoring), PLURIBUS_NATS_URL, PLURIBUS_NAMESPACE
#   BENCH_BIN=target/debug   # use these binaries instead of building release ones

bench_nats() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  if [[ -n "${BENCH_BIN:-}" ]]; then
    BIN=$BENCH_BIN   # e.g. target/debug: skip the release build (figures are then pessimistic)
  else
    cargo build --release --workspace --quiet
    BIN=target/release
  fi
  WORK=$(mktemp -d)
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  MON=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  export PLURIBUS_NATS_URL="nats://127.0.0.1:$PORT"
  export PLURIBUS_NAMESPACE="$1"
  pids=()
  trap bench_cleanup EXIT
  nats-server -js -a 127.0.0.1 -p "$PORT" -m "$MON" -sd "$WORK/js" </dev/null >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
}

bench_cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
