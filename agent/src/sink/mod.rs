//! Sinks: where telemetry goes (the seed library called them "aggregators"). One trait,
//! one file per implementation.
//!
//! A shard runner makes one sink per distinct sink spec among its devices, so a sink
//! may hold per-shard resources (a connection per device, a batch buffer) and is used
//! from one task only.

pub mod console;
pub mod fix;
pub mod http;
pub mod mqtt;
pub mod nats;
pub mod pacers;
pub mod tls;

use async_trait::async_trait;
use bytes::Bytes;
use pluribus_common::spec::SinkSpec;

pub use pluribus_common::spec::network::LinkMode;

/// A device as a sink sees it.
#[derive(Debug, Clone, Copy)]
pub struct SinkDevice<'a> {
    /// Device id.
    pub device_id: &'a str,
    /// Fleet name.
    pub fleet: &'a str,
    /// Index in the fleet.
    pub index: u64,
}

/// A sink failed to send.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// Where telemetry goes.
#[async_trait]
pub trait Sink: Send {
    /// Called when a device starts, before its first message (connect here).
    async fn open_device(&mut self, _dev: &SinkDevice<'_>) -> Result<(), SinkError> {
        Ok(())
    }

    /// Sends one payload of one device.
    async fn send(&mut self, dev: &SinkDevice<'_>, payload: Bytes) -> Result<(), SinkError>;

    /// Called when a device stops, after its last message.
    async fn close_device(&mut self, _dev: &SinkDevice<'_>) {}

    /// The network layer cut the device off (`Some`: a partition, a flap) or let it back
    /// (`None`). A sink with a connection per device closes or stalls that connection as
    /// `LinkMode` says and reconnects (with its backoff) once let back; a sink whose
    /// devices share connections ignores it (the network layer holds their messages).
    /// Returns true when a live connection of the device was cut (the network layer
    /// counts it as a disconnect it injected).
    fn set_link(&mut self, _dev: &SinkDevice<'_>, _down: Option<LinkMode>) -> bool {
        false
    }

    /// The fleet's network rules may cut devices' links (`true`: a partition or flapping
    /// whose link is `close` or `stall`), or no longer do. A sink whose devices share
    /// connections may then give each device a connection of its own, so that cutting a
    /// device is a socket event its server sees.
    fn own_links(&mut self, _on: bool) {}

    /// False while the device cannot send because its own connection is down (cut off, or
    /// let back but not reconnected yet): the network layer keeps buffering until then.
    fn ready(&self, _dev: &SinkDevice<'_>) -> bool {
        true
    }

    /// Sends a device's reply to a command that came in through this sink.
    async fn reply(&mut self, _dev: &SinkDevice<'_>, _payload: Bytes) -> Result<(), SinkError> {
        Ok(())
    }

    /// False for a sink whose devices only receive (an MQTT subscriber): their telemetry
    /// slots are not scheduled at all, so they count as neither sent nor scheduled.
    fn publishes(&self) -> bool {
        true
    }

    /// Called after each batch of sends.
    async fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Called once when the shard stops, after its devices' last messages (on_stop
    /// included) and a flush: finish what is still in flight. The shard bounds the wait.
    async fn close(&mut self) {}
}

/// A message that arrived for a device through its sink (an MQTT command, say).
#[derive(Debug, Clone)]
pub struct Inbound {
    /// The device's index in its fleet.
    pub index: u64,
    /// The message.
    pub payload: Bytes,
}

/// What a sink factory may use; one per shard.
#[derive(Clone, Debug)]
pub struct SinkContext {
    /// The agent's NATS client.
    pub nats: async_nats::Client,
    /// The fleet's metrics on this agent (connections, failures, latencies).
    pub metrics: std::sync::Arc<crate::metrics::FleetMetrics>,
    /// Where to deliver messages addressed to the shard's devices; the runner calls the
    /// device's `on_message` and sends any reply through [`Sink::reply`].
    pub inbound: tokio::sync::mpsc::Sender<Inbound>,
    /// The agent's events: a sink reports a device whose connection failed with
    /// [`Events::device_failed`](crate::events::Events::device_failed).
    pub events: crate::events::Events,
    /// Resolves `env:` and `file:` references in sink options, within what the agent's
    /// operator allows (`--secrets-dir`, `--secrets-env-prefix`).
    pub secrets: crate::secrets::Secrets,
}

/// Makes sinks of one type.
pub trait SinkFactory: Send + Sync {
    /// A sink for one shard, configured by `spec`.
    fn create(&self, spec: &SinkSpec, ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError>;

    /// True if the sink holds an open connection (a file descriptor) per device, so that
    /// the agent's open-files limit bounds how many devices it can run.
    fn holds_connections(&self) -> bool {
        false
    }
}
