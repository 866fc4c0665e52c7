//! The `console` sink: one JSON line per message on the agent's stdout.

use std::io::Write;

use async_trait::async_trait;
use bytes::Bytes;
use pluribus_common::spec::SinkSpec;

use super::{Sink, SinkContext, SinkDevice, SinkError, SinkFactory};

/// Factory of [`Console`] sinks.
#[derive(Debug, Default)]
pub struct ConsoleFactory;

impl SinkFactory for ConsoleFactory {
    fn create(&self, _spec: &SinkSpec, _ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(Console {
            buf: Vec::with_capacity(8192),
        }))
    }
}

/// Buffers a batch of lines and writes them to stdout at once.
#[derive(Debug)]
pub struct Console {
    buf: Vec<u8>,
}

#[async_trait]
impl Sink for Console {
    async fn send(&mut self, _dev: &SinkDevice<'_>, payload: Bytes) -> Result<(), SinkError> {
        self.buf.extend_from_slice(&payload);
        self.buf.push(b'\n');
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        let r = out.write_all(&self.buf).and_then(|_| out.flush());
        self.buf.clear();
        r.map_err(|e| SinkError(format!("stdout: {e}")))
    }
}
