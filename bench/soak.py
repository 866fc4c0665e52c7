#!/usr/bin/env python3
"""The sampler of bench/soak.sh: reads agent heartbeats straight off NATS (plain protocol, no
client library), and every SAMPLE seconds records the RSS of the watched processes, the size
of each agent's latest heartbeat and the size of every JetStream stream (the KV buckets and
the events stream, from nats-server's monitoring endpoint). At the end it prints a Markdown
report and a JSON line of the checks:

  soak.py --nats PORT --mon PORT --ns NS --fleet F --duration S --sample S --warmup S \
          --rate R --pid "agent a1=PID" --pid nats-server=PID [--churn] [--samples FILE]
  soak.py --analyze FILE --fleet F --rate R --warmup S [--churn]   # report on saved samples

- RSS: a least-squares line through the samples after the warm-up; the check is that the
  line moves by at most 5% of the mean RSS over that time ("flat within 5%"). The spread
  (max - min) / mean is shown too: nats-server is a Go program whose heap saws up and down
  with its garbage collector, which is not growth. With --churn the fleet is scaled down
  and up every minute, so only the samples taken at full size count.
- Buckets: messages and bytes of each stream after the warm-up and at the end; a stream
  with a configured bound (max_bytes / max_msgs) must stay within it, one without must not
  grow by more than 5%.
- Rate: messages per second over every minute, from each agent's own counter and heartbeat
  timestamps (so two agents' heartbeats need not line up), against --rate; the check is
  every minute within 0.5% (not with --churn, whose rate moves with the fleet's size).
"""
import argparse
import json
import socket
import sys
import threading
import time
import urllib.request


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("--nats", type=int, default=0)
    p.add_argument("--mon", type=int, default=0)
    p.add_argument("--ns", default="")
    p.add_argument("--fleet", required=True)
    p.add_argument("--duration", type=float, default=0)
    p.add_argument("--sample", type=float, default=30)
    p.add_argument("--warmup", type=float, default=120)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--pid", action="append", default=[], help="label=PID")
    p.add_argument("--churn", action="store_true")
    p.add_argument("--phase-file", help="with --churn: holds 'up' or 'down' (written by soak.sh)")
    p.add_argument("--samples", help="write every sample here as JSON lines")
    p.add_argument("--analyze", help="only report on the samples of an earlier run (a --samples file)")
    return p.parse_args()


class Heartbeats(threading.Thread):
    """Keeps, per agent, its latest heartbeat's size and a history of (ts_ms, messages)."""

    def __init__(self, port, ns, fleet):
        super().__init__(daemon=True)
        self.port, self.ns, self.fleet = port, ns, fleet
        self.lock = threading.Lock()
        self.size = {}  # agent name -> bytes of its latest heartbeat
        self.counts = {}  # agent name -> [(ts_ms, messages)]
        self.error = None

    def run(self):
        try:
            self.loop()
        except Exception as e:  # reported in the results, never silently
            self.error = repr(e)

    def loop(self):
        s = socket.create_connection(("127.0.0.1", self.port))
        s.settimeout(1.0)
        s.sendall(b'CONNECT {"verbose":false}\r\n')
        s.sendall(("SUB %s.pluribus.v1.hb.* 1\r\n" % self.ns).encode())
        buf = b""
        while True:
            try:
                chunk = s.recv(1 << 20)
            except socket.timeout:
                continue
            if not chunk:
                raise RuntimeError("NATS closed the connection")
            buf += chunk
            while True:
                nl = buf.find(b"\r\n")
                if nl < 0:
                    break
                line = buf[:nl]
                if line.startswith(b"MSG "):
                    size = int(line.split()[-1])
                    if len(buf) < nl + 2 + size + 2:
                        break
                    payload = buf[nl + 2 : nl + 2 + size]
                    buf = buf[nl + 2 + size + 2 :]
                    self.take(payload)
                else:
                    buf = buf[nl + 2 :]
                    if line == b"PING":
                        s.sendall(b"PONG\r\n")

    def take(self, payload):
        hb = json.loads(payload)
        name = hb.get("name") or hb.get("id")
        c = hb.get("fleets", {}).get(self.fleet, {})
        with self.lock:
            self.size[name] = len(payload)
            self.counts.setdefault(name, []).append((hb["ts_ms"], c.get("messages", 0)))

    def snapshot(self):
        with self.lock:
            return dict(self.size), {k: v[-1] for k, v in self.counts.items() if v}


def rss_kb(pid):
    try:
        with open("/proc/%s/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def streams(mon):
    url = "http://127.0.0.1:%d/jsz?accounts=true&streams=true&config=true" % mon
    with urllib.request.urlopen(url, timeout=5) as r:
        j = json.load(r)
    out = {}
    for acc in j.get("account_details", []):
        for st in acc.get("stream_detail", []):
            cfg, state = st.get("config", {}), st.get("state", {})
            out[st["name"]] = {
                "msgs": state.get("messages", 0),
                "bytes": state.get("bytes", 0),
                "max_bytes": cfg.get("max_bytes", -1),
                "max_msgs": cfg.get("max_msgs", -1),
                "max_per_subject": cfg.get("max_msgs_per_subject", -1),
            }
    return out


def unreset(points):
    """An agent's message counter as a running total: a counter that went down was reset
    (the agent dropped the fleet's counters when it held none of its shards, after a fence,
    say) and counts again from zero."""
    out, total, prev = [], 0, None
    for ts, n in points:
        total += n if prev is None or n < prev else n - prev
        if prev is None:
            total = n
        prev = n
        out.append((ts, total))
    return out


def slope_pct_per_h(ts, ys):
    n = len(ys)
    if n < 2:
        return 0.0
    mt, my = sum(ts) / n, sum(ys) / n
    den = sum((t - mt) ** 2 for t in ts)
    if den == 0 or my == 0:
        return 0.0
    b = sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / den
    return 100.0 * b * 3600.0 / my


def main():
    a = parse()
    if a.analyze:
        samples = [json.loads(l) for l in open(a.analyze) if l.strip()]
        hb = Heartbeats(0, "", a.fleet)
        for s in samples:
            for k, v in s.get("messages", {}).items():
                hb.counts.setdefault(k, []).append(tuple(v))
        report(a, samples, hb)
        return
    pids = dict(x.split("=", 1) for x in a.pid)
    hb = Heartbeats(a.nats, a.ns, a.fleet)
    hb.start()
    t0 = time.time()
    samples = []
    # Per agent, every (ts_ms, messages) seen, for the per-minute rate.
    out = open(a.samples, "w") if a.samples else None
    next_t = t0 + a.sample
    while True:
        now = time.time()
        if now < next_t:
            time.sleep(min(1.0, next_t - now))
            continue
        sizes, _ = hb.snapshot()
        phase = "up"
        if a.phase_file:
            try:
                phase = open(a.phase_file).read().strip() or "up"
            except OSError:
                pass
        try:
            js = streams(a.mon)
        except Exception as e:
            js = {"error": repr(e)}
        _, latest = hb.snapshot()
        s = {
            "t": round(now - t0, 1),
            "messages": latest,
            "phase": phase,
            "rss_kb": {k: rss_kb(v) for k, v in pids.items()},
            "hb_bytes": sizes,
            "streams": js,
        }
        samples.append(s)
        if out:
            out.write(json.dumps(s) + "\n")
            out.flush()
        print("soak: t=%4.0fs %s rss %s hb %s" % (
            s["t"], phase,
            " ".join("%s=%.1fMB" % (k, (v or 0) / 1024) for k, v in s["rss_kb"].items()),
            " ".join("%s=%dB" % kv for kv in sorted(sizes.items()))), file=sys.stderr, flush=True)
        next_t += a.sample
        if now - t0 >= a.duration:
            break
    report(a, samples, hb)


def report(a, samples, hb):
    checks = {}
    warm = [s for s in samples if s["t"] >= a.warmup]
    full = [s for s in warm if s["phase"] == "up"] if a.churn else warm
    print("| measure | after warm-up (t=%.0f s) | end (t=%.0f s) | min / max after warm-up | slope | check |" % (
        full[0]["t"] if full else 0, full[-1]["t"] if full else 0))
    print("|---|---|---|---|---|---|")
    labels = sorted({k for s in samples for k in s["rss_kb"]})
    for k in labels:
        pts = [(s["t"], s["rss_kb"][k]) for s in full if s["rss_kb"].get(k)]
        if len(pts) < 2:
            print("| RSS of %s | too few samples | | | | |" % k)
            continue
        ys = [y for _, y in pts]
        mean = sum(ys) / len(ys)
        spread = 100.0 * (max(ys) - min(ys)) / mean
        slope = slope_pct_per_h([t for t, _ in pts], ys)
        moved = abs(slope) * (pts[-1][0] - pts[0][0]) / 3600.0
        ok = moved <= 5.0
        checks["rss " + k] = ok
        print("| RSS of %s | %.1f MB | %.1f MB | %.1f / %.1f MB (spread %.1f%%) | %+.2f%%/h | %s |" % (
            k, ys[0] / 1024, ys[-1] / 1024, min(ys) / 1024, max(ys) / 1024, spread, slope,
            ("flat: the trend moves %.1f%%" if ok else "NOT flat: the trend moves %.1f%%") % moved))
    agents = sorted({k for s in samples for k in s["hb_bytes"]})
    for k in agents:
        ys = [s["hb_bytes"][k] for s in full if k in s["hb_bytes"]]
        if len(ys) < 2:
            continue
        ok = max(ys) <= 1.05 * min(ys) + 64
        checks["heartbeat " + k] = ok
        print("| heartbeat of %s | %d B | %d B | %d / %d B | | %s |" % (
            k, ys[0], ys[-1], min(ys), max(ys), "bounded" if ok else "GROWS"))
    names = sorted({k for s in full if "error" not in s["streams"] for k in s["streams"]})
    for k in names:
        pts = [s["streams"][k] for s in full if k in s.get("streams", {})]
        if len(pts) < 2:
            continue
        first, last = pts[0], pts[-1]
        mb, mm = last["max_bytes"], last["max_msgs"]
        if (mb and mb > 0) or (mm and mm > 0):
            ok = all((mb <= 0 or p["bytes"] <= mb) and (mm <= 0 or p["msgs"] <= mm) for p in pts)
            bound = "within its bound (%s%s)" % (
                "max %.0f MiB" % (mb / 1048576) if mb and mb > 0 else "",
                (" max %d msgs" % mm) if mm and mm > 0 else "")
        else:
            top = max(p["msgs"] for p in pts)
            ok = top <= 1.05 * first["msgs"] + 16
            bound = "flat (%d msgs per key)" % last["max_per_subject"] if ok else "GROWS"
        checks["stream " + k] = ok
        print("| stream %s | %d msgs, %d B | %d msgs, %d B | %d / %d msgs | | %s |" % (
            k, first["msgs"], first["bytes"], last["msgs"], last["bytes"],
            min(p["msgs"] for p in pts), max(p["msgs"] for p in pts), bound if ok else "NOT " + bound))
    # Per-minute rate, per agent from its own heartbeats, summed over the agents.
    with hb.lock:
        counts = {k: unreset(v) for k, v in hb.counts.items()}
    t_start = min((v[0][0] for v in counts.values() if v), default=0) + a.warmup * 1000
    t_end = max((v[-1][0] for v in counts.values() if v), default=0)
    minutes = []
    m = t_start
    while m + 60000 <= t_end:
        total = 0.0
        for v in counts.values():
            inside = [(ts, n) for ts, n in v if m <= ts <= m + 60000]
            if len(inside) >= 2 and inside[-1][0] > inside[0][0]:
                total += (inside[-1][1] - inside[0][1]) * 1000.0 / (inside[-1][0] - inside[0][0])
        minutes.append(total)
        m += 60000
    if minutes:
        errs = [100.0 * (r - a.rate) / a.rate for r in minutes]
        worst = max(errs, key=abs)
        bad = [i for i, e in enumerate(errs) if abs(e) > 0.5]
        if not a.churn:
            checks["rate"] = abs(worst) <= 0.5
        print("| msg/s over each minute (%d minutes, asked %s) | %.1f | %.1f | %.1f / %.1f | worst %+.2f%% | %s |" % (
            len(minutes), "{:,.0f}".format(a.rate) if not a.churn else "varies", minutes[0], minutes[-1],
            min(minutes), max(minutes), worst,
            "not checked (churn)" if a.churn else ("within 0.5%" if not bad else
            "NOT within 0.5%% in %d of %d minutes (minutes %s after the warm-up: %s)" % (
                len(bad), len(minutes), ", ".join(str(i) for i in bad[:10]),
                ", ".join("%+.1f%%" % errs[i] for i in bad[:10])))))
    if hb.error:
        print("\nheartbeat reader failed: %s" % hb.error)
        checks["heartbeats"] = False
    print()
    print(json.dumps({"checks": checks, "ok": all(checks.values()) and bool(checks)}))


if __name__ == "__main__":
    sys.exit(main())
