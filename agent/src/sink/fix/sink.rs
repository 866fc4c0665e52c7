//! [`FixSink`]: the devices of one shard, each with its own FIX session or `N` of them
//! sharing one (`devices_per_session`).

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::task::JoinHandle;

use super::codec;
use super::conn::{self, Conn, Numbers, Shared};
use crate::sink::{LinkMode, Sink, SinkDevice, SinkError};

/// How long a flush waits for stopping sessions to log out.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// A session and its task. Its devices hold it; the last one to stop logs it out.
struct Session {
    conn: Arc<Conn>,
    task: JoinHandle<()>,
}

/// An open device: its session's number and its own numbers.
struct Device {
    session: u64,
    nums: Numbers,
    /// Cut off by the network layer.
    cut: bool,
}

/// One shard's FIX devices. Sessions never span shards (the shard size is a multiple of
/// `devices_per_session`), so a session is this sink's alone.
pub struct FixSink {
    shared: Arc<Shared>,
    devices: HashMap<u64, Device>,
    sessions: HashMap<u64, Session>,
    /// Tasks of stopped sessions still logging out.
    closing: Vec<JoinHandle<()>>,
    fleet: Option<Arc<str>>,
    /// SendingTime of the current batch (one clock read per batch, not per message).
    time: Option<String>,
}

impl FixSink {
    /// A sink whose devices share `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            devices: HashMap::new(),
            sessions: HashMap::new(),
            closing: Vec::new(),
            fleet: None,
            time: None,
        }
    }

    fn fleet(&mut self, name: &str) -> Arc<str> {
        match &self.fleet {
            Some(f) if &**f == name => f.clone(),
            _ => {
                let f: Arc<str> = Arc::from(name);
                self.fleet = Some(f.clone());
                f
            }
        }
    }
}

#[async_trait]
impl Sink for FixSink {
    async fn open_device(&mut self, dev: &SinkDevice<'_>) -> Result<(), SinkError> {
        if self.devices.contains_key(&dev.index) {
            return Ok(());
        }
        let index = dev.index / self.shared.cfg.per_session;
        if !self.sessions.contains_key(&index) {
            let fleet = self.fleet(dev.fleet);
            let conn = Arc::new(Conn::new(index, dev.device_id, fleet, &self.shared.cfg));
            let task = tokio::spawn(conn::run(conn.clone(), self.shared.clone()));
            self.sessions.insert(index, Session { conn, task });
        }
        if let Some(s) = self.sessions.get(&index) {
            s.conn.join();
        }
        self.devices.insert(
            dev.index,
            Device {
                session: index,
                nums: Numbers::default(),
                cut: false,
            },
        );
        Ok(())
    }

    async fn send(&mut self, dev: &SinkDevice<'_>, payload: Bytes) -> Result<(), SinkError> {
        let failed = |why: &str| {
            self.shared.metrics.publish_failed.fetch_add(1, Relaxed);
            SinkError(format!("fix send of {}: {why}", dev.device_id))
        };
        let Some(d) = self.devices.get_mut(&dev.index) else {
            return Err(failed("device not open"));
        };
        let Some(s) = self.sessions.get(&d.session) else {
            return Err(failed("device not open"));
        };
        let time = self.time.get_or_insert_with(codec::now_utc);
        s.conn
            .send(&self.shared.cfg, dev.device_id, &mut d.nums, &payload, time)
            .map_err(failed)
    }

    fn set_link(&mut self, dev: &SinkDevice<'_>, down: Option<LinkMode>) -> bool {
        let Some(d) = self.devices.get_mut(&dev.index) else {
            return false;
        };
        let was_cut = std::mem::replace(&mut d.cut, down.is_some());
        self.sessions
            .get(&d.session)
            .is_some_and(|s| s.conn.set_link(down, was_cut))
    }

    fn ready(&self, dev: &SinkDevice<'_>) -> bool {
        self.devices
            .get(&dev.index)
            .and_then(|d| self.sessions.get(&d.session))
            .is_some_and(|s| s.conn.ready())
    }

    async fn close_device(&mut self, dev: &SinkDevice<'_>) {
        let Some(d) = self.devices.remove(&dev.index) else {
            return;
        };
        // A session others still use stays logged on.
        let last = self
            .sessions
            .get(&d.session)
            .is_some_and(|s| s.conn.leave(d.cut) == 0);
        if !last {
            return;
        }
        let Some(s) = self.sessions.remove(&d.session) else {
            return;
        };
        if s.conn.close(&self.shared.cfg) {
            self.closing.push(s.task);
        } else {
            s.task.abort();
        }
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        self.time = None;
        if self.closing.is_empty() {
            return Ok(());
        }
        let tasks = std::mem::take(&mut self.closing);
        let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
        if tokio::time::timeout(CLOSE_WAIT, futures::future::join_all(tasks))
            .await
            .is_err()
        {
            aborts.iter().for_each(|a| a.abort());
        }
        Ok(())
    }
}

impl Drop for FixSink {
    fn drop(&mut self) {
        for s in self.sessions.values() {
            s.task.abort();
        }
        for t in &self.closing {
            t.abort();
        }
    }
}
