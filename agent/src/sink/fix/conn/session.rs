//! A logged-on session: write what the sink queued, read and answer the session layer
//! (Heartbeat, TestRequest, ResendRequest with SequenceReset-GapFill, SequenceReset),
//! check MsgSeqNum, count Rejects and match ExecutionReports to their orders, until the
//! session is closed (Logout both ways) or lost.

use std::time::Duration;

use bytes::BytesMut;
use tokio::time::Instant;

use super::{admin, clean, clordid_key, mono_us, Conn, End, Shared, State};
use crate::sink::fix::codec::{self, Frame};
use crate::sink::mqtt::stream::Stream;
use crate::sink::LinkMode;

/// How long a closing device waits for the acceptor's Logout.
const LOGOUT_WAIT: Duration = Duration::from_secs(2);

/// Runs a logged-on session until it is closed or lost.
pub(super) async fn session(conn: &Conn, sh: &Shared, s: &mut Stream, rbuf: &mut BytesMut) -> End {
    let hb = sh.cfg.heartbeat;
    let mut tick_at = Instant::now() + hb;
    let (mut wrote, mut last_rx, mut test_out) = (false, Instant::now(), false);
    let mut logout_by: Option<Instant> = None;
    // Back from a stall: sending waits until the acceptor answers (it may have dropped the
    // session meanwhile, and then the session logs on again).
    let mut verifying = false;
    loop {
        loop {
            match codec::decode(rbuf) {
                Ok(Some(f)) => {
                    last_rx = Instant::now();
                    test_out = false;
                    if std::mem::take(&mut verifying) {
                        let mut st = conn.lock();
                        st.up = st.link.is_none();
                    }
                    match handle(conn, sh, &f) {
                        Ok(true) => {}
                        Ok(false) => {
                            s.shutdown().await;
                            return End::Closed;
                        }
                        Err(reason) => {
                            // Say goodbye if we can (the acceptor's Logout was answered
                            // in handle).
                            let out = std::mem::take(&mut conn.lock().out);
                            let _ = s.write_all(&out).await;
                            return End::Lost(reason);
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => return End::Lost(format!("protocol: {e}")),
            }
        }
        if rbuf.is_empty() && rbuf.capacity() > 0 {
            *rbuf = BytesMut::new();
        }
        let link = conn.lock().link;
        match link {
            None => {}
            Some(LinkMode::Close) => return End::Cut,
            Some(_) => {
                if let Some(end) = stall(conn).await {
                    return end;
                }
                // Back: a TestRequest; the answer lets the devices send again, and a
                // session the acceptor dropped meanwhile reads as closed.
                admin(&mut conn.lock(), &sh.cfg, &conn.sender, "1", |w| {
                    w.str(112, "PLURIBUS");
                });
                (test_out, verifying, last_rx) = (true, true, Instant::now());
                tick_at = Instant::now() + hb;
                continue;
            }
        }
        let (out, closing) = {
            let mut st = conn.lock();
            (std::mem::take(&mut st.out), st.closing)
        };
        if !out.is_empty() {
            wrote = true;
            if s.write_all(&out).await.is_err() {
                return End::Lost("write".into());
            }
            continue;
        }
        drop(out);
        if closing && logout_by.is_none() {
            logout_by = Some(Instant::now() + LOGOUT_WAIT);
        }
        tokio::select! {
            _ = conn.wake.notified() => {}
            r = s.read_some(rbuf) => match r {
                Ok(0) if closing => return End::Closed,
                Ok(0) => return End::Lost("closed by the acceptor".into()),
                Ok(_) => {}
                Err(_) if closing => return End::Closed,
                Err(_) => return End::Lost("read".into()),
            },
            _ = tokio::time::sleep_until(logout_by.unwrap_or(tick_at)), if logout_by.is_some() => {
                s.shutdown().await;
                return End::Closed;
            }
            _ = tokio::time::sleep_until(tick_at) => {
                let quiet = last_rx.elapsed();
                if test_out && quiet > hb * 2 + hb / 5 {
                    return End::Lost("heartbeat: no answer to TestRequest".into());
                }
                let mut st = conn.lock();
                if quiet > hb + hb / 5 && !test_out {
                    admin(&mut st, &sh.cfg, &conn.sender, "1", |w| {
                        w.str(112, "PLURIBUS");
                    });
                    test_out = true;
                } else if !wrote {
                    admin(&mut st, &sh.cfg, &conn.sender, "0", |_| {});
                }
                wrote = false;
                tick_at += hb;
            }
        }
    }
}

/// Cut off with the socket kept open but silent: nothing read, written or sent as
/// Heartbeat. Returns when the session is let back (`None`), or how it ends if it is
/// closed or cut off for good meanwhile.
async fn stall(conn: &Conn) -> Option<End> {
    loop {
        conn.wake.notified().await;
        let st = conn.lock();
        if st.closing {
            return Some(End::Closed);
        }
        match st.link {
            None => return None,
            Some(LinkMode::Close) => return Some(End::Cut),
            Some(_) => {}
        }
    }
}

/// Handles one message from the acceptor. Ok(false): the acceptor answered our Logout.
fn handle(conn: &Conn, sh: &Shared, f: &Frame) -> Result<bool, String> {
    let cfg = &sh.cfg;
    let mut st = conn.lock();
    let t = f.msg_type();
    let seq = f.num(34).unwrap_or(0);
    if t == b"4" {
        // SequenceReset (gap fill or reset): the next number is NewSeqNo.
        if let Some(new) = f.num(36) {
            if new > st.in_seq {
                st.in_seq = new;
            }
        }
        return Ok(true);
    }
    if seq > st.in_seq {
        // A gap: ask for what is missing (the acceptor gap-fills or resends with
        // PossDupFlag, which we then skip) and go on from here.
        sh.metrics.response("seq_gap");
        let from = st.in_seq;
        admin(&mut st, cfg, &conn.sender, "2", |w| {
            w.num(7, from).num(16, 0);
        });
        st.in_seq = seq + 1;
    } else if seq < st.in_seq {
        if f.get(43) == Some(b"Y") {
            return Ok(true);
        }
        let text = format!(
            "MsgSeqNum too low, expecting {} but received {seq}",
            st.in_seq
        );
        admin(&mut st, cfg, &conn.sender, "5", |w| {
            w.str(58, &text);
        });
        return Err("MsgSeqNum too low".into());
    } else {
        st.in_seq += 1;
    }
    match t {
        b"1" => {
            let id = f.text(112).map(|t| clean(&t)).unwrap_or_default();
            admin(&mut st, cfg, &conn.sender, "0", |w| {
                w.str(112, &id);
            });
        }
        b"2" => gap_fill(&mut st, conn, sh, f),
        b"3" => sh.metrics.response(&reason_class("reject", f.num(373))),
        b"j" => sh
            .metrics
            .response(&reason_class("business_reject", f.num(380))),
        b"8" => {
            sh.metrics.response("exec_report");
            acked(&mut st, sh, f);
        }
        b"5" => {
            if st.closing {
                return Ok(false);
            }
            admin(&mut st, cfg, &conn.sender, "5", |_| {});
            let text = f.text(58).map(|t| clean(&t)).unwrap_or_default();
            return Err(format!("logout: {text}"));
        }
        _ => {}
    }
    Ok(true)
}

/// `reject:5` for a Reject with SessionRejectReason 5 (`reject` without one); codes are
/// small numbers in FIX 4.4, and a larger one is not kept (so the classes stay few).
fn reason_class(kind: &str, code: Option<u64>) -> String {
    match code {
        Some(c) if c < 100 => format!("{kind}:{c}"),
        _ => kind.to_string(),
    }
}

/// ResendRequest: a device does not resend old orders; it fills the whole range with one
/// SequenceReset-GapFill (MsgSeqNum = BeginSeqNo, NewSeqNo = our next number).
fn gap_fill(st: &mut State, conn: &Conn, sh: &Shared, f: &Frame) {
    let begin = f.num(7).unwrap_or(1).max(1);
    let next = st.out_seq;
    if begin >= next {
        return;
    }
    let time = codec::now_utc();
    let h = codec::Header {
        begin: sh.cfg.begin,
        msg_type: "4",
        seq: begin,
        sender: &conn.sender,
        target: &sh.cfg.target,
        time: &time,
    };
    let mut w = codec::Writer::new(&mut st.out, &h);
    w.str(43, "Y").str(122, &time).str(123, "Y").num(36, next);
    w.finish();
}

/// An ExecutionReport: the first one for a ClOrdID `<device_id>-<n>` the session sent (for
/// any of its devices) gives the ack latency.
fn acked(st: &mut State, sh: &Shared, f: &Frame) {
    let Some(id) = f.get(11) else { return };
    let key = clordid_key(id);
    if let Some(at) = st.awaiting.iter().position(|(k, _)| *k == key) {
        let (_, sent) = st.awaiting.remove(at);
        sh.metrics.ack_latency(mono_us().saturating_sub(sent));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::fix::codec::{Header, Writer};
    use crate::sink::mqtt::pacer::Pacer;
    use std::sync::Arc;

    async fn shared(metrics: &crate::metrics::Metrics) -> Arc<Shared> {
        let spec: pluribus_common::spec::SinkSpec = serde_json::from_value(serde_json::json!({
            "type": "fix", "host": "127.0.0.1:1", "target_comp_id": "GW"
        }))
        .unwrap();
        let secrets =
            crate::secrets::Secrets::new(crate::secrets::SecretPolicy::default()).unwrap();
        let (_, cfg) = crate::sink::fix::config::Resolved::from_spec(&spec, &secrets).unwrap();
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect("nats://127.0.0.1:1")
            .await
            .unwrap();
        let ns = pluribus_common::subjects::Namespace::new("").unwrap();
        Arc::new(Shared::new(
            cfg,
            metrics.fleet("f"),
            Arc::new(Pacer::new(1, None)),
            crate::events::Events::new(client, ns, "a"),
        ))
    }

    /// A message from the acceptor, `fields` after the header.
    fn from_gw(msg_type: &str, seq: u64, fields: &[(u32, &str)]) -> Frame {
        let mut out = BytesMut::new();
        let h = Header {
            begin: "FIX.4.4",
            msg_type,
            seq,
            sender: "GW",
            target: "d",
            time: "20261207-01:02:03.456",
        };
        let mut w = Writer::new(&mut out, &h);
        for (t, v) in fields {
            w.str(*t, v);
        }
        w.finish();
        codec::decode(&mut out).unwrap().unwrap()
    }

    /// The messages the device queued, as (MsgType, MsgSeqNum).
    fn queued(conn: &Conn) -> Vec<(String, u64, Frame)> {
        let mut out = std::mem::take(&mut conn.lock().out);
        let mut v = Vec::new();
        while let Some(f) = codec::decode(&mut out).unwrap() {
            v.push((
                String::from_utf8_lossy(f.msg_type()).into_owned(),
                f.num(34).unwrap(),
                f,
            ));
        }
        v
    }

    #[tokio::test]
    async fn the_session_layer_answers_and_counts() {
        let metrics = crate::metrics::Metrics::default();
        let sh = shared(&metrics).await;
        let conn = Conn::new(0, "d", Arc::from("f"), &sh.cfg);
        {
            let mut st = conn.lock();
            st.up = true;
            st.in_seq = 2;
            st.out_seq = 10;
        }
        // TestRequest: a Heartbeat with its TestReqID.
        assert_eq!(
            handle(&conn, &sh, &from_gw("1", 2, &[(112, "T1")])),
            Ok(true)
        );
        let q = queued(&conn);
        assert_eq!((q[0].0.as_str(), q[0].1), ("0", 10));
        assert_eq!(q[0].2.text(112).as_deref(), Some("T1"));
        // ResendRequest from 4: one GapFill numbered 4 up to our next number.
        assert_eq!(
            handle(&conn, &sh, &from_gw("2", 3, &[(7, "4"), (16, "0")])),
            Ok(true)
        );
        let q = queued(&conn);
        assert_eq!((q[0].0.as_str(), q[0].1), ("4", 4));
        assert_eq!(q[0].2.num(36), Some(11));
        assert_eq!(q[0].2.text(123).as_deref(), Some("Y"));
        // A gap (5 when 4 is due): counted and asked for.
        assert_eq!(handle(&conn, &sh, &from_gw("0", 5, &[])), Ok(true));
        let q = queued(&conn);
        assert_eq!((q[0].0.as_str(), q[0].2.num(7)), ("2", Some(4)));
        // A Reject and a duplicate are counted and skipped; a too-low number without
        // PossDupFlag ends the session with a Logout.
        assert_eq!(
            handle(&conn, &sh, &from_gw("3", 6, &[(45, "1"), (373, "5")])),
            Ok(true)
        );
        assert_eq!(handle(&conn, &sh, &from_gw("0", 3, &[(43, "Y")])), Ok(true));
        assert!(handle(&conn, &sh, &from_gw("0", 3, &[])).is_err());
        assert_eq!(queued(&conn)[0].0, "5");
        let r = metrics.counters()["f"].responses.clone();
        assert_eq!((r.get("seq_gap"), r.get("reject:5")), (Some(&1), Some(&1)));
    }
}
