//! The `nats` sink: publishes each message on a subject rendered from a template
//! (default `pluribus.telemetry.{fleet}.{device_id}`).

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
        }))
    }
}

/// Publishes on the agent's NATS connection.
#[derive(Debug)]
pub struct NatsSink {
    client: async_nats::Client,
    subject: Template,
    scratch: String,
}

#[async_trait]
impl Sink for NatsSink {
    async fn send(&mut self, dev: &SinkDevice<'_>, payload: Bytes) -> Result<(), SinkError> {
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
}
