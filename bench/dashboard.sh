#!/usr/bin/env bash
# The dashboard server's cost: CPU and memory of `pluribusctl dashboard` with 10 agents and
# 20 fleets while one headless Chromium has the page open, and the bytes per second it
# streams to that one page.
#   bench/dashboard.sh [WINDOW_S]      # default 60
#   AGENTS=10 FLEETS=1000 DEVICES=1 bench/dashboard.sh   # many fleets (the page shows 25 a page)
#   AGENTS=100 FLEETS=1000 DEVICES=1 bench/dashboard.sh  # the issue's 100 agents x 1000 fleets
#   DASH_FLAGS='--history 15m'   # extra flags of `pluribusctl dashboard`
# Prints the dashboard's CPU, its RSS sampled every 2 s over the window (min, max, last),
# the stream's bytes and frames, and how fast the page shows its first fleets and a next
# page of them.
# Needs what the browser test needs (deploy/install-deps.sh: chromium, playwright).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WINDOW=${1:-60}
AGENTS=${AGENTS:-10}
FLEETS=${FLEETS:-20}
DEVICES=${DEVICES:-50}
bench_nats benchdash

for i in $(seq 1 "$AGENTS"); do
  "$BIN/pluribus-agent" --name "a$i" </dev/null >/dev/null 2>"$WORK/agent$i.log" &
  pids+=($!)
done
for _ in $(seq 1 600); do
  n=$("$BIN/pluribusctl" agents --json 2>/dev/null | python3 -c 'import json,sys; print(sum(1 for a in json.load(sys.stdin)["agents"] if a["alive"]))' 2>/dev/null || echo 0)
  [[ "$n" == "$AGENTS" ]] && break
  sleep 0.5
done
for f in $(seq -f '%04g' 1 "$FLEETS"); do
  "$BIN/pluribusctl" deploy-fleet "f$f" --count "$DEVICES" --sink nats --interval 1s --no-wait >/dev/null
done
echo "$AGENTS agents, $FLEETS fleets x $DEVICES devices at 1 msg/s ($((FLEETS * DEVICES)) msg/s)"

# shellcheck disable=SC2086 # DASH_FLAGS is a list of flags
# Its own count of what it keeps, every 15 s (a debug line of the hub).
RUST_LOG=warn,pluribusctl::dashboard::hub=debug \
  "$BIN/pluribusctl" dashboard --listen 127.0.0.1:0 --json ${DASH_FLAGS:-} >"$WORK/dash.out" 2>"$WORK/dash.err" &
DASH=$!
pids+=($DASH)
for _ in $(seq 1 100); do grep -q '"url"' "$WORK/dash.out" 2>/dev/null && break; sleep 0.2; done
URL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$WORK/dash.out")

# One browser with the page open for the whole run.
python3 - "$URL" $((WINDOW + 20)) "$WORK/page" <<'PY' &
import sys, time
from playwright.sync_api import sync_playwright
url, secs, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with sync_playwright() as p:
    b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=["--headless", "--no-sandbox", "--disable-gpu"])
    page = b.new_page()
    t0 = time.monotonic()
    page.goto(url)
    page.wait_for_selector('#fleets tr[data-fleet="f0001"]', timeout=60000)
    first = time.monotonic() - t0
    nxt = page.locator('#fleets-pager button', has_text='›')
    turned = None
    if nxt.count():
        t1 = time.monotonic()
        nxt.click()
        page.wait_for_selector('#fleets tr[data-fleet="f0026"]', timeout=60000)
        turned = time.monotonic() - t1
    with open(out, "w") as f:
        f.write(f"page: first fleets shown {first:.2f} s after opening it; the next page of fleets {turned * 1000:.0f} ms after the click\n" if turned is not None else f"page: first fleets shown {first:.2f} s after opening it\n")
    time.sleep(secs)
    b.close()
PY
pids+=($!)
sleep 10 # warm-up: the page loaded, history filling

ticks() { awk '{print $14 + $15}' "/proc/$DASH/stat"; }
HZ=$(getconf CLK_TCK)
t0=$(ticks)
# RSS over the window, every 2 s.
( while kill -0 "$DASH" 2>/dev/null; do awk '/VmRSS/ {print $2}' "/proc/$DASH/status"; sleep 2; done ) >"$WORK/rss" 2>/dev/null &
pids+=($!)
# The same stream the page gets (default view: first page of fleets and agents).
timeout "$WINDOW" curl -sN "${URL}api/stream" >"$WORK/stream" || true
t1=$(ticks)
bytes=$(stat -c %s "$WORK/stream")
frames=$(grep -c '^event: frame' "$WORK/stream" || true)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$DASH/status")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$DASH/status")
samples=$(tr '\n' ' ' <"$WORK/rss")
python3 - "$t0" "$t1" "$HZ" "$WINDOW" "$bytes" "$frames" "$rss" "$hwm" "$samples" <<'PY'
import sys
t0, t1, hz, w, b, frames, rss, hwm = map(float, sys.argv[1:9])
samples = [int(x) / 1024 for x in sys.argv[9].split()] or [rss / 1024]
print(f"dashboard CPU over {w:.0f} s (one browser + one stream reader): {100 * (t1 - t0) / hz / w:.1f}% of a core")
print(f"dashboard RSS: {rss / 1024:.1f} MB (peak {hwm / 1024:.1f} MB); over the window min {min(samples):.1f}, max {max(samples):.1f} MB")
print(f"stream to one page: {b / w / 1024:.1f} KB/s, {frames / w:.2f} frames/s, {b / max(frames, 1) / 1024:.1f} KB per frame")
PY
cat "$WORK/page" 2>/dev/null || echo "page: no timings (the browser did not get there)"
kept=$(grep ' kept' "$WORK/dash.err" | tail -1 | sed 's/\x1b\[[0-9;]*m//g; s/.*kept //')
[[ -n "$kept" ]] && echo "the dashboard's count of what it keeps: $kept"
true
