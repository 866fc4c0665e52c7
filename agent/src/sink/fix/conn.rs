//! One FIX session: a small shared state ([`Conn`]) that the sink writes business messages
//! into, and one task ([`run`]) that logs on (paced), writes, reads, answers the session
//! layer and logs on again with backoff.
//!
//! A session carries one device, or several (`devices_per_session`): then its
//! SenderCompID is the session's, each message names its device in SenderSubID (50), and
//! ExecutionReports find their order by ClOrdID (`<device_id>-<n>`) among the session's.
//!
//! The sink never waits for the network: `send` encodes into the session's output buffer
//! and wakes the task; a device whose session is not logged on fails the send at once.
//! Idle, a session is this struct, a parked task and a socket: no buffers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::BytesMut;
use pluribus_common::spec::TemplateVars;
use tokio::sync::Notify;

use super::codec::{self, Header, Writer};
use super::config::Resolved;
use super::order::{self, Order, Telemetry};
use crate::events::Events;
use crate::metrics::FleetMetrics;
use crate::sink::mqtt::pacer::{Jitter, Pacer};
use crate::sink::LinkMode;

mod logon;
mod session;

/// Most bytes waiting to be written per device of a session; past it a send fails.
const MAX_PENDING: usize = 64 * 1024;
/// Most orders awaiting their first ExecutionReport per device of a session; the oldest
/// is forgotten.
const MAX_AWAITING: usize = 64;
/// A session's limits grow with its devices up to this many.
const MAX_SCALE: usize = 64;

/// FNV-1a over `bytes`, from `h`.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The key of ClOrdID `<device_id>-<n>` among a session's awaited orders (no allocation).
fn order_key(device_id: &str, n: u64) -> u64 {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut v = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let h = fnv(0xcbf2_9ce4_8422_2325, device_id.as_bytes());
    fnv(fnv(h, b"-"), &digits[at..])
}

/// The key of a ClOrdID as the acceptor echoes it.
fn clordid_key(id: &[u8]) -> u64 {
    fnv(0xcbf2_9ce4_8422_2325, id)
}

/// A device's own numbers, kept by the sink (a session may carry several devices).
#[derive(Debug, Default)]
pub struct Numbers {
    /// The device's own count, for telemetry without `seq`.
    count: u64,
    /// The number of the last order (for a cancel's OrigClOrdID).
    last: Option<u64>,
}

/// Microseconds on a monotonic clock (for ack latency).
fn mono_us() -> u64 {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    BASE.get_or_init(std::time::Instant::now)
        .elapsed()
        .as_micros() as u64
}

/// What the devices of one sink share.
#[derive(Debug)]
pub struct Shared {
    /// Resolved options.
    pub cfg: Resolved,
    /// The fleet's metrics.
    pub metrics: Arc<FleetMetrics>,
    /// The agent-wide logon pacer.
    pub pacer: Arc<Pacer>,
    /// The agent's events (`device_failed`).
    pub events: Events,
    warned: AtomicBool,
}

impl Shared {
    /// Shared state of one sink.
    pub fn new(
        cfg: Resolved,
        metrics: Arc<FleetMetrics>,
        pacer: Arc<Pacer>,
        events: Events,
    ) -> Self {
        Self {
            cfg,
            metrics,
            pacer,
            events,
            warned: AtomicBool::new(false),
        }
    }
}

#[derive(Default)]
struct State {
    up: bool,
    closing: bool,
    out: BytesMut,
    /// MsgSeqNum of our next message.
    out_seq: u64,
    /// MsgSeqNum expected next from the acceptor.
    in_seq: u64,
    /// Orders sent and not yet acknowledged: (key of the ClOrdID, sent at µs).
    awaiting: Vec<(u64, u64)>,
    /// Devices open on the session.
    members: usize,
    /// Devices of the session the network layer has cut off.
    cut: usize,
    /// The session is cut off (every device of it is): closed or stalled.
    link: Option<LinkMode>,
}

impl State {
    /// The session's limits scale with its devices (up to [`MAX_SCALE`]).
    fn scale(&self) -> usize {
        self.members.clamp(1, MAX_SCALE)
    }
}

/// A session's state, shared by the sink and the session task.
pub struct Conn {
    /// The session's number: the device's index in the fleet, or `index / N` when `N`
    /// devices share a session.
    pub index: u64,
    /// The device id (with shared sessions, the first device that opened it), for events.
    pub device_id: Box<str>,
    /// Fleet name.
    pub fleet: Arc<str>,
    /// SenderCompID.
    pub sender: Box<str>,
    /// Several devices share the session: messages carry SenderSubID.
    pub shared: bool,
    st: Mutex<State>,
    wake: Notify,
}

impl Conn {
    /// A session that is not logged on yet: device `index`'s own, or session `index` of
    /// devices shared (`shared`), whose SenderCompID is rendered without a device id.
    pub fn new(index: u64, device_id: &str, fleet: Arc<str>, cfg: &Resolved) -> Self {
        let shared = cfg.per_session > 1;
        let sender = cfg.sender.render(&TemplateVars {
            fleet: &fleet,
            device_id: (!shared).then_some(device_id),
            index,
        });
        Self {
            index,
            device_id: device_id.into(),
            fleet,
            sender: sender.into(),
            shared,
            st: Mutex::new(State {
                out_seq: 1,
                in_seq: 1,
                ..State::default()
            }),
            wake: Notify::new(),
        }
    }

    /// A device joins the session.
    pub fn join(&self) {
        self.lock().members += 1;
    }

    /// A device leaves the session (`cut`: while cut off); returns how many remain.
    pub fn leave(&self, cut: bool) -> usize {
        let mut st = self.lock();
        st.members = st.members.saturating_sub(1);
        if cut {
            st.cut = st.cut.saturating_sub(1);
        }
        st.members
    }

    /// The network layer cut one of the session's devices off (`Some`, `was_cut`: it was
    /// already) or let it back (`None`). The session is cut off while every device of it
    /// is: its socket closed without Logout (`close`), or kept open and silent (`stall`:
    /// no Heartbeat, so the acceptor's TestRequest goes unanswered and it drops the
    /// session). Returns true if a logged-on session was cut.
    pub fn set_link(&self, down: Option<LinkMode>, was_cut: bool) -> bool {
        let mut st = self.lock();
        match (down, was_cut) {
            (Some(_), false) => st.cut += 1,
            (None, true) => st.cut = st.cut.saturating_sub(1),
            _ => {}
        }
        let link = if st.cut >= st.members.max(1) {
            down.or(st.link)
        } else {
            None
        };
        if link == st.link {
            return false;
        }
        let cut = link.is_some() && st.up && st.link.is_none();
        st.link = link;
        if link.is_some() {
            st.up = false;
        }
        drop(st);
        self.wake.notify_one();
        cut
    }

    /// Logged on, and not cut off.
    pub fn ready(&self) -> bool {
        let st = self.lock();
        st.up && st.link.is_none()
    }

    fn link(&self) -> Option<LinkMode> {
        self.lock().link
    }

    /// Waits until the session is closed.
    async fn closed(&self) {
        while !self.closing() {
            self.wake.notified().await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends one telemetry message of `device_id` as a business message; fails at once if
    /// the session is not logged on.
    pub fn send(
        &self,
        cfg: &Resolved,
        device_id: &str,
        nums: &mut Numbers,
        payload: &[u8],
        time: &str,
    ) -> Result<(), &'static str> {
        let t = Telemetry::of(payload);
        {
            let mut st = self.lock();
            if !st.up || st.closing {
                return Err("not logged on");
            }
            if st.out.len() > MAX_PENDING * st.scale() {
                return Err("backlog: the acceptor does not keep up");
            }
            nums.count += 1;
            let n = t.seq.unwrap_or(nums.count);
            let msg_type = match cfg.message {
                pluribus_common::spec::FixMessage::NewOrderSingle => "D",
                pluribus_common::spec::FixMessage::OrderCancelRequest => "F",
                pluribus_common::spec::FixMessage::MarketDataIncrementalRefresh => "X",
            };
            let seq = st.out_seq;
            st.out_seq += 1;
            let previous = nums.last.replace(n);
            let h = Header {
                begin: cfg.begin,
                msg_type,
                seq,
                sender: &self.sender,
                target: &cfg.target,
                time,
            };
            let o = Order {
                device_id,
                n,
                previous,
                symbols: &cfg.symbols,
                time,
            };
            let mut w = Writer::new(&mut st.out, &h);
            if self.shared {
                // SenderSubID, a header field: it goes before the body.
                w.str(50, device_id);
            }
            order::body(&mut w, cfg.message, &t, &o);
            w.finish();
            if msg_type != "X" {
                if st.awaiting.len() >= MAX_AWAITING * st.scale() {
                    st.awaiting.remove(0);
                }
                st.awaiting.push((order_key(device_id, n), mono_us()));
            }
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Starts a clean stop of the session (its last device stopped): Logout. Returns false
    /// if it was not logged on (the caller just ends the task).
    pub fn close(&self, cfg: &Resolved) -> bool {
        let mut st = self.lock();
        st.closing = true;
        if !st.up {
            return false;
        }
        admin(&mut st, cfg, &self.sender, "5", |_| {});
        drop(st);
        self.wake.notify_one();
        true
    }

    /// For events of a shared session (named after its first device): which session.
    fn whose(&self) -> String {
        if self.shared {
            format!(" (session {}, shared by its devices)", self.sender)
        } else {
            String::new()
        }
    }

    fn closing(&self) -> bool {
        self.lock().closing
    }
}

/// Queues a session-level message of `msg_type` with the next MsgSeqNum.
fn admin(
    st: &mut State,
    cfg: &Resolved,
    sender: &str,
    msg_type: &str,
    body: impl FnOnce(&mut Writer<'_>),
) {
    let seq = st.out_seq;
    st.out_seq += 1;
    let time = codec::now_utc();
    let h = Header {
        begin: cfg.begin,
        msg_type,
        seq,
        sender,
        target: &cfg.target,
        time: &time,
    };
    let mut w = Writer::new(&mut st.out, &h);
    body(&mut w);
    w.finish();
}

/// An up/down gauge held while a guard lives (so an aborted task leaves it right).
struct Gauge<'a>(&'a AtomicU64);

impl<'a> Gauge<'a> {
    fn up(g: &'a AtomicU64) -> Self {
        g.fetch_add(1, Relaxed);
        Self(g)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// How a session ended.
enum End {
    /// close_device: the task ends.
    Closed,
    /// The network layer cut the session off: the socket was dropped (no Logout).
    Cut,
    /// The session was lost (reason).
    Lost(String),
}

/// Text from the acceptor made safe to count and show: printable, at most 80 characters.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(80)
        .collect()
}

/// The session task of one device: log on, run the session, log on again with backoff,
/// until the device is closed (or the task aborted).
pub async fn run(conn: Arc<Conn>, sh: Arc<Shared>) {
    let mut jitter = Jitter::new(conn.index);
    let (mut failures, mut attempt, mut was_up, mut failing) = (0u32, 0u64, false, false);
    let reconnect = pluribus_common::spec::ReconnectSpec::default();
    loop {
        if conn.closing() {
            return;
        }
        if conn.link().is_some() {
            // Cut off: logon attempts fail without reaching the acceptor, on the backoff;
            // once let back the session logs on at its next attempt (so the backoff and
            // its jitter decide how many sessions log on at once).
            failures += 1;
            tokio::select! {
                _ = tokio::time::sleep(jitter.backoff(&reconnect, failures)) => {}
                _ = conn.closed() => return,
            }
            continue;
        }
        // Boxed: the logon future (TLS included) is large and short-lived.
        let r = Box::pin(logon::logon(&conn, &sh, attempt)).await;
        attempt += 1;
        match r {
            Err(reason) => {
                sh.metrics.connect_failed(&reason);
                failures += 1;
                if !failing {
                    let hint = if reason == logon::CLOSED {
                        " (an acceptor drops a Logon it has no session for: check sender_comp_id and target_comp_id)"
                    } else {
                        ""
                    };
                    let error = format!("fix logon failed{}: {reason}{hint}", conn.whose());
                    failing = Box::pin(sh.events.device_failed(
                        &conn.fleet,
                        &conn.device_id,
                        &error,
                    ))
                    .await;
                }
                if !sh.warned.swap(true, Relaxed) {
                    tracing::warn!(device = %conn.device_id, reason, "fix logon failed; retrying with backoff (further failures are counted in the heartbeat)");
                } else {
                    tracing::debug!(device = %conn.device_id, reason, "fix logon failed");
                }
            }
            Ok((mut stream, mut rbuf)) => {
                if was_up {
                    sh.metrics.reconnects.fetch_add(1, Relaxed);
                }
                was_up = true;
                let end = {
                    let _g = Gauge::up(&sh.metrics.connected);
                    session::session(&conn, &sh, &mut stream, &mut rbuf).await
                };
                conn.lock().up = false;
                match end {
                    End::Closed => return,
                    End::Cut => {
                        // Counted by the network layer, per cohort, when it cut the link.
                        let mut st = conn.lock();
                        st.out = BytesMut::new();
                        st.awaiting = Vec::new();
                        failures = 0;
                        continue;
                    }
                    End::Lost(reason) => {
                        sh.metrics.disconnects.fetch_add(1, Relaxed);
                        tracing::debug!(device = %conn.device_id, reason, "fix session lost");
                        let error = format!("fix session lost{}: {reason}", conn.whose());
                        failing = Box::pin(sh.events.device_failed(
                            &conn.fleet,
                            &conn.device_id,
                            &error,
                        ))
                        .await;
                        let mut st = conn.lock();
                        st.out = BytesMut::new();
                        st.awaiting = Vec::new();
                        drop(st);
                        failures = 1;
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(jitter.backoff(&reconnect, failures)) => {}
            _ = conn.wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    #[test]
    fn an_order_key_is_the_key_of_its_clordid() {
        for (id, n) in [("d", 0), ("fx-00001", 12), ("a-b-c", u64::MAX)] {
            let clordid = format!("{id}-{n}");
            assert_eq!(
                order_key(id, n),
                clordid_key(clordid.as_bytes()),
                "{clordid}"
            );
        }
        assert_ne!(order_key("d-1", 2), order_key("d", 12));
    }

    /// Every logged-on device is one task whose future is as large as its largest await
    /// point, plus its `Conn`: together they are most of a session's memory. Large, rare
    /// futures (the logon, events) are boxed; this keeps them so. (Sizes, not speed.)
    #[tokio::test]
    async fn a_session_stays_small() {
        let spec: pluribus_common::spec::SinkSpec = serde_json::from_value(serde_json::json!({
            "type": "fix", "host": "127.0.0.1:1", "target_comp_id": "GW"
        }))
        .unwrap();
        let secrets =
            crate::secrets::Secrets::new(crate::secrets::SecretPolicy::default()).unwrap();
        let (_, resolved) = Resolved::from_spec(&spec, &secrets).unwrap();
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect("nats://127.0.0.1:1")
            .await
            .unwrap();
        let ns = pluribus_common::subjects::Namespace::new("").unwrap();
        let sh = Arc::new(Shared::new(
            resolved,
            Arc::default(),
            Arc::new(Pacer::new(64, None)),
            Events::new(client, ns, "a"),
        ));
        let conn = Arc::new(Conn::new(0, "d", Arc::from("f"), &sh.cfg));
        let task = run(conn.clone(), sh.clone());
        let size = std::mem::size_of_val(&task);
        assert!(size <= 1024, "a device's session task is {size} bytes");
        let conn_size = std::mem::size_of::<Conn>();
        assert!(conn_size <= 256, "a device's Conn is {conn_size} bytes");
        let logon = logon::logon(&conn, &sh, 0);
        let size = std::mem::size_of_val(&logon);
        assert!(size <= 4096, "a logon attempt is {size} bytes");
        eprintln!(
            "task {} B, conn {conn_size} B, logon {size} B",
            std::mem::size_of_val(&task)
        );
    }
}
