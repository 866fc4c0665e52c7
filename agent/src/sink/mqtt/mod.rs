//! The `mqtt` sink: every device holds its own MQTT connection (3.1.1 or 5, plain or
//! TLS, over TCP or WebSocket), publishes telemetry on its topic, takes commands on its command topic and
//! replies on the response topic; or, as a `subscriber`, counts what arrives on a filter.
//!
//! It is built for many devices per agent: one lean connection per device on rumqttc's
//! packet codec (not its client, which costs ~30 KB per connection), one small task per
//! connection, no buffers while idle, and an agent-wide pacer so that connects never
//! overrun the broker's listen backlog.
//!
//! | file | what |
//! |---|---|
//! | `config.rs` | options resolved on the agent (templates, `env:`/`file:` secrets, TLS) |
//! | `codec.rs` | packets in and out |
//! | `stream.rs` | TCP (source address binding), TLS and WebSocket sockets |
//! | `ws.rs` | MQTT over WebSocket (`ws://`, `wss://`) on tokio-tungstenite |
//! | `conn.rs` | one device's connection: state and task |
//! | `pacer.rs` | connect rate, connects in flight, backoff |
//! | `sink.rs` | the [`Sink`] of one shard |
//!
//! The rustls client configuration (`ca`, `cert`, `key`) is [`crate::sink::tls`], shared
//! with the http sink.

mod codec;
#[cfg(test)]
mod codec_fuzz;
pub(crate) mod config;
mod conn;
pub(crate) mod pacer;
mod sink;
pub(crate) mod stream;
mod ws;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pluribus_common::spec::SinkSpec;

pub use pacer::Pacer;
pub use sink::MqttSink;

use super::{Sink, SinkContext, SinkError, SinkFactory};

/// Factory of [`MqttSink`]s. One per agent: it holds the connect pacers, so that every
/// shard's devices share the agent's `connect_rate` and `max_connecting`.
#[derive(Debug, Default)]
pub struct MqttFactory {
    /// Pacers by (rate in milli-connects/s, max connecting): fleets with the same settings
    /// share one.
    pacers: Mutex<HashMap<(u64, u32), Arc<Pacer>>>,
}

impl MqttFactory {
    fn pacer(&self, rate: Option<f64>, max_connecting: u32) -> Arc<Pacer> {
        let key = (rate.map_or(0, |r| (r * 1000.0) as u64), max_connecting);
        self.pacers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_insert_with(|| Arc::new(Pacer::new(max_connecting, rate)))
            .clone()
    }
}

impl SinkFactory for MqttFactory {
    fn create(&self, spec: &SinkSpec, ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        let (cfg, resolved) = config::Resolved::from_spec(spec, &ctx.secrets)?;
        let shared = conn::Shared::new(
            resolved,
            ctx.metrics.clone(),
            ctx.inbound.clone(),
            self.pacer(cfg.connect_rate, cfg.max_connecting),
            ctx.events.clone(),
        );
        Ok(Box::new(MqttSink::new(Arc::new(shared))))
    }

    fn holds_connections(&self) -> bool {
        true
    }
}
