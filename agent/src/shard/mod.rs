//! The shard runner: one tokio task runs every device of one shard.
//!
//! Devices are slots in a vector and a binary heap orders their next due times. The task
//! sleeps until the earliest slot, then sends every slot that is due in one batch and
//! flushes the sinks once. A late slot is sent as soon as the task gets to it, with its
//! scheduled time in the payload; no slot is skipped while the shard runs.

pub mod schedule;
mod shape;

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pluribus_common::record::FleetRecord;
use pluribus_common::spec::{SinkSpec, Template};
use pluribus_common::time::now_ms;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::device::{DeviceCtx, DeviceType, Tick, VirtualDevice};
use crate::metrics::FleetMetrics;
use crate::registry::Registry;
use crate::sink::{Inbound, Sink, SinkContext, SinkDevice};
use schedule::Schedule;
use shape::{phase_of, position_key, PaceState, LOAD_TICK};

/// Most slots sent in one batch before the task looks at its control channel again.
const MAX_BATCH: usize = 4096;
/// How long stopping a shard (on_stop messages included) may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Thousandths of a message per second for one device at `interval_ms`.
fn milli_rate(interval_ms: u64) -> u64 {
    1_000_000 / interval_ms.max(1)
}

/// Microseconds since the Unix epoch.
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The answer to a device command.
pub type CommandReply = Result<Option<Vec<u8>>, String>;

/// Messages to a running shard.
#[derive(Debug)]
pub enum ShardCtl {
    /// The fleet record changed (scale, stop of one device): add and remove devices.
    Update(Arc<FleetRecord>),
    /// A command for one device.
    Command {
        /// Device id.
        device_id: String,
        /// Command payload.
        payload: Bytes,
        /// Where the answer goes.
        reply: oneshot::Sender<CommandReply>,
    },
}

/// A running shard.
#[derive(Debug)]
pub struct ShardHandle {
    /// Control channel.
    pub tx: mpsc::UnboundedSender<ShardCtl>,
    /// Cancels the shard (devices run on_stop).
    pub token: CancellationToken,
    /// Ends when the shard has stopped.
    pub done: tokio::task::JoinHandle<()>,
}

impl ShardHandle {
    /// Stops the shard and waits until its devices ran on_stop.
    pub async fn stop(self) {
        self.token.cancel();
        let _ = tokio::time::timeout(STOP_TIMEOUT + Duration::from_secs(1), self.done).await;
    }
}

struct Kind {
    registered: String,
    options: serde_json::Value,
    shown: String,
    ty: Arc<dyn DeviceType>,
}

struct Slot {
    id: Box<str>,
    dev: Box<dyn VirtualDevice>,
    sched: Schedule,
    seq: u64,
    gen: u32,
    kind: u16,
    sink: u16,
}

/// A shard ready to run: types resolved and sinks made.
pub struct Prepared {
    runner: Runner,
}

struct Runner {
    fleet: Arc<str>,
    record: Arc<FleetRecord>,
    shard: u32,
    ids: Option<Template>,
    /// Device types in this shard: (registered name, options, name shown, the type).
    kinds: Vec<Kind>,
    sinks: Vec<(SinkSpec, Box<dyn Sink>)>,
    slots: Vec<Option<Slot>>,
    heap: BinaryHeap<Reverse<(u64, u32, u32)>>,
    gen: u32,
    running: u64,
    metrics: Arc<FleetMetrics>,
    buf: Vec<u8>,
    seed: u64,
    inbound: mpsc::UnboundedReceiver<Inbound>,
    /// Set when the fleet has a fleet-wide rate: slots follow Φ instead of the clock, and
    /// heap keys are positions in thousandths of a slot instead of due times in ms.
    pace: Option<PaceState>,
    /// Lateness of the slots sent since the last merge into `metrics`.
    /// Lateness (µs) of the slots of the current batch; recorded into the fleet's shared
    /// histogram once per batch. A histogram per shard would cost ~190 KB each.
    lag: Vec<u64>,
}

/// Resolves the device and sink types of a shard. Fails, with the reason, when this
/// agent cannot run it (unknown type, bad options, a sink that cannot be made).
pub fn prepare(
    record: Arc<FleetRecord>,
    shard: u32,
    registry: &Registry,
    nats: &async_nats::Client,
    metrics: Arc<FleetMetrics>,
) -> Result<Prepared, String> {
    let (inbound_tx, inbound_rx) = mpsc::unbounded_channel();
    let sink_ctx = &SinkContext {
        nats: nats.clone(),
        metrics: metrics.clone(),
        inbound: inbound_tx,
    };
    let ids = if record.spec.count.is_some() {
        Some(record.spec.id_template().map_err(|e| e.to_string())?)
    } else {
        None
    };
    let mut kinds: Vec<Kind> = Vec::new();
    let mut sinks: Vec<(SinkSpec, Box<dyn Sink>)> = Vec::new();
    for index in record.shard_range(shard) {
        let d = record.resolve(index, ids.as_ref());
        if !kinds
            .iter()
            .any(|k| k.registered == d.kind && &k.options == d.options)
        {
            let f = registry.device(d.kind).ok_or_else(|| {
                format!(
                    "unknown device type '{}' (this agent knows {:?})",
                    d.kind,
                    registry.device_types()
                )
            })?;
            let ty = f.build(d.options)?;
            let shown = ty.name().unwrap_or(d.kind).to_string();
            kinds.push(Kind {
                registered: d.kind.to_string(),
                options: d.options.clone(),
                shown,
                ty,
            });
        }
        if !sinks.iter().any(|(s, _)| s == d.sink) {
            let f = registry.sink(&d.sink.kind).ok_or_else(|| {
                format!(
                    "unknown sink type '{}' (this agent knows {:?})",
                    d.sink.kind,
                    registry.sink_types()
                )
            })?;
            sinks.push((
                d.sink.clone(),
                f.create(d.sink, sink_ctx).map_err(|e| e.to_string())?,
            ));
        }
    }
    let width = record.shard_range(shard).count();
    let record_seed = record.spec.seed.unwrap_or(0);
    Ok(Prepared {
        runner: Runner {
            fleet: Arc::from(record.name()),
            record,
            shard,
            ids,
            kinds,
            sinks,
            slots: (0..width).map(|_| None).collect(),
            heap: BinaryHeap::new(),
            gen: 0,
            running: 0,
            metrics,
            buf: Vec::with_capacity(512),
            seed: record_seed,
            inbound: inbound_rx,
            pace: None,
            lag: Vec::new(),
        },
    })
}

impl Prepared {
    /// Starts the shard's task.
    pub fn spawn(self, token: CancellationToken, tracker: &TaskTracker) -> ShardHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        let t = token.clone();
        let done = tracker.spawn(async move { self.runner.run(t, rx).await });
        ShardHandle { tx, token, done }
    }
}

impl Runner {
    fn base(&self) -> u64 {
        self.record.shard_range(self.shard).start
    }

    /// Devices that should run now: in the shard, not stopped, and active under the
    /// fleet's arrival shape.
    fn desired(&self) -> BTreeSet<u64> {
        let active = self.record.active_at(now_ms());
        self.record
            .shard_range(self.shard)
            .filter(|i| *i < active && !self.record.stopped.contains(i))
            .collect()
    }

    async fn run(mut self, token: CancellationToken, mut rx: mpsc::UnboundedReceiver<ShardCtl>) {
        self.reset_pace();
        self.sync_devices().await;
        let mut load_tick = tokio::time::interval(LOAD_TICK);
        load_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wait = match self.heap.peek().copied() {
                Some(Reverse((key, _, _))) => self.wait_for(key),
                None => Duration::from_secs(3600),
            };
            let shaped = self.record.spec.load.is_some();
            tokio::select! {
                biased;
                _ = token.cancelled() => break,
                _ = load_tick.tick(), if shaped => self.load_tick().await,
                ctl = rx.recv() => match ctl {
                    Some(ShardCtl::Update(record)) => self.update(record).await,
                    Some(ShardCtl::Command { device_id, payload, reply }) => {
                        let _ = reply.send(self.command(&device_id, &payload));
                    }
                    None => break,
                },
                Some(msg) = self.inbound.recv() => self.inbound_command(msg).await,
                _ = tokio::time::sleep(wait) => {
                    // A sink may block (NATS down): stay cancellable while sending.
                    tokio::select! {
                        _ = token.cancelled() => break,
                        _ = self.run_due() => {}
                    }
                }
            }
        }
        let _ = tokio::time::timeout(STOP_TIMEOUT, self.stop_all()).await;
        self.metrics.devices.fetch_sub(self.running, Relaxed);
        self.running = 0;
    }

    fn slot_of(&self, index: u64) -> Option<usize> {
        let base = self.base();
        (index >= base && ((index - base) as usize) < self.slots.len())
            .then(|| (index - base) as usize)
    }

    async fn start_device(&mut self, index: u64) {
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
        }
        let now = now_ms();
        self.buf.clear();
        dev.on_start(&ctx, now, &mut self.buf);
        if !self.buf.is_empty() {
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

    async fn stop_device(&mut self, at: usize) {
        let Some(mut slot) = self.slots[at].take() else {
            return;
        };
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
        if !self.buf.is_empty() {
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

    async fn stop_all(&mut self) {
        for at in 0..self.slots.len() {
            self.stop_device(at).await;
        }
        self.flush().await;
    }

    async fn update(&mut self, record: Arc<FleetRecord>) {
        let load_changed = record.spec.load != self.record.spec.load
            || record.load_since_ms != self.record.load_since_ms;
        self.record = record;
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
    async fn sync_devices(&mut self) {
        let base = self.base();
        let desired = self.desired();
        let mut changed = false;
        for at in (0..self.slots.len()).rev() {
            if self.slots[at].is_some() && !desired.contains(&(base + at as u64)) {
                self.stop_device(at).await;
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
        }
    }

    fn command(&mut self, device_id: &str, payload: &[u8]) -> CommandReply {
        let index = self
            .record
            .index_of(device_id)
            .ok_or_else(|| format!("no device {device_id} in fleet {}", self.fleet))?;
        self.command_at(index, payload)
    }

    /// A command that came in through the device's sink; the reply goes back the same way.
    async fn inbound_command(&mut self, msg: Inbound) {
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

    fn command_at(&mut self, index: u64, payload: &[u8]) -> CommandReply {
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

    async fn run_due(&mut self) {
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
        self.flush().await;
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

    async fn flush(&mut self) {
        for (_, s) in &mut self.sinks {
            if let Err(e) = s.flush().await {
                self.metrics.errors.fetch_add(1, Relaxed);
                tracing::debug!(error = %e, "sink flush failed");
            }
        }
    }
}
