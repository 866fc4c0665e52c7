//! One device's MQTT connection: a small shared state ([`Conn`]) that the sink writes
//! packets into, and one task ([`run`]) that connects (paced), writes, reads, pings,
//! acknowledges and reconnects with backoff.
//!
//! The sink never waits for the network: `publish` encodes into the connection's output
//! buffer and wakes the task; a device that is not connected fails the publish at once.
//! Idle, a device is this struct, a parked task and a socket: no buffers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::{Bytes, BytesMut};
use pluribus_common::spec::TemplateVars;
use tokio::sync::{mpsc, Notify};

use super::codec::{self, ConnectParams, Incoming, PublishParams};
use super::config::Resolved;
use super::pacer::{Jitter, Pacer};
use super::stream::{self, Stream};
use crate::events::Events;
use crate::metrics::FleetMetrics;
use crate::sink::{Inbound, LinkMode};

mod session;
use session::session;

/// Most unacknowledged QoS 1/2 publishes per device; past it a publish fails.
const MAX_INFLIGHT: usize = 64;
/// Most bytes waiting to be written per device; past it a publish fails.
const MAX_PENDING: usize = 64 * 1024;

/// Microseconds on a monotonic clock (for ack latency).
fn mono_us() -> u64 {
    static BASE: OnceLock<std::time::Instant> = OnceLock::new();
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
    /// Where commands go (the shard runner).
    pub inbound: mpsc::Sender<Inbound>,
    /// The agent-wide connect pacer.
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
        inbound: mpsc::Sender<Inbound>,
        pacer: Arc<Pacer>,
        events: Events,
    ) -> Self {
        Self {
            cfg,
            metrics,
            inbound,
            pacer,
            events,
            warned: AtomicBool::new(false),
        }
    }
}

struct Inflight {
    pkid: u16,
    sent_us: u64,
    /// The encoded PUBLISH, for a resend; `None` once PUBREC came (PUBREL stage).
    packet: Option<Bytes>,
}

#[derive(Default)]
struct State {
    up: bool,
    closing: bool,
    /// Cut off by the network layer (a partition, a flap): how the connection goes down.
    link: Option<LinkMode>,
    /// The task is writing a chunk taken from `out`: nobody else may write meanwhile.
    writing: bool,
    /// The plain socket, for direct writes by the sink.
    sock: Option<Arc<tokio::net::TcpStream>>,
    out: BytesMut,
    inflight: Vec<Inflight>,
    next_pkid: u16,
}

impl State {
    fn pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
            let id = self.next_pkid;
            if !self.inflight.iter().any(|f| f.pkid == id) {
                return id;
            }
        }
    }

    /// Encodes a PUBLISH into the output; QoS 1/2 ones are tracked until acknowledged.
    fn enqueue(
        &mut self,
        cfg: &Resolved,
        p: PublishParams<'_>,
        track: bool,
    ) -> Result<(), &'static str> {
        if self.out.len() > MAX_PENDING {
            return Err("backlog: the broker does not keep up");
        }
        if p.qos == 0 {
            codec::publish(cfg.protocol, &p, &mut self.out);
            return Ok(());
        }
        if self.inflight.len() >= MAX_INFLIGHT {
            return Err("too many unacknowledged publishes");
        }
        let pkid = self.pkid();
        let mut b = BytesMut::new();
        codec::publish(cfg.protocol, &PublishParams { pkid, ..p }, &mut b);
        self.out.extend_from_slice(&b);
        if track {
            self.inflight.push(Inflight {
                pkid,
                sent_us: mono_us(),
                packet: Some(b.freeze()),
            });
        }
        Ok(())
    }
}

/// A device's connection state, shared by the sink and the connection task.
pub struct Conn {
    /// Index in the fleet.
    pub index: u64,
    /// Device id.
    pub device_id: Box<str>,
    /// Fleet name.
    pub fleet: Arc<str>,
    st: Mutex<State>,
    wake: Notify,
}

impl Conn {
    /// A device that is not connected yet.
    pub fn new(index: u64, device_id: &str, fleet: Arc<str>) -> Self {
        Self {
            index,
            device_id: device_id.into(),
            fleet,
            st: Mutex::new(State::default()),
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The template values of this device.
    pub fn vars(&self) -> TemplateVars<'_> {
        TemplateVars {
            fleet: &self.fleet,
            device_id: Some(&self.device_id),
            index: self.index,
        }
    }

    /// Publishes; fails at once if the device is not connected. On plain TCP, with nothing
    /// queued, the packet goes straight into the socket (encoded in `scratch`); otherwise
    /// it is queued and the task writes it.
    pub fn publish(
        &self,
        cfg: &Resolved,
        p: PublishParams<'_>,
        scratch: &mut BytesMut,
    ) -> Result<(), &'static str> {
        {
            let mut st = self.lock();
            if !st.up || st.closing {
                return Err("not connected");
            }
            let direct = p.qos == 0 && !st.writing && st.out.is_empty();
            match st.sock.as_ref().filter(|_| direct) {
                Some(sock) => {
                    scratch.clear();
                    codec::publish(cfg.protocol, &p, scratch);
                    let n = match sock.try_write(scratch) {
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
                        // The task sees the broken connection on its next read.
                        Err(_) => return Err("connection broken"),
                    };
                    if n == scratch.len() {
                        return Ok(());
                    }
                    st.out.extend_from_slice(&scratch[n..]);
                }
                None => st.enqueue(cfg, p, true)?,
            }
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Starts a clean stop: the offline message (if there is a will, since a clean
    /// DISCONNECT discards it) and DISCONNECT. Returns false if the device was not
    /// connected (the caller just ends the task).
    pub fn close(&self, cfg: &Resolved) -> bool {
        let mut st = self.lock();
        st.closing = true;
        if !st.up {
            return false;
        }
        if let Some(w) = &cfg.will {
            let topic = w.topic.render(&self.vars());
            let p = PublishParams {
                topic: &topic,
                payload: &w.payload,
                qos: w.qos,
                retain: w.retain,
                pkid: 0,
            };
            let _ = st.enqueue(cfg, p, false);
        }
        codec::disconnect(&mut st.out);
        drop(st);
        self.wake.notify_one();
        true
    }

    fn closing(&self) -> bool {
        self.lock().closing
    }

    /// The network layer cuts the device off (`Some`) or lets it back (`None`): the task
    /// closes or stalls the connection, and reconnects (or checks a stalled one) once let
    /// back. Nothing is published meanwhile.
    /// Returns true if a live connection was cut.
    pub fn set_link(&self, down: Option<LinkMode>) -> bool {
        let mut st = self.lock();
        if st.link == down {
            return false;
        }
        let cut = down.is_some() && st.up && st.link.is_none();
        st.link = down;
        if down.is_some() {
            st.up = false;
        }
        drop(st);
        self.wake.notify_one();
        cut
    }

    /// Connected, and not cut off.
    pub fn ready(&self) -> bool {
        let st = self.lock();
        st.up && st.link.is_none()
    }

    fn link(&self) -> Option<LinkMode> {
        self.lock().link
    }

    /// Waits until the device is closed.
    async fn closed(&self) {
        while !self.closing() {
            self.wake.notified().await;
        }
    }
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
    /// The network layer cut the device off: the socket was dropped (no DISCONNECT).
    Cut,
    /// The connection was lost (reason).
    Lost(&'static str),
}

/// The connection task of one device: connect, run the session, reconnect with backoff,
/// until the device is closed (or the task aborted).
pub async fn run(conn: Arc<Conn>, sh: Arc<Shared>) {
    let mut jitter = Jitter::new(conn.index);
    let (mut failures, mut attempt, mut was_up) = (0u32, 0u64, false);
    // In a streak of failures only the first is an event (retries are counted, not told);
    // a failure the agent's event budget left out is told at the next one.
    let mut failing = false;
    loop {
        if conn.closing() {
            return;
        }
        if conn.link().is_some() {
            // Cut off: the device's attempts fail without reaching the broker, on its
            // backoff; once let back it connects at its next attempt (so the backoff and
            // its jitter decide how many devices reconnect at once).
            failures += 1;
            tokio::select! {
                _ = tokio::time::sleep(jitter.backoff(&sh.cfg.reconnect, failures)) => {}
                _ = conn.closed() => return,
            }
            continue;
        }
        // Boxed: the connect future (TLS included) is large and short-lived.
        let r = Box::pin(connect(&conn, &sh, attempt)).await;
        attempt += 1;
        match r {
            Err(reason) => {
                sh.metrics.connect_failed(reason);
                failures += 1;
                if !failing {
                    let error = format!("mqtt connect failed: {reason}");
                    // Boxed: a publish future is large, and inline it would grow every
                    // device's task for good.
                    failing = Box::pin(sh.events.device_failed(
                        &conn.fleet,
                        &conn.device_id,
                        &error,
                    ))
                    .await;
                }
                if !sh.warned.swap(true, Relaxed) {
                    tracing::warn!(device = %conn.device_id, reason, "mqtt connect failed; retrying with backoff (further failures are counted in the heartbeat)");
                } else {
                    tracing::debug!(device = %conn.device_id, reason, "mqtt connect failed");
                }
            }
            Ok((mut stream, mut rbuf)) => {
                if was_up {
                    sh.metrics.reconnects.fetch_add(1, Relaxed);
                }
                was_up = true;
                let end = {
                    let _g = Gauge::up(&sh.metrics.connected);
                    session(&conn, &sh, &mut stream, &mut rbuf).await
                };
                {
                    let mut st = conn.lock();
                    st.up = false;
                    st.sock = None;
                }
                match end {
                    End::Closed => return,
                    End::Cut => {
                        // Counted by the network layer, per cohort, when it cut the link.
                        conn.lock().out = BytesMut::new();
                        failures = 0;
                        continue;
                    }
                    End::Lost(reason) => {
                        sh.metrics.disconnects.fetch_add(1, Relaxed);
                        tracing::debug!(device = %conn.device_id, reason, "mqtt connection lost");
                        let error = format!("mqtt connection lost: {reason}");
                        failing = Box::pin(sh.events.device_failed(
                            &conn.fleet,
                            &conn.device_id,
                            &error,
                        ))
                        .await;
                        let mut st = conn.lock();
                        st.out = BytesMut::new();
                        drop(st);
                        failures = 1;
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(jitter.backoff(&sh.cfg.reconnect, failures)) => {}
            _ = conn.wake.notified() => {}
        }
    }
}

/// One connect attempt, paced: TCP, TLS, WebSocket, CONNECT, CONNACK within the connect
/// timeout.
async fn connect(
    conn: &Conn,
    sh: &Shared,
    attempt: u64,
) -> Result<(Stream, BytesMut), &'static str> {
    let n = sh.cfg.brokers.len().max(1) as u64;
    let Some(url) = sh.cfg.brokers.get(((conn.index + attempt) % n) as usize) else {
        return Err("config");
    };
    let ips = &sh.cfg.source_ips;
    let source = (!ips.is_empty()).then(|| ips[((conn.index / n) % ips.len() as u64) as usize]);
    let _permit = sh.pacer.acquire().await;
    let _g = Gauge::up(&sh.metrics.connecting);
    let handshake = async {
        let addr = stream::resolve(url).await?;
        let tcp = stream::tcp(addr, source)
            .await
            .map_err(|e| stream::io_reason(&e))?;
        let mut s = stream::open(tcp, url, sh.cfg.tls.as_ref()).await?;
        let mut buf = BytesMut::new();
        let vars = conn.vars();
        let params = ConnectParams {
            client_id: &sh.cfg.client_id.render(&vars),
            keepalive: sh.cfg.keepalive.as_secs().min(u64::from(u16::MAX)) as u16,
            clean: sh.cfg.clean_session,
            login: match (&sh.cfg.username, &sh.cfg.password) {
                (None, None) => None,
                (u, p) => Some((
                    u.as_ref().map(|u| u.render(&vars)).unwrap_or_default(),
                    p.as_ref().map(|p| p.render(&vars)).unwrap_or_default(),
                )),
            },
            will: sh
                .cfg
                .will
                .as_ref()
                .map(|w| (w.topic.render(&vars), w.payload.clone(), w.qos, w.retain)),
        };
        codec::connect(sh.cfg.protocol, &params, &mut buf);
        s.write_all(&buf).await.map_err(|e| stream::io_reason(&e))?;
        buf.clear();
        loop {
            match s.read_some(&mut buf).await {
                Ok(0) => return Err("closed"),
                Ok(_) => {}
                Err(e) => return Err(stream::io_reason(&e)),
            }
            match codec::decode(sh.cfg.protocol, &mut buf) {
                Ok(Some(Incoming::ConnAck(r))) => {
                    r?;
                    return Ok((s, buf));
                }
                Ok(Some(_)) | Err(_) => return Err("protocol"),
                Ok(None) => {}
            }
        }
    };
    tokio::time::timeout(sh.cfg.connect_timeout, handshake)
        .await
        .unwrap_or(Err("timeout"))
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// Every connected device is one task whose future is as large as its largest await
    /// point, idle or not: a publish future inlined in `run` once grew it from ~710 to
    /// 1,216 bytes (+500 B per device). Large, rare futures are boxed; this keeps it so.
    /// (Sizes, not speed: they are what memory per device is made of.)
    #[tokio::test]
    async fn a_device_task_stays_small() {
        let spec: pluribus_common::spec::SinkSpec = serde_json::from_value(serde_json::json!({
            "type": "mqtt", "brokers": ["mqtt://127.0.0.1:1"]
        }))
        .unwrap();
        let (_, resolved) = super::super::config::Resolved::from_spec(
            &spec,
            &crate::secrets::Secrets::new(Default::default()).unwrap(),
        )
        .unwrap();
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect("nats://127.0.0.1:1")
            .await
            .unwrap();
        let ns = pluribus_common::subjects::Namespace::new("").unwrap();
        let (tx, _rx) = mpsc::channel(1);
        let sh = Arc::new(Shared::new(
            resolved,
            Arc::default(),
            tx,
            Arc::new(Pacer::new(64, None)),
            Events::new(client, ns, "a"),
        ));
        let conn = Arc::new(Conn::new(0, "d", Arc::from("f")));
        let task = run(conn, sh.clone());
        let size = std::mem::size_of_val(&task);
        assert!(size <= 800, "a device's connection task is {size} bytes");
        // The connect future lives (boxed) while a device connects: with the WebSocket
        // handshake inline it was 3,000 bytes instead of ~1,700, and 10k devices connecting
        // fragmented the heap into ~1 KB more RSS per device (3,045 -> 4,108 B measured).
        let conn = Conn::new(1, "e", Arc::from("f"));
        let size = std::mem::size_of_val(&connect(&conn, &sh, 0));
        assert!(size <= 2048, "a connect attempt is {size} bytes");
    }
}
