//! The `nats` sink: publishes each message on a subject rendered from a template
//! (default `pluribus.telemetry.{fleet}.{device_id}`).
//!
//! Testing aid: with `drop_every: N` it silently skips every Nth message of each device
//! (and reports it as sent), so that a test has a lossy "system under test" whose losses
//! `pluribusctl probe` must find.

use std::collections::HashMap;

use async_trait::async_trait;
use bytes::Bytes;
use pluribus_common::spec::{SinkSpec, Template, TemplateVars};

use super::{Sink, SinkContext, SinkDevice, SinkError, SinkFactory};

/// Factory of [`NatsSink`]s.
#[derive(Debug, Default)]
pub struct NatsFactory;

impl SinkFactory for NatsFactory {
    fn create(&self, spec: &SinkSpec, ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        let cfg = spec.nats_config().map_err(|e| SinkError(e.to_string()))?;
        let subject = Template::parse("sink.subject", &cfg.subject, true)
            .map_err(|e| SinkError(e.to_string()))?;
        Ok(Box::new(NatsSink {
            client: ctx.nats.clone(),
            subject,
            scratch: String::new(),
            dropper: cfg.drop_every.map(Dropper::new),
        }))
    }
}

/// Publishes on the agent's NATS connection.
#[derive(Debug)]
pub struct NatsSink {
    client: async_nats::Client,
    subject: Template,
    scratch: String,
    dropper: Option<Dropper>,
}

/// Counts each device's messages and says which to skip: the Nth, 2Nth, ... of each.
#[derive(Debug)]
struct Dropper {
    every: u64,
    counts: HashMap<u64, u64>,
}

impl Dropper {
    fn new(every: u64) -> Self {
        Self {
            every: every.max(1),
            counts: HashMap::new(),
        }
    }

    /// True if this message of device `index` is to be skipped.
    fn skip(&mut self, index: u64) -> bool {
        let n = self.counts.entry(index).or_default();
        *n += 1;
        n.is_multiple_of(self.every)
    }
}

#[async_trait]
impl Sink for NatsSink {
    async fn send(&mut self, dev: &SinkDevice<'_>, payload: Bytes) -> Result<(), SinkError> {
        if let Some(d) = &mut self.dropper {
            if d.skip(dev.index) {
                return Ok(());
            }
        }
        let vars = TemplateVars {
            fleet: dev.fleet,
            device_id: Some(dev.device_id),
            index: dev.index,
        };
        self.subject.render_into(&vars, &mut self.scratch);
        self.client
            .publish(self.scratch.clone(), payload)
            .await
            .map_err(|e| SinkError(format!("nats publish: {e}")))
    }

    async fn close_device(&mut self, dev: &SinkDevice<'_>) {
        if let Some(d) = &mut self.dropper {
            d.counts.remove(&dev.index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nth_message_of_each_device_is_skipped() {
        let mut d = Dropper::new(3);
        let a: Vec<bool> = (0..7).map(|_| d.skip(1)).collect();
        assert_eq!(a, [false, false, true, false, false, true, false]);
        // Another device has its own count.
        assert!(!d.skip(2));
        let mut all = Dropper::new(1);
        assert!(all.skip(1) && all.skip(1));
    }
}
