#!/usr/bin/env python3
"""Measures a running Pluribus cluster at rest over a window (used by bench/agents.sh).

  agents.py --port P --monitor M --ns NS --window S --agents PID,PID,... --nats-pid PID
            [--devices N] [--json]

Sources, all read at the start and the end of the window:
- each agent's /proc/PID/stat (utime + stime) and /proc/PID/status (VmRSS), and the
  nats-server's;
- nats-server's monitoring endpoints: /varz (all messages and bytes in and out), /connz
  (per connection; the agents' connections are the ones named `pluribus-agent`: what the
  server delivered to each agent and what each agent sent), /jsz?accounts=true&streams=true
  (each KV bucket's stream: last sequence = writes; the JetStream API request counter);
- one plain-protocol NATS subscriber (no client library) on the heartbeat subject, the
  buckets' `$KV.<bucket>.>` subjects, `$JS.API.>`, the work and event subjects and
  the telemetry subject, counting messages and bytes (payload + headers) per subject.
"""
import argparse
import json
import os
import socket
import time
import urllib.request

HZ = os.sysconf("SC_CLK_TCK")


def ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])  # utime + stime (fields 14, 15)


def cpu_ns(pid):
    """Time on a CPU of every thread of the process, in ns (finer than the 10 ms ticks)."""
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def get(monitor, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{monitor}{path}", timeout=10) as r:
        return json.load(r)


def server_sample(monitor, ns):
    varz = get(monitor, "/varz")
    connz = get(monitor, "/connz?limit=100000")
    jsz = get(monitor, "/jsz?accounts=true&streams=true")
    streams = {}
    api_total = 0
    for acc in jsz.get("account_details") or []:
        api_total += (acc.get("api") or {}).get("total", 0)
        for s in acc.get("stream_detail") or []:
            streams[s["name"]] = s["state"]["last_seq"]
    if not api_total:
        api_total = (jsz.get("api") or {}).get("total", 0)
    agents = {
        c["cid"]: c
        for c in connz.get("connections") or []
        if c.get("name") == "pluribus-agent"
    }
    return {"varz": varz, "agents": agents, "streams": streams, "api": api_total}


class Subscriber:
    """Counts what is published on some subjects, over the plain NATS protocol."""

    def __init__(self, port, subjects):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.settimeout(0.2)
        self.names = list(subjects)
        self.count = {k: [0, 0] for k in self.names}  # messages, bytes
        self.ops = {}  # KV-Operation header of lease writes: PUT (none), DEL, PURGE
        self.buf = b""
        self.pong = False
        self.s.recv(65536)  # INFO
        self.s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"name":"bench-agents"}\r\n')
        for sid, subj in enumerate(self.names):
            self.s.sendall(f"SUB {subj} {sid}\r\n".encode())
        self.s.sendall(b"PING\r\n")
        deadline = time.time() + 10
        while not self.pong and time.time() < deadline:
            self.poll()
        if not self.pong:
            raise SystemExit("the subscriber got no PONG from nats-server in 10 s")
        self.received = 0
        self.count = {k: [0, 0] for k in self.names}

    def poll(self):
        try:
            chunk = self.s.recv(1 << 20)
        except socket.timeout:
            return
        if not chunk:
            raise SystemExit("nats-server closed the subscriber's connection")
        self.buf += chunk
        while True:
            nl = self.buf.find(b"\r\n")
            if nl < 0:
                return
            line = self.buf[:nl]
            if line.startswith(b"MSG ") or line.startswith(b"HMSG "):
                parts = line.split()
                size = int(parts[-1])
                if len(self.buf) < nl + 2 + size + 2:
                    return
                body = self.buf[nl + 2 : nl + 2 + size]
                self.buf = self.buf[nl + 2 + size + 2 :]
                name = self.names[int(parts[2])]
                self.count[name][0] += 1
                self.count[name][1] += size
                if name.endswith("leases.>"):
                    op = "PUT"
                    if parts[0] == b"HMSG":
                        for h in body[: int(parts[-2])].split(b"\r\n"):
                            if h.lower().startswith(b"kv-operation:"):
                                op = h.split(b":", 1)[1].strip().decode()
                    # `$KV.<bucket>.<key>`: keys starting with `_` (e.g. `_live.<agent>`,
                    # one liveness entry per agent) are counted apart from shard leases.
                    key = parts[1].split(b".", 2)[-1]
                    if key.startswith(b"_"):
                        op = key.split(b".")[0].decode() + " " + op
                    self.ops[op] = self.ops.get(op, 0) + 1
            else:
                self.buf = self.buf[nl + 2 :]
                if line == b"PING":
                    self.s.sendall(b"PONG\r\n")
                elif line == b"PONG":
                    self.pong = True

    def run(self, seconds):
        end = time.time() + seconds
        while time.time() < end:
            self.poll()


def per_agent(before, after, key, window):
    vals = [
        (after[cid][key] - before[cid][key]) / window
        for cid in after
        if cid in before
    ]
    return vals


def stats(vals):
    if not vals:
        return {"mean": 0.0, "min": 0.0, "max": 0.0}
    return {"mean": sum(vals) / len(vals), "min": min(vals), "max": max(vals)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--monitor", type=int, required=True)
    ap.add_argument("--ns", required=True)
    ap.add_argument("--window", type=float, default=60)
    ap.add_argument("--agents", required=True)
    ap.add_argument("--nats-pid", type=int, required=True)
    ap.add_argument("--devices", type=int, default=0)
    ap.add_argument("--telemetry", default="bench.>")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    pids = [int(p) for p in a.agents.split(",") if p]
    ns = a.ns
    b = {
        "hb": f"{ns}.pluribus.v1.hb.*",
        "leases": f"$KV.{ns}_pluribus_leases.>",
        "agents": f"$KV.{ns}_pluribus_agents.>",
        "fleets": f"$KV.{ns}_pluribus_fleets.>",
        "peers": f"$KV.{ns}_pluribus_peers.>",
        "live": f"$KV.{ns}_pluribus_live.>",
        "live2": f"$KV.{ns}_pluribus_live2.>",
        "api": "$JS.API.>",
        "work": f"{ns}.pluribus.v1.work",
        "evt": f"{ns}.pluribus.v1.evt.>",
        "telemetry": a.telemetry,
    }
    sub = Subscriber(a.port, b.values())

    s0 = server_sample(a.monitor, ns)
    c0 = {p: ticks(p) for p in pids + [a.nats_pid]}
    n0 = {p: cpu_ns(p) for p in pids}
    t0 = time.time()
    sub.run(a.window)
    c1 = {p: ticks(p) for p in pids + [a.nats_pid]}
    n1 = {p: cpu_ns(p) for p in pids}
    t1 = time.time()
    s1 = server_sample(a.monitor, ns)
    w = t1 - t0

    n = len(pids)
    # schedstat (ns) of the threads alive at both ends; ticks (utime + stime, 10 ms steps,
    # also counting threads that ended) as a cross-check of the mean.
    cpu = [100.0 * (n1[p] - n0[p]) / 1e9 / w for p in pids]
    cpu_ticks = sum(100.0 * (c1[p] - c0[p]) / HZ / w for p in pids) / max(len(pids), 1)
    rss = [rss_kb(p) / 1024.0 for p in pids]
    cnt = {k: sub.count[v] for k, v in b.items()}
    rate = {k: (m / w, by / w) for k, (m, by) in cnt.items()}
    kv = {}
    for bucket in ("fleets", "leases", "agents", "peers", "live", "live2"):
        name = f"KV_{ns}_pluribus_{bucket}"
        kv[bucket] = (s1["streams"].get(name, 0) - s0["streams"].get(name, 0)) / w
    v0, v1 = s0["varz"], s1["varz"]
    # What the server delivered, less what it delivered to this subscriber.
    own_msgs = sum(m for m, _ in cnt.values())
    own_bytes = sum(by for _, by in cnt.values())
    out_msgs = (v1["out_msgs"] - v0["out_msgs"] - own_msgs) / w
    out_bytes = (v1["out_bytes"] - v0["out_bytes"] - own_bytes) / w
    recv_msgs = per_agent(s0["agents"], s1["agents"], "out_msgs", w)
    recv_bytes = per_agent(s0["agents"], s1["agents"], "out_bytes", w)
    sent_msgs = per_agent(s0["agents"], s1["agents"], "in_msgs", w)
    sent_bytes = per_agent(s0["agents"], s1["agents"], "in_bytes", w)
    hb_msgs, hb_bytes = rate["hb"]
    out = {
        "agents": n,
        "devices": a.devices,
        "window_s": round(w, 1),
        "agent_rss_mb": {k: round(v, 2) for k, v in stats(rss).items()},
        "agent_cpu_pct": {k: round(v, 3) for k, v in stats(cpu).items()},
        "agent_cpu_ticks_pct_mean": round(cpu_ticks, 3),
        "heartbeats_per_s": round(hb_msgs, 2),
        "heartbeat_bytes_per_s": round(hb_bytes, 1),
        "heartbeat_bytes": round(hb_bytes / hb_msgs) if hb_msgs else 0,
        "lease_writes_per_s": round(rate["leases"][0], 2),
        "shard_lease_writes_per_s": round(
            sum(v for k, v in sub.ops.items() if not k.startswith("_")) / w, 2
        ),
        "lease_ops": {k: round(v / w, 2) for k, v in sorted(sub.ops.items())},
        "kv_writes_per_s": {k: round(v, 2) for k, v in kv.items()},
        "kv_write_bytes_per_s": round(
            rate["leases"][1] + rate["agents"][1] + rate["fleets"][1] + rate["peers"][1] + rate["live"][1]
            + rate["live2"][1], 1
        ),
        "js_api_per_s": round((s1["api"] - s0["api"]) / w, 2),
        "js_api_msgs_per_s": round(rate["api"][0], 2),
        "work_offers_per_s": round(rate["work"][0], 2),
        "events_per_s": round(rate["evt"][0], 2),
        "telemetry_msgs_per_s": round(rate["telemetry"][0], 1),
        "telemetry_bytes_per_s": round(rate["telemetry"][1], 1),
        "server_in_msgs_per_s": round((v1["in_msgs"] - v0["in_msgs"]) / w, 1),
        "server_out_msgs_per_s": round(out_msgs, 1),
        "server_out_bytes_per_s": round(out_bytes, 1),
        "per_agent_received_msgs_per_s": round(stats(recv_msgs)["mean"], 2),
        "per_agent_received_bytes_per_s": round(stats(recv_bytes)["mean"], 1),
        "per_agent_sent_msgs_per_s": round(stats(sent_msgs)["mean"], 2),
        "per_agent_sent_bytes_per_s": round(stats(sent_bytes)["mean"], 1),
        "nats_cpu_pct": round(100.0 * (c1[a.nats_pid] - c0[a.nats_pid]) / HZ / w, 2),
        "nats_rss_mb": round(rss_kb(a.nats_pid) / 1024.0, 1),
    }
    if not a.json:
        r, c = out["agent_rss_mb"], out["agent_cpu_pct"]
        rows = [
            ("agents", f"{n} ({a.devices} devices, {a.devices // max(n, 1)} per agent)"),
            ("window", f"{w:.1f} s at rest"),
            ("agent RSS (mean / min / max)", f"{r['mean']:.1f} / {r['min']:.1f} / {r['max']:.1f} MB"),
            ("agent CPU (mean / min / max)", f"{c['mean']:.3f} / {c['min']:.3f} / {c['max']:.3f} % of a core (utime+stime mean {cpu_ticks:.3f} %)"),
            ("heartbeats", f"{hb_msgs:.1f}/s, {hb_bytes / 1024:.1f} KB/s ({out['heartbeat_bytes']} B each)"),
            ("leases bucket writes", f"{rate['leases'][0]:.1f}/s, shard leases {out['shard_lease_writes_per_s']:.1f}/s, by operation {out['lease_ops']}"),
            ("KV writes (stream sequences)", f"fleets {kv['fleets']:.2f}/s, leases {kv['leases']:.2f}/s, agents {kv['agents']:.2f}/s, peers {kv['peers']:.2f}/s, live {kv['live']:.2f}/s, live2 {kv['live2']:.2f}/s"),
            ("JetStream API requests", f"{out['js_api_per_s']:.2f}/s (/jsz), {rate['api'][0]:.2f}/s on $JS.API.>"),
            ("offers / events", f"{rate['work'][0]:.2f}/s / {rate['evt'][0]:.2f}/s"),
            ("telemetry", f"{rate['telemetry'][0]:.1f} msgs/s, {rate['telemetry'][1] / 1024:.1f} KB/s"),
            ("server in / out (less this probe)", f"{out['server_in_msgs_per_s']:.0f} msgs/s / {out_msgs:.0f} msgs/s, {out_bytes / 1024:.1f} KB/s"),
            ("received by each agent (mean)", f"{out['per_agent_received_msgs_per_s']:.1f} msgs/s, {out['per_agent_received_bytes_per_s'] / 1024:.2f} KB/s"),
            ("sent by each agent (mean)", f"{out['per_agent_sent_msgs_per_s']:.1f} msgs/s, {out['per_agent_sent_bytes_per_s'] / 1024:.2f} KB/s"),
            ("nats-server", f"{out['nats_cpu_pct']:.2f} % of a core, {out['nats_rss_mb']:.1f} MB RSS"),
        ]
        width = max(len(k) for k, _ in rows)
        for k, v in rows:
            print(f"  {k:<{width}}  {v}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
