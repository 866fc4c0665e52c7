#!/usr/bin/env python3
"""Measuring helpers for bench/peers.sh (standard library only).

  meter.py tap OUT            # stdin: mosquitto's log (log_type notice); appends
                              # "unix_ms c|d client_id" lines to OUT as they arrive
  meter.py live OUT           # clients connected now, from OUT
  meter.py drain OUT MAX TIMEOUT_S
                              # waits until at most MAX clients are connected
  meter.py tree PID           # PID and its descendants, deepest last
  meter.py run --root PID --conns OUT --since MS --n N --timeout S
               [--broker PID] [--msgs FILE --settle S --window S] [--label L]
                              # samples the CPU time (utime+stime) and RSS of PID and all its
                              # descendants every 50 ms; waits until N clients connected after
                              # MS (broker's log); then, with --msgs, counts the messages a
                              # subscriber saw (FILE: one Unix-seconds timestamp per line)
                              # over a window of S seconds after --settle. Prints JSON.
                              # --ready FILE: created after the first sample; --launched FILE:
                              # holds the launch time (Unix ms) "all connected after" counts from

The broker's log is the one clock every generator is measured by: "connected" is the
broker's "New client connected" line (after CONNECT, as the CONNACK goes out), whichever
tool opened the connection.
"""
import argparse
import json
import os
import re
import sys
import time

CONNECTED = re.compile(r"New client connected from \S+ as (\S+) ")
GONE = [
    re.compile(r"Client (\S+) (?:disconnected|closed its connection|has exceeded timeout)"),
    re.compile(r"Socket error on client (\S+), disconnecting"),
]
TICK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def now_ms():
    return int(time.time() * 1000)


def tap(out):
    with open(out, "a", buffering=1) as f:
        for line in sys.stdin:
            m = CONNECTED.search(line)
            if m:
                f.write("%d c %s\n" % (now_ms(), m.group(1)))
                continue
            for g in GONE:
                m = g.search(line)
                if m and m.group(1) != "<unknown>":
                    f.write("%d d %s\n" % (now_ms(), m.group(1)))
                    break


def events(path):
    try:
        with open(path) as f:
            for line in f:
                p = line.split()
                if len(p) == 3:
                    yield int(p[0]), p[1], p[2]
    except FileNotFoundError:
        return


def live(path):
    ids = set()
    for _, kind, cid in events(path):
        if kind == "c":
            ids.add(cid)
        else:
            ids.discard(cid)
    return len(ids)


def connects_since(path, since):
    """(count, first_ms, last_ms) of connections at or after `since`."""
    n, first, last = 0, None, None
    for t, kind, _ in events(path):
        if kind == "c" and t >= since:
            n += 1
            first = t if first is None else first
            last = t
    return n, first, last


def children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s[s.rindex(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def tree(root):
    kids, out, todo = children_map(), [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def sample(pids):
    """(cpu seconds, rss KB) summed over pids (those still alive)."""
    cpu = rss = 0
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                s = f.read()
        except OSError:
            continue
        fields = s[s.rindex(")") + 2 :].split()
        cpu += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        rss += int(fields[21]) * PAGE_KB  # rss pages (field 24)
    return cpu / TICK, rss


class Sampler:
    def __init__(self, root):
        self.root, self.pids, self.refreshed, self.samples = root, [root], 0.0, []

    def tick(self):
        if time.time() - self.refreshed > 0.5:
            self.pids, self.refreshed = tree(self.root), time.time()
        cpu, rss = sample(self.pids)
        self.samples.append((now_ms(), cpu, rss))
        return self.samples[-1]

    def before(self, t):
        """The last sample taken before Unix ms t (or the first)."""
        best = self.samples[0]
        for s in self.samples:
            if s[0] < t:
                best = s
        return best

    def sleep(self, secs):
        end = time.time() + secs
        while time.time() < end:
            self.tick()
            time.sleep(0.05)


def count_msgs(path, t0, t1):
    n = 0
    try:
        with open(path) as f:
            for line in f:
                try:
                    t = float(line.split()[0]) * 1000
                except (ValueError, IndexError):
                    continue
                if t0 <= t < t1:
                    n += 1
    except FileNotFoundError:
        pass
    return n


def run(a):
    s = Sampler(a.root)
    s.tick()
    if a.ready:
        open(a.ready, "w").close()
    deadline = time.time() + a.timeout
    n, first, last = 0, None, None
    while time.time() < deadline:
        s.sleep(0.1)
        n, first, last = connects_since(a.conns, a.since)
        if n >= a.n:
            break
    res = {"label": a.label, "n": a.n, "connected": n}
    if n < a.n:
        res["error"] = "only %d of %d connected after %gs" % (n, a.n, a.timeout)
        print(json.dumps(res))
        return 1
    base = s.before(first)
    if a.launched:
        with open(a.launched) as f:
            a.since = int(f.read().strip())
    res.update(
        since_ms=a.since,
        first_ms=first,
        last_ms=last,
        all_after_ms=last - a.since,
        first_to_last_ms=last - first,
        connects_per_s=round((n - 1) * 1000.0 / max(last - first, 1), 1),
        rss_base_kb=base[2],
    )
    if a.msgs:
        s.sleep(a.settle)
        t0, cpu0, _ = s.tick()
        b0 = sample([a.broker])[0] if a.broker else 0
        s.sleep(a.window)
        t1, cpu1, rss = s.tick()
        b1 = sample([a.broker])[0] if a.broker else 0
        time.sleep(1.0)  # the subscriber's last lines reach its file
        msgs = count_msgs(a.msgs, t0, t1)
        secs = (t1 - t0) / 1000.0
        cpu = cpu1 - cpu0
        res.update(
            window_s=round(secs, 2),
            msgs=msgs,
            msgs_per_s=round(msgs / secs, 1),
            cpu_s=round(cpu, 2),
            cpu_pct=round(100 * cpu / secs, 1),
            msgs_per_cpu_s=round(msgs / cpu) if cpu > 0 else None,
            broker_cpu_pct=round(100 * (b1 - b0) / secs, 1) if a.broker else None,
        )
    else:
        s.sleep(a.settle)
        rss = s.tick()[2]
    res.update(
        rss_kb=rss,
        rss_per_conn_b=round((rss - base[2]) * 1024 / a.n),
        live_at_end=live(a.conns),
    )
    print(json.dumps(res))
    return 0


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "tap":
        tap(sys.argv[2])
        return 0
    if cmd == "tree":
        print(" ".join(map(str, tree(int(sys.argv[2])))))
        return 0
    if cmd == "live":
        print(live(sys.argv[2]))
        return 0
    if cmd == "drain":
        path, most, timeout = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
        deadline = time.time() + timeout
        while time.time() < deadline:
            if live(path) <= most:
                return 0
            time.sleep(0.2)
        print("still %d clients connected after %gs" % (live(path), timeout), file=sys.stderr)
        return 1
    if cmd == "run":
        p = argparse.ArgumentParser(prog="meter.py run")
        p.add_argument("--root", type=int, required=True)
        p.add_argument("--conns", required=True)
        p.add_argument("--since", type=int, required=True)
        p.add_argument("--n", type=int, required=True)
        p.add_argument("--timeout", type=float, default=60)
        p.add_argument("--broker", type=int)
        p.add_argument("--msgs")
        p.add_argument("--settle", type=float, default=3)
        p.add_argument("--window", type=float, default=20)
        p.add_argument("--label", default="")
        p.add_argument("--ready", help="a file created once the first sample is taken")
        p.add_argument("--launched", help="a file holding the launch time (Unix ms), if later than --since")
        return run(p.parse_args(sys.argv[2:]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
