//! A connected session: after CONNACK, resend what was not acknowledged, birth and
//! subscriptions; then write what the sink queued, read and handle packets (acks, commands,
//! subscriber data) and keep the connection alive, until it is closed or lost.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use pluribus_common::spec::MqttRole;
use tokio::time::Instant;

use super::{mono_us, Conn, End, Shared, State};
use crate::sink::mqtt::codec::{self, Ack, Incoming, PublishParams};
use crate::sink::mqtt::stream::Stream;
use crate::sink::{Inbound, LinkMode};

/// After CONNACK: resend what was not acknowledged, birth, subscriptions.
pub(super) fn start_session(conn: &Conn, sh: &Shared, sock: Option<Arc<tokio::net::TcpStream>>) {
    let cfg = &sh.cfg;
    let vars = conn.vars();
    let mut st = conn.lock();
    st.up = st.link.is_none();
    st.writing = false;
    st.sock = sock;
    let mut resend = BytesMut::new();
    for f in &st.inflight {
        match &f.packet {
            Some(p) => resend.extend_from_slice(&codec::with_dup(p)),
            None => codec::ack(Ack::PubRel, f.pkid, &mut resend),
        }
    }
    st.out = resend;
    if let Some(b) = &cfg.birth {
        let topic = b.topic.render(&vars);
        let p = PublishParams {
            topic: &topic,
            payload: &b.payload,
            qos: b.qos,
            retain: b.retain,
            pkid: 0,
        };
        let _ = st.enqueue(cfg, p, true);
    }
    let mut filters = Vec::new();
    if let Some(c) = &cfg.command {
        filters.push((c.render(&vars), 1));
    }
    if let Some(s) = &cfg.subscribe {
        filters.push((s.render(&vars), cfg.qos));
    }
    if !filters.is_empty() {
        let pkid = st.pkid();
        codec::subscribe(cfg.protocol, pkid, &filters, &mut st.out);
    }
}

/// Runs a connected session until it is closed or lost.
pub(super) async fn session(conn: &Conn, sh: &Shared, s: &mut Stream, rbuf: &mut BytesMut) -> End {
    start_session(conn, sh, s.plain());
    // A subscriber tells commands from data by topic.
    let command_topic = match (sh.cfg.role, &sh.cfg.command) {
        (MqttRole::Subscriber, Some(c)) => Some(c.render(&conn.vars())),
        _ => None,
    };
    let tick = (!sh.cfg.keepalive.is_zero()).then(|| sh.cfg.keepalive / 2);
    let mut ping_at = Instant::now() + tick.unwrap_or(Duration::from_secs(3600));
    let (mut ping_out, mut wrote) = (false, true);
    // Back from a stall: publishing waits for the broker's PINGRESP (it may have dropped
    // the connection meanwhile, and then the device reconnects).
    let mut verifying = false;
    loop {
        // Packets read (the first ones came with CONNACK) are handled before writing, so
        // their acks go out in the same write.
        loop {
            match codec::decode(sh.cfg.protocol, rbuf) {
                Ok(Some(p)) => {
                    if let Err(r) = handle(conn, sh, p, &mut ping_out, command_topic.as_deref()) {
                        return End::Lost(r);
                    }
                }
                Ok(None) => break,
                Err(_) => return End::Lost("protocol"),
            }
        }
        if rbuf.is_empty() && rbuf.capacity() > 0 {
            *rbuf = BytesMut::new();
        }
        if verifying && !ping_out {
            verifying = false;
            let mut st = conn.lock();
            st.up = st.link.is_none();
        }
        let link = conn.lock().link;
        match link {
            None => {}
            Some(LinkMode::Close) => return End::Cut,
            Some(_) => {
                if let Some(end) = stall(conn).await {
                    return end;
                }
                codec::pingreq(&mut conn.lock().out);
                (ping_out, verifying) = (true, true);
                ping_at = Instant::now() + tick.unwrap_or(Duration::from_secs(3600));
                continue;
            }
        }
        let (out, closing) = {
            let mut st = conn.lock();
            st.writing = !st.out.is_empty();
            (std::mem::take(&mut st.out), st.closing)
        };
        if !out.is_empty() {
            wrote = true;
            let r = s.write_all(&out).await;
            conn.lock().writing = false;
            if r.is_err() {
                return End::Lost("write");
            }
            // More may have been queued meanwhile: write it before waiting.
            continue;
        }
        drop(out);
        if closing {
            s.shutdown().await;
            return End::Closed;
        }
        tokio::select! {
            _ = conn.wake.notified() => {}
            r = s.read_some(rbuf) => match r {
                Ok(0) => return End::Lost("closed by the broker"),
                Ok(_) => {}
                Err(_) => return End::Lost("read"),
            },
            _ = tokio::time::sleep_until(ping_at), if tick.is_some() => {
                if ping_out {
                    return End::Lost("keepalive: no PINGRESP");
                }
                if !wrote {
                    codec::pingreq(&mut conn.lock().out);
                    ping_out = true;
                }
                wrote = false;
                ping_at += tick.unwrap_or_default();
            }
        }
    }
}

/// Cut off with the connection kept open but silent: nothing is read, written or pinged
/// (the broker expires it after 1.5 × keepalive). Returns when the device is let back
/// (`None`), or how the session ends if it is closed or cut off for good meanwhile.
async fn stall(conn: &Conn) -> Option<End> {
    // The disconnect is counted by the network layer, per cohort, when it cut the link.
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

/// Handles one packet from the broker.
fn handle(
    conn: &Conn,
    sh: &Shared,
    p: Incoming,
    ping_out: &mut bool,
    command_topic: Option<&str>,
) -> Result<(), &'static str> {
    let acked = |st: &mut State, pkid: u16, stage_rel: bool| {
        if let Some(at) = st
            .inflight
            .iter()
            .position(|f| f.pkid == pkid && f.packet.is_none() == stage_rel)
        {
            let f = st.inflight.swap_remove(at);
            sh.metrics.ack_latency(mono_us().saturating_sub(f.sent_us));
        }
    };
    match p {
        Incoming::PubAck(id) => acked(&mut conn.lock(), id, false),
        Incoming::PubComp(id) => acked(&mut conn.lock(), id, true),
        Incoming::PubRec(id) => {
            let mut st = conn.lock();
            if let Some(f) = st.inflight.iter_mut().find(|f| f.pkid == id) {
                f.packet = None;
            }
            codec::ack(Ack::PubRel, id, &mut st.out);
        }
        Incoming::PubRel(id) => codec::ack(Ack::PubComp, id, &mut conn.lock().out),
        Incoming::Publish {
            topic,
            payload,
            qos,
            pkid,
        } => {
            match qos {
                1 => codec::ack(Ack::PubAck, pkid, &mut conn.lock().out),
                2 => codec::ack(Ack::PubRec, pkid, &mut conn.lock().out),
                _ => {}
            }
            let is_command = match sh.cfg.role {
                MqttRole::Publisher => true,
                MqttRole::Subscriber => command_topic.is_some_and(|c| c.as_bytes() == &topic[..]),
            };
            if is_command {
                let sent = sh.inbound.try_send(Inbound {
                    index: conn.index,
                    payload,
                });
                if let Err(tokio::sync::mpsc::error::TrySendError::Full(_)) = sent {
                    sh.metrics
                        .commands_refused
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            } else {
                sh.metrics.received(latency_us(&payload));
            }
        }
        Incoming::SubAck(ok) => {
            if !ok {
                tracing::warn!(device = %conn.device_id, "the broker refused a subscription (commands or --subscribe filter)");
            }
        }
        Incoming::PingResp => *ping_out = false,
        Incoming::Disconnect => return Err("disconnected by the broker"),
        Incoming::ConnAck(_) | Incoming::Other => {}
    }
    Ok(())
}

/// Now minus the payload's `ts` (Unix ms), in µs; `None` if it has none.
fn latency_us(payload: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Ts {
        ts: Option<u64>,
    }
    let ts = serde_json::from_slice::<Ts>(payload).ok()?.ts?;
    // The payload's ts is on the agent's (server-corrected) clock.
    let now_us = pluribus_common::time::now_us();
    Some(now_us.saturating_sub(ts.saturating_mul(1000)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_comes_from_ts() {
        let now = pluribus_common::time::now_ms();
        let l = latency_us(format!(r#"{{"seq":1,"ts":{}}}"#, now - 5).as_bytes()).expect("ts");
        assert!((5_000..1_000_000).contains(&l), "{l}");
        assert_eq!(latency_us(b"{}"), None);
        assert_eq!(latency_us(b"not json"), None);
    }
}
