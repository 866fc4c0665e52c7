//! Devices coming and going in a running shard: start (on_start), stop (on_stop), and
//! following the fleet record as it is scaled, stopped or shaped.

use std::cmp::Reverse;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use std::time::Duration;

use pluribus_common::record::FleetRecord;
use pluribus_common::time::now_ms;

use super::schedule::Schedule;
use super::{milli_rate, Runner, Slot};
use crate::device::DeviceCtx;
use crate::sink::SinkDevice;

impl Runner {
    pub(super) async fn start_device(&mut self, index: u64) {
        let Some(at) = self.slot_of(index) else {
            return;
        };
        if self.slots[at].is_some() {
            return;
        }
        let d = self.record.resolve(index, self.ids.as_ref());
        let (Some(kind), Some(sink)) = (
            self.kinds
                .iter()
                .position(|k| k.registered == d.kind && &k.options == d.options),
            self.sinks.iter().position(|(s, _)| s == d.sink),
        ) else {
            tracing::warn!(fleet = %self.fleet, index, "device type or sink changed under a running shard; skipped");
            return;
        };
        let k = &self.kinds[kind];
        let ctx = DeviceCtx {
            device_id: &d.device_id,
            fleet: &self.fleet,
            device_type: &k.shown,
            index,
            seed: self.seed,
        };
        let mut dev = k.ty.create(&ctx);
        let sd = SinkDevice {
            device_id: &d.device_id,
            fleet: &self.fleet,
            index,
        };
        let s = &mut self.sinks[sink].1;
        if let Err(e) = s.open_device(&sd).await {
            self.metrics.errors.fetch_add(1, Relaxed);
            tracing::warn!(device = %d.device_id, error = %e, "sink could not open the device");
            let _ = self
                .events
                .device_failed(&self.fleet, &d.device_id, &e.to_string())
                .await;
        }
        let now = now_ms();
        self.buf.clear();
        dev.on_start(&ctx, now, &mut self.buf);
        if !self.buf.is_empty() && self.fence.is_open() {
            let _ = s.send(&sd, Bytes::copy_from_slice(&self.buf)).await;
        }
        // A device type (a profile) may bring its own interval and jitter.
        let interval = dev
            .interval_override()
            .unwrap_or(d.interval)
            .max(Duration::from_millis(1));
        let jitter = self.kinds[kind]
            .ty
            .jitter()
            .unwrap_or(self.record.spec.device.jitter);
        let sched = Schedule::new(
            &d.device_id,
            d.epoch.epoch_ms,
            interval.as_millis() as u64,
            jitter.min(interval - Duration::from_millis(1)).as_millis() as u64,
        )
        .with_seq_base(d.epoch.seq_base);
        let (seq, key) = Self::plan(&mut self.pace, &sched, 0, now);
        self.gen = self.gen.wrapping_add(1);
        let publishes = self.sinks[sink].1.publishes();
        if publishes {
            self.heap.push(Reverse((key, at as u32, self.gen)));
        }
        self.started.push(d.device_id.clone());
        self.slots[at] = Some(Slot {
            id: d.device_id.into_boxed_str(),
            dev,
            sched,
            seq,
            gen: self.gen,
            kind: kind as u16,
            sink: sink as u16,
        });
        self.running += 1;
        if self.pace.is_none() && publishes {
            let rate = milli_rate(sched.interval_ms);
            self.metrics.scheduled_milli_per_s.fetch_add(rate, Relaxed);
        }
        self.metrics.devices.fetch_add(1, Relaxed);
    }

    /// Stops the device in slot `at` (on_stop, then the sink closes it); `why` goes into
    /// the next `devices_stopped` event.
    pub(super) async fn stop_device(&mut self, at: usize, why: &str) {
        let Some(mut slot) = self.slots[at].take() else {
            return;
        };
        match self.stopped.get_mut(why) {
            Some(ids) => ids.push(slot.id.to_string()),
            None => {
                self.stopped
                    .insert(why.to_string(), vec![slot.id.to_string()]);
            }
        }
        let index = self.base() + at as u64;
        let ctx = DeviceCtx {
            device_id: &slot.id,
            fleet: &self.fleet,
            device_type: &self.kinds[slot.kind as usize].shown,
            index,
            seed: self.seed,
        };
        self.buf.clear();
        slot.dev.on_stop(&ctx, now_ms(), &mut self.buf);
        let sd = SinkDevice {
            device_id: &slot.id,
            fleet: &self.fleet,
            index,
        };
        let s = &mut self.sinks[slot.sink as usize].1;
        // A fenced agent's last words could follow the new holder's first ones.
        if !self.buf.is_empty() && self.fence.is_open() {
            let _ = s.send(&sd, Bytes::copy_from_slice(&self.buf)).await;
        }
        s.close_device(&sd).await;
        self.running -= 1;
        if self.pace.is_none() && self.sinks[slot.sink as usize].1.publishes() {
            let rate = milli_rate(slot.sched.interval_ms);
            self.metrics.scheduled_milli_per_s.fetch_sub(rate, Relaxed);
        }
        self.metrics.devices.fetch_sub(1, Relaxed);
    }

    /// Stops every device (on_stop), flushes, and lets the sinks finish what is in flight.
    pub(super) async fn stop_all(&mut self, why: &str) {
        for at in 0..self.slots.len() {
            self.stop_device(at, why).await;
        }
        self.flush().await;
        for (_, s) in &mut self.sinks {
            s.close().await;
        }
        self.announce().await;
    }

    /// Publishes what started and stopped since the last call.
    pub(super) async fn announce(&mut self) {
        for (why, ids) in std::mem::take(&mut self.stopped) {
            self.events
                .devices_stopped(&self.fleet, self.shard, &why, &ids)
                .await;
        }
        if !self.started.is_empty() {
            let started = std::mem::take(&mut self.started);
            self.events
                .devices_started(&self.fleet, self.shard, &started)
                .await;
        }
    }

    /// Why device `index`, running, is no longer desired.
    fn stop_reason(&self, index: u64) -> &'static str {
        if !self.record.shard_range(self.shard).contains(&index) {
            "scaled down"
        } else if self.record.stopped.contains(&index) {
            "stopped"
        } else {
            "load shape"
        }
    }

    pub(super) async fn update(&mut self, record: Arc<FleetRecord>) {
        let load_changed = record.spec.load != self.record.spec.load
            || record.load_since_ms != self.record.load_since_ms;
        let network_changed = record.spec.network != self.record.spec.network
            || record.network != self.record.network;
        self.record = record;
        if network_changed {
            self.apply_network();
        }
        let width = self.record.shard_range(self.shard).count();
        if width > self.slots.len() {
            self.slots.resize_with(width, || None);
        }
        if load_changed {
            // Time-driven devices leave the scheduled-rate gauge; the new pace re-adds it.
            if self.pace.is_none() {
                let milli = self.clock_rate_milli();
                self.metrics.scheduled_milli_per_s.fetch_sub(milli, Relaxed);
            }
            self.reset_pace();
            if self.pace.is_none() {
                let milli = self.clock_rate_milli();
                self.metrics.scheduled_milli_per_s.fetch_add(milli, Relaxed);
            }
            self.reschedule_all();
        }
        self.sync_devices().await;
    }

    /// Stops the devices that should not run (highest index first) and starts the ones
    /// that should.
    pub(super) async fn sync_devices(&mut self) {
        let base = self.base();
        let desired = self.desired();
        let mut changed = false;
        for at in (0..self.slots.len()).rev() {
            let index = base + at as u64;
            if self.slots[at].is_some() && !desired.contains(&index) {
                let why = self.stop_reason(index);
                self.stop_device(at, why).await;
                changed = true;
            }
        }
        for index in desired {
            if self
                .slot_of(index)
                .is_some_and(|at| self.slots[at].is_none())
            {
                self.start_device(index).await;
                changed = true;
            }
        }
        if changed {
            self.flush().await;
            self.announce().await;
        }
    }
}
