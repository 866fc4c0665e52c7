"""A FIX 4.4 acceptor on QuickFIX (the quickfix2 binding), for Pluribus's tests and benches.

It answers NewOrderSingle (35=D) and OrderCancelRequest (35=F) with an ExecutionReport and
writes one JSON line per event to --log: logons, logouts, every message it receives (with
its MsgSeqNum) and every session-level message it sends (a ResendRequest or a Reject there
means the client sent a gap or a bad message). QuickFIX itself validates each message
against the FIX 4.4 data dictionary, BodyLength and CheckSum.

    python3 acceptor.py --port 9878 --comp-id GATEWAY --clients dev-1,dev-2 --log events.jsonl

--clients '*' accepts any SenderCompID (an acceptor template session).
"""

import argparse
import json
import os
import sys
import tempfile
import threading

import quickfix as fix


class Acceptor(fix.Application):
    def __init__(self, log, password):
        super().__init__()
        self.log = log
        self.lock = threading.Lock()
        self.password = password
        self.next_id = 0

    def write(self, **ev):
        with self.lock:
            self.log.write(json.dumps(ev) + "\n")
            self.log.flush()

    def onCreate(self, session_id):
        pass

    def onLogon(self, session_id):
        self.write(ev="logon", client=session_id.getTargetCompID().getValue())

    def onLogout(self, session_id):
        self.write(ev="logout", client=session_id.getTargetCompID().getValue())

    def toAdmin(self, message, session_id):
        t = message.getHeader().getField(35)
        text = message.getField(58) if message.isSetField(58) else ""
        self.write(ev="out", client=session_id.getTargetCompID().getValue(), type=t, text=text)

    def fromAdmin(self, message, session_id):
        self.received(message, session_id)
        if message.getHeader().getField(35) == "A" and self.password is not None:
            given = message.getField(554) if message.isSetField(554) else ""
            if given != self.password:
                raise fix.RejectLogon("wrong password")

    def toApp(self, message, session_id):
        pass

    def fromApp(self, message, session_id):
        self.received(message, session_id)
        t = message.getHeader().getField(35)
        if t not in ("D", "F"):
            return
        self.next_id += 1
        r = fix.Message()
        r.getHeader().setField(fix.MsgType("8"))
        r.setField(fix.OrderID(str(self.next_id)))
        r.setField(fix.ExecID(str(self.next_id)))
        r.setField(fix.ClOrdID(message.getField(11)))
        if t == "D":
            r.setField(fix.ExecType("0"))
            r.setField(fix.OrdStatus("0"))
            qty = message.getField(38) if message.isSetField(38) else "0"
            r.setField(fix.StringField(151, qty))
        else:
            r.setField(fix.OrigClOrdID(message.getField(41)))
            r.setField(fix.ExecType("4"))
            r.setField(fix.OrdStatus("4"))
            r.setField(fix.StringField(151, "0"))
        r.setField(fix.Symbol(message.getField(55)))
        r.setField(fix.Side(message.getField(54)))
        r.setField(fix.CumQty(0))
        r.setField(fix.AvgPx(0))
        fix.Session.sendToTarget(r, session_id)

    def received(self, message, session_id):
        h = message.getHeader()
        ev = {
            "ev": "in",
            "client": session_id.getTargetCompID().getValue(),
            "type": h.getField(35),
            "seq": int(h.getField(34)),
            "target": h.getField(56),
        }
        if message.isSetField(11):
            ev["clordid"] = message.getField(11)
        if h.isSetField(50):
            ev["sub"] = h.getField(50)
        if h.isSetField(43):
            ev["possdup"] = h.getField(43)
        self.write(**ev)


def find_dictionary():
    """FIX44.xml as pip installed it with quickfix2 (under the prefix's share/quickfix)."""
    import site
    prefixes = [sys.prefix, sys.base_prefix, "/usr/local", "/usr", site.getuserbase()]
    prefixes.append(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(fix.__file__)))))
    for p in prefixes:
        path = os.path.join(p, "share", "quickfix", "FIX44.xml")
        if os.path.exists(path):
            return path
    sys.exit("FIX44.xml not found under " + ", ".join(prefixes) + ": reinstall quickfix2")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--comp-id", default="GATEWAY")
    p.add_argument("--clients", default="*")
    p.add_argument("--log", required=True)
    p.add_argument("--password")
    a = p.parse_args()

    dictionary = find_dictionary()
    work = tempfile.mkdtemp(prefix="pluribus-fix-")
    lines = [
        "[DEFAULT]",
        "ConnectionType=acceptor",
        f"SocketAcceptPort={a.port}",
        "SocketReuseAddress=Y",
        "StartTime=00:00:00",
        "EndTime=00:00:00",
        "UseDataDictionary=Y",
        f"DataDictionary={dictionary}",
        "ValidateUserDefinedFields=N",
        f"FileLogPath={work}/log",
        "",
    ]
    clients = a.clients.split(",")
    for c in clients:
        lines += ["[SESSION]", "BeginString=FIX.4.4", f"SenderCompID={a.comp_id}", f"TargetCompID={c}"]
        if c == "*":
            lines.append("AcceptorTemplate=Y")
        lines.append("")
    cfg = os.path.join(work, "acceptor.cfg")
    with open(cfg, "w") as f:
        f.write("\n".join(lines))

    # Each session's file log holds two files open, and every client a socket.
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    log = open(a.log, "a")
    app = Acceptor(log, a.password)
    settings = fix.SessionSettings(cfg)
    if len(clients) <= 100:
        acceptor = fix.SocketAcceptor(app, fix.MemoryStoreFactory(), settings, fix.FileLogFactory(settings))
    else:
        # Many sessions (benches): QuickFIX's own file logs would cost two files each.
        acceptor = fix.SocketAcceptor(app, fix.MemoryStoreFactory(), settings)
    acceptor.start()
    app.write(ev="ready", port=a.port)
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
