//! Sending what is due: one batch of slots per wake-up, one sink flush per batch.

use std::cmp::Reverse;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;

use super::shape::{phase_of, position_key};
use super::{now_us, Runner, MAX_BATCH};
use crate::device::{DeviceCtx, Tick};
use crate::sink::SinkDevice;

impl Runner {
    pub(super) async fn run_due(&mut self) {
        let now_us = now_us();
        let now = now_us / 1000;
        let limit = self.key_now(now);
        // Rate-driven: Φ now, the current rate and the seq of position 0, for scheduled times.
        let pace = self
            .pace
            .as_mut()
            .map(|p| (p.pace.phi(now), p.pace.rate_at(now), p.seq_base));
        let (mut sent, mut bytes, mut errors) = (0u64, 0u64, 0u64);
        let mut n = 0;
        // Past the fence (this agent's liveness is not confirmed: cut off, or frozen and
        // just woken), due slots pass unsent: another agent may have taken the devices.
        let fenced = !self.fence.is_open();
        while let Some(&Reverse((due, at, gen))) = self.heap.peek() {
            if due > limit || n >= MAX_BATCH {
                break;
            }
            self.heap.pop();
            n += 1;
            let index = self.record.shard_range(self.shard).start + u64::from(at);
            let Some(slot) = self.slots.get_mut(at as usize).and_then(|s| s.as_mut()) else {
                continue;
            };
            if slot.gen != gen {
                continue;
            }
            let seq = slot.seq;
            let ctx = DeviceCtx {
                device_id: &slot.id,
                fleet: &self.fleet,
                device_type: &self.kinds[slot.kind as usize].shown,
                index,
                seed: self.seed,
            };
            let (scheduled_us, next_key) = match pace {
                // Φ passed the slot's position (due/1000) (phi - due/1000)/rate seconds ago.
                Some((phi, rate, base)) => {
                    let behind_s = if rate > 0.0 {
                        (phi - due as f64 / 1000.0).max(0.0) / rate
                    } else {
                        0.0
                    };
                    let k = slot.seq + 1 - base;
                    (
                        now_us.saturating_sub((behind_s * 1e6) as u64),
                        position_key(k, phase_of(&slot.sched)),
                    )
                }
                None => (due * 1000, slot.sched.due_ms(slot.seq + 1)),
            };
            if fenced {
                slot.seq += 1;
                self.heap.push(Reverse((next_key, at, gen)));
                continue;
            }
            self.lag.push(now_us.saturating_sub(scheduled_us));
            let tick = Tick {
                seq,
                scheduled_ms: if pace.is_some() {
                    scheduled_us / 1000
                } else {
                    slot.sched.slot_ms(seq)
                },
                now_ms: now,
            };
            self.buf.clear();
            slot.dev.telemetry(&ctx, &tick, &mut self.buf);
            slot.seq += 1;
            self.heap.push(Reverse((next_key, at, gen)));
            let sd = SinkDevice {
                device_id: &slot.id,
                fleet: &self.fleet,
                index,
            };
            let sink = &mut self.sinks[slot.sink as usize].1;
            // The periodic message, then any extra ones (events) of the same tick.
            let mut has_payload = !self.buf.is_empty();
            loop {
                if has_payload {
                    match sink.send(&sd, Bytes::copy_from_slice(&self.buf)).await {
                        Ok(()) => {
                            sent += 1;
                            bytes += self.buf.len() as u64;
                        }
                        Err(e) => {
                            errors += 1;
                            tracing::debug!(device = %slot.id, error = %e, "send failed");
                        }
                    }
                }
                self.buf.clear();
                if !slot.dev.extra(&ctx, &tick, &mut self.buf) {
                    break;
                }
                has_payload = !self.buf.is_empty();
            }
        }
        if fenced {
            return;
        }
        self.flush().await;
        self.partition_events().await;
        self.metrics.messages.fetch_add(sent, Relaxed);
        self.metrics.bytes.fetch_add(bytes, Relaxed);
        self.metrics.errors.fetch_add(errors, Relaxed);
        if !self.lag.is_empty() {
            self.metrics.add_tick_lags(&self.lag);
            self.lag.clear();
            // A burst of late slots may have grown the buffer: give the memory back.
            if self.lag.capacity() > 1024 {
                self.lag.shrink_to(64);
            }
        }
    }

    pub(super) async fn flush(&mut self) {
        for (_, s) in &mut self.sinks {
            if let Err(e) = s.flush().await {
                self.metrics.errors.fetch_add(1, Relaxed);
                tracing::debug!(error = %e, "sink flush failed");
            }
        }
    }
}
