//! The `fix` sink: every device is a FIX 4.4 trading client with its own session (its own
//! TCP or TLS connection and SenderCompID) to a FIX acceptor, or `devices_per_session`
//! devices share one (SenderSubID names the device). Each telemetry message
//! becomes a NewOrderSingle (or an OrderCancelRequest, or a MarketDataIncrementalRefresh);
//! ExecutionReports matched to their ClOrdID give the ack latency.
//!
//! Built like the mqtt sink, for many devices per agent: one small task per session, no
//! buffers while idle, logons paced agent-wide (the agent's [`Pacers`], shared with other sinks).
//!
//! | file | what |
//! |---|---|
//! | `config.rs` | options resolved on the agent (templates, `env:`/`file:` credentials, TLS) |
//! | `codec.rs` | tag=value framing: BodyLength, CheckSum, bounded decoding |
//! | `order.rs` | business messages made from telemetry |
//! | `conn.rs` | one session (a device's, or shared): state and task (`conn/logon.rs`, `conn/session.rs`) |
//! | `sink.rs` | the [`Sink`] of one shard |

mod codec;
#[cfg(test)]
mod codec_fuzz;
mod config;
mod conn;
mod order;
mod sink;

use std::sync::Arc;

use pluribus_common::spec::SinkSpec;

pub use sink::FixSink;

use super::pacers::Pacers;
use super::{Sink, SinkContext, SinkError, SinkFactory};

/// Factory of [`FixSink`]s. One per agent: it holds the logon pacers, so that every
/// shard's sessions share the agent's `connect_rate` and `max_connecting`.
#[derive(Debug, Default)]
pub struct FixFactory {
    pacers: Pacers,
}

impl SinkFactory for FixFactory {
    fn create(&self, spec: &SinkSpec, ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        let (cfg, resolved) = config::Resolved::from_spec(spec, &ctx.secrets)?;
        let shared = conn::Shared::new(
            resolved,
            ctx.metrics.clone(),
            self.pacers.get(cfg.connect_rate, cfg.max_connecting),
            ctx.events.clone(),
        );
        Ok(Box::new(FixSink::new(Arc::new(shared))))
    }

    fn holds_connections(&self) -> bool {
        true
    }
}
