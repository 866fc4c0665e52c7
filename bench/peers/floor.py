#!/usr/bin/env python3
"""The kernel's floor for one TCP connection per device (issue 15): N MQTT 3.1.1 connections
to a broker, each sending one ~170-byte QoS 0 PUBLISH every 100 ms with its own send(), in
bursts every GRID ms. Prints the user and system CPU of this process per message: the
system part is what the kernel charges any generator that writes one message per device
per send() (on loopback it includes the broker's receive path).

  python3 bench/peers/floor.py BROKER_PORT N GRID_MS SECONDS    # e.g. 1883 1000 5 15
"""
import os, socket, sys, time
port, n, grid, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000, float(sys.argv[4])
def connect_pkt(cid):
    cid = cid.encode()
    var = b"\x00\x04MQTT\x04\x02\x00\x3c"
    pl = len(cid).to_bytes(2, "big") + cid
    body = var + pl
    return b"\x10" + bytes([len(body)]) + body
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(connect_pkt("floor-%d" % i))
    s.recv(4)
    socks.append(s)
topic = b"peers/floor"
payload = b"x" * 170
def pub(i):
    t = topic + b"/%d" % i
    body = len(t).to_bytes(2, "big") + t + payload
    l = len(body)
    return b"\x30" + bytes([(l & 0x7f) | 0x80, l >> 7]) + body
pkts = [pub(i) for i in range(n)]
phase = [(i * 100.0 / n) / 1000 for i in range(n)]  # spread over the 100 ms interval
t0 = time.time(); r0 = os.times()
sent = 0
nxt = [t0 + p for p in phase]
while True:
    now = time.time()
    if now - t0 >= secs: break
    # Every device due by now: its own socket, one send() each.
    for i in range(n):
        if nxt[i] <= now:
            socks[i].send(pkts[i]); sent += 1
            nxt[i] += 0.1
    time.sleep(max(0, grid - (time.time() - now)))
r1 = os.times()
u, s = r1.user - r0.user, r1.system - r0.system
print("floor: %d msgs, user %.2f us/msg, system %.2f us/msg" % (sent, u * 1e6 / sent, s * 1e6 / sent))
