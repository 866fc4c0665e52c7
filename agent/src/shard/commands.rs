//! Commands to one device of a shard: from NATS (request/reply) or from the device's own
//! sink connection (an MQTT command topic).

use std::cmp::Reverse;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use pluribus_common::time::now_ms;

use super::schedule::Schedule;
use super::{milli_rate, CommandReply, Runner};
use crate::device::DeviceCtx;
use crate::sink::{Inbound, SinkDevice};

impl Runner {
    pub(super) fn command(&mut self, device_id: &str, payload: &[u8]) -> CommandReply {
        let index = self
            .record
            .index_of(device_id)
            .ok_or_else(|| format!("no device {device_id} in fleet {}", self.fleet))?;
        self.command_at(index, payload)
    }

    /// A command that came in through the device's sink; the reply goes back the same way.
    pub(super) async fn inbound_command(&mut self, msg: Inbound) {
        let reply = self.command_at(msg.index, &msg.payload);
        let body = match reply {
            Ok(Some(body)) => body,
            Ok(None) => return,
            Err(e) => serde_json::to_vec(&serde_json::json!({ "error": e })).unwrap_or_default(),
        };
        let Some((id, sink)) = self
            .slot_of(msg.index)
            .and_then(|at| self.slots[at].as_ref())
            .map(|s| (s.id.clone(), s.sink as usize))
        else {
            return;
        };
        let sd = SinkDevice {
            device_id: &id,
            fleet: &self.fleet,
            index: msg.index,
        };
        if let Err(e) = self.sinks[sink].1.reply(&sd, Bytes::from(body)).await {
            tracing::debug!(device = %id, error = %e, "reply failed");
        }
    }

    pub(super) fn command_at(&mut self, index: u64, payload: &[u8]) -> CommandReply {
        self.metrics.commands.fetch_add(1, Relaxed);
        let at = self
            .slot_of(index)
            .ok_or_else(|| format!("device {index} is not in this shard"))?;
        let fleet = self.fleet.clone();
        let slot = self.slots[at]
            .as_mut()
            .ok_or_else(|| format!("device {index} is not running"))?;
        let ctx = DeviceCtx {
            device_id: &slot.id,
            fleet: &fleet,
            device_type: &self.kinds[slot.kind as usize].shown,
            index,
            seed: self.seed,
        };
        let reply = slot.dev.on_message(&ctx, payload);
        // A command may change the interval: the schedule continues from the next seq at
        // the new pace (seq never goes back).
        if let (Some(new), None) = (slot.dev.interval_override(), &self.pace) {
            let new_ms = (new.as_millis() as u64).max(1);
            if new_ms != slot.sched.interval_ms {
                let now = now_ms();
                let (old_rate, new_rate) = (milli_rate(slot.sched.interval_ms), milli_rate(new_ms));
                self.metrics
                    .scheduled_milli_per_s
                    .fetch_add(new_rate, Relaxed);
                self.metrics
                    .scheduled_milli_per_s
                    .fetch_sub(old_rate, Relaxed);
                slot.sched = Schedule {
                    start_ms: now + new_ms,
                    interval_ms: new_ms,
                    jitter_ms: slot.sched.jitter_ms.min(new_ms - 1),
                    salt: slot.sched.salt,
                    seq_base: slot.seq,
                };
                self.gen = self.gen.wrapping_add(1);
                slot.gen = self.gen;
                self.heap
                    .push(Reverse((slot.sched.due_ms(slot.seq), at as u32, slot.gen)));
            }
        }
        reply
    }
}
