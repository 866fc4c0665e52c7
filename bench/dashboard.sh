#!/usr/bin/env bash
# The dashboard server's cost: CPU and memory of `pluribusctl dashboard` with 10 agents and
# 20 fleets while one headless Chromium has the page open, and the bytes per second it
# streams to that one page.
#   bench/dashboard.sh [WINDOW_S]      # default 60
#   AGENTS=10 FLEETS=1000 DEVICES=1 bench/dashboard.sh   # many fleets (the page shows 25 a page)
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
for _ in $(seq 1 100); do
  n=$("$BIN/pluribusctl" agents --json 2>/dev/null | python3 -c 'import json,sys; print(sum(1 for a in json.load(sys.stdin)["agents"] if a["alive"]))' 2>/dev/null || echo 0)
  [[ "$n" == "$AGENTS" ]] && break
  sleep 0.5
done
for f in $(seq -f '%04g' 1 "$FLEETS"); do
  "$BIN/pluribusctl" deploy-fleet "f$f" --count "$DEVICES" --sink nats --interval 1s --no-wait >/dev/null
done
echo "$AGENTS agents, $FLEETS fleets x $DEVICES devices at 1 msg/s ($((FLEETS * DEVICES)) msg/s)"

"$BIN/pluribusctl" dashboard --listen 127.0.0.1:0 --json >"$WORK/dash.out" 2>"$WORK/dash.err" &
DASH=$!
pids+=($DASH)
for _ in $(seq 1 100); do grep -q '"url"' "$WORK/dash.out" 2>/dev/null && break; sleep 0.2; done
URL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$WORK/dash.out")

# One browser with the page open for the whole run.
python3 - "$URL" $((WINDOW + 20)) <<'PY' &
import sys, time
from playwright.sync_api import sync_playwright
url, secs = sys.argv[1], int(sys.argv[2])
with sync_playwright() as p:
    b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=["--headless", "--no-sandbox", "--disable-gpu"])
    page = b.new_page()
    page.goto(url)
    page.wait_for_selector('#fleets tr[data-fleet="f0001"]', timeout=60000)
    time.sleep(secs)
    b.close()
PY
pids+=($!)
sleep 10 # warm-up: the page loaded, history filling

ticks() { awk '{print $14 + $15}' "/proc/$DASH/stat"; }
HZ=$(getconf CLK_TCK)
t0=$(ticks)
# The same stream the page gets (default view: first page of fleets and agents).
timeout "$WINDOW" curl -sN "${URL}api/stream" >"$WORK/stream" || true
t1=$(ticks)
bytes=$(stat -c %s "$WORK/stream")
frames=$(grep -c '^event: frame' "$WORK/stream" || true)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$DASH/status")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$DASH/status")
python3 - "$t0" "$t1" "$HZ" "$WINDOW" "$bytes" "$frames" "$rss" "$hwm" <<'PY'
import sys
t0, t1, hz, w, b, frames, rss, hwm = map(float, sys.argv[1:])
print(f"dashboard CPU over {w:.0f} s (one browser + one stream reader): {100 * (t1 - t0) / hz / w:.1f}% of a core")
print(f"dashboard RSS: {rss / 1024:.1f} MB (peak {hwm / 1024:.1f} MB)")
print(f"stream to one page: {b / w / 1024:.1f} KB/s, {frames / w:.2f} frames/s, {b / max(frames, 1) / 1024:.1f} KB per frame")
PY
