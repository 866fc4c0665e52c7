#!/usr/bin/env python3
"""Reads Pluribus agent heartbeats straight off NATS (plain protocol, no client library).

  hb.py PORT NS wait FLEET N TIMEOUT_S   # waits until the fleet has N connected devices;
                                         # prints the Unix ms it happened and the failures
  hb.py PORT NS rate FLEET SECONDS       # messages/s the agents sent for FLEET, from the
                                         # first and last heartbeat of each agent
"""
import json
import socket
import sys
import time


def heartbeats(port, ns, deadline):
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(0.5)
    s.sendall(b'CONNECT {"verbose":false}\r\n')
    s.sendall(("SUB %s.pluribus.v1.hb.* 1\r\n" % ns).encode())
    buf = b""
    while time.time() < deadline:
        try:
            chunk = s.recv(1 << 20)
        except socket.timeout:
            continue
        if not chunk:
            return
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
                yield json.loads(payload)
            else:
                buf = buf[nl + 2 :]
                if line == b"PING":
                    s.sendall(b"PONG\r\n")


def main():
    port, ns, cmd, fleet = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    if cmd == "wait":
        n, timeout = int(sys.argv[5]), float(sys.argv[6])
        latest = {}
        for hb in heartbeats(port, ns, time.time() + timeout):
            latest[hb["id"]] = hb["fleets"].get(fleet, {})
            connected = sum(c.get("connected", 0) for c in latest.values())
            if connected >= n:
                fails = {}
                for c in latest.values():
                    for k, v in c.get("connect_failures", {}).items():
                        fails[k] = fails.get(k, 0) + v
                print(hb["ts_ms"], json.dumps(fails, separators=(",", ":")))
                return 0
        print("timed out: %d of %d connected" % (connected if latest else 0, n), file=sys.stderr)
        return 1
    if cmd == "rate":
        secs = float(sys.argv[5])
        first, last = {}, {}
        for hb in heartbeats(port, ns, time.time() + secs):
            c = hb["fleets"].get(fleet)
            if c is None:
                continue
            first.setdefault(hb["id"], (hb["ts_ms"], c))
            last[hb["id"]] = (hb["ts_ms"], c)
        rate = failed = 0.0
        for k, (t0, c0) in first.items():
            t1, c1 = last[k]
            if t1 > t0:
                rate += (c1["messages"] - c0["messages"]) * 1000.0 / (t1 - t0)
                failed += (c1.get("publish_failed", 0) - c0.get("publish_failed", 0)) * 1000.0 / (t1 - t0)
        print("%d %d" % (rate, failed))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
