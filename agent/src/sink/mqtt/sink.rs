//! [`MqttSink`]: the devices of one shard, each with its own MQTT connection.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pluribus_common::spec::{MqttRole, Template};
use tokio::task::JoinHandle;

use super::codec::PublishParams;
use super::conn::{self, Conn, Shared};
use crate::sink::{LinkMode, Sink, SinkDevice, SinkError};

/// How long a flush waits for stopping devices to send DISCONNECT.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

struct Device {
    conn: Arc<Conn>,
    task: JoinHandle<()>,
}

/// One shard's MQTT devices.
pub struct MqttSink {
    shared: Arc<Shared>,
    devices: HashMap<u64, Device>,
    /// Tasks of stopped devices still writing DISCONNECT.
    closing: Vec<JoinHandle<()>>,
    fleet: Option<Arc<str>>,
    topic: String,
    scratch: bytes::BytesMut,
}

impl MqttSink {
    /// A sink whose devices share `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            devices: HashMap::new(),
            closing: Vec::new(),
            fleet: None,
            topic: String::new(),
            scratch: bytes::BytesMut::new(),
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

    fn publish(
        &mut self,
        dev: &SinkDevice<'_>,
        topic: &Template,
        payload: &[u8],
        retain: bool,
    ) -> Result<(), SinkError> {
        let failed = |why: &str| {
            self.shared.metrics.publish_failed.fetch_add(1, Relaxed);
            SinkError(format!("mqtt publish of {}: {why}", dev.device_id))
        };
        let Some(d) = self.devices.get(&dev.index) else {
            return Err(failed("device not open"));
        };
        topic.render_into(&d.conn.vars(), &mut self.topic);
        let p = PublishParams {
            topic: &self.topic,
            payload,
            qos: self.shared.cfg.qos,
            retain,
            pkid: 0,
        };
        d.conn
            .publish(&self.shared.cfg, p, &mut self.scratch)
            .map_err(failed)
    }
}

#[async_trait]
impl Sink for MqttSink {
    async fn open_device(&mut self, dev: &SinkDevice<'_>) -> Result<(), SinkError> {
        if self.devices.contains_key(&dev.index) {
            return Ok(());
        }
        let fleet = self.fleet(dev.fleet);
        let conn = Arc::new(Conn::new(dev.index, dev.device_id, fleet));
        let task = tokio::spawn(conn::run(conn.clone(), self.shared.clone()));
        self.devices.insert(dev.index, Device { conn, task });
        Ok(())
    }

    fn publishes(&self) -> bool {
        self.shared.cfg.role != MqttRole::Subscriber
    }

    async fn send(&mut self, dev: &SinkDevice<'_>, payload: Bytes) -> Result<(), SinkError> {
        if self.shared.cfg.role == MqttRole::Subscriber {
            // A subscriber device publishes nothing; its ticks are dropped.
            return Ok(());
        }
        let shared = self.shared.clone();
        self.publish(dev, &shared.cfg.topic, &payload, shared.cfg.retain)
    }

    async fn close_device(&mut self, dev: &SinkDevice<'_>) {
        let Some(d) = self.devices.remove(&dev.index) else {
            return;
        };
        if d.conn.close(&self.shared.cfg) {
            self.closing.push(d.task);
        } else {
            d.task.abort();
        }
    }

    fn set_link(&mut self, dev: &SinkDevice<'_>, down: Option<LinkMode>) -> bool {
        self.devices
            .get(&dev.index)
            .is_some_and(|d| d.conn.set_link(down))
    }

    fn ready(&self, dev: &SinkDevice<'_>) -> bool {
        self.devices.get(&dev.index).is_some_and(|d| d.conn.ready())
    }

    async fn reply(&mut self, dev: &SinkDevice<'_>, payload: Bytes) -> Result<(), SinkError> {
        let shared = self.shared.clone();
        match &shared.cfg.response {
            Some(t) => self.publish(dev, t, &payload, false),
            None => Ok(()),
        }
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
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

impl Drop for MqttSink {
    fn drop(&mut self) {
        for d in self.devices.values() {
            d.task.abort();
        }
        for t in &self.closing {
            t.abort();
        }
    }
}
