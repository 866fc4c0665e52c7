//! The shard runner: one tokio task runs every device of one shard.
//!
//! Devices are slots in a vector and a binary heap orders their next due times. The task
//! sleeps until the earliest slot, then sends every slot that is due in one batch and
//! flushes the sinks once. A late slot is sent as soon as the task gets to it, with its
//! scheduled time in the payload; no slot is skipped while the shard runs.

mod commands;
mod lifecycle;
pub mod schedule;
mod shape;
mod tick;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use pluribus_common::record::FleetRecord;
use pluribus_common::spec::{SinkSpec, Template};
use pluribus_common::time::now_ms;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::device::{DeviceType, VirtualDevice};
use crate::events::Events;
use crate::fence::Fence;
use crate::metrics::FleetMetrics;
use crate::network::{Impaired, NetContext};
use crate::registry::Registry;
use crate::sink::{Inbound, SinkContext};
use schedule::Schedule;
use shape::{PaceState, LOAD_TICK};

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
    pluribus_common::time::now_us()
}

/// `wait` stretched to end on the next multiple of `grid_ms` of the Unix clock (unchanged
/// when it is zero: what is due now goes now). Every shard rounds to the same instants, so
/// the runtime wakes once per step for all of them.
fn on_grid(wait: Duration, grid_ms: u64) -> Duration {
    if wait.is_zero() || grid_ms <= 1 {
        return wait;
    }
    let now = now_us();
    let end = now + wait.as_micros() as u64;
    let step = grid_ms * 1000;
    Duration::from_micros(end.div_ceil(step) * step - now)
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
        /// Its place in the shard's command queue, given back once answered.
        permit: tokio::sync::OwnedSemaphorePermit,
    },
}

/// Device commands queued for one shard at most; more are answered `busy`.
pub const SHARD_COMMANDS: usize = 256;
/// Commands from devices' own connections (MQTT command topics) queued for one shard at
/// most; more are dropped and counted.
pub const INBOUND_QUEUE: usize = 256;

/// A running shard.
#[derive(Debug)]
pub struct ShardHandle {
    /// Control channel.
    pub tx: mpsc::UnboundedSender<ShardCtl>,
    /// Places in the shard's command queue: a command takes one before it is sent on
    /// `tx` (so the unbounded channel holds at most [`SHARD_COMMANDS`] commands).
    pub commands: Arc<tokio::sync::Semaphore>,
    /// Cancels the shard (devices run on_stop).
    pub token: CancellationToken,
    /// Ends when the shard has stopped.
    pub done: tokio::task::JoinHandle<()>,
    /// Why it stops, for the `devices_stopped` event (set before the token is cancelled).
    pub why: Arc<OnceLock<String>>,
}

impl ShardHandle {
    /// Stops the shard and waits until its devices ran on_stop; their `devices_stopped`
    /// event gives `why` ("drain", "fenced", ...).
    pub async fn stop(self, why: &str) {
        let _ = self.why.set(why.to_string());
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
    /// The shard's sinks, each behind the fleet's network impairments (a pass-through
    /// while the fleet has none).
    sinks: Vec<(SinkSpec, Impaired)>,
    /// What the network impairments need besides the fleet's rules.
    net: NetContext,
    /// Devices gone offline / back since the last partition events, and when those went.
    partitions: (u64, u64),
    partitions_at: std::time::Instant,
    slots: Vec<Option<Slot>>,
    heap: BinaryHeap<Reverse<(u64, u32, u32)>>,
    gen: u32,
    running: u64,
    metrics: Arc<FleetMetrics>,
    buf: Vec<u8>,
    seed: u64,
    inbound: mpsc::Receiver<Inbound>,
    /// Set when the fleet has a fleet-wide rate: slots follow Φ instead of the clock, and
    /// heap keys are positions in thousandths of a slot instead of due times in ms.
    pace: Option<PaceState>,
    /// The wake-up grid (ms): the task sleeps until a multiple of it, so that shards due in
    /// the same step wake together and send in one burst.
    grid_ms: u64,
    /// Lateness (µs) of the slots of the current batch; recorded into the fleet's shared
    /// histogram once per batch. A histogram per shard would cost ~190 KB each.
    lag: Vec<u64>,
    /// The agent's events.
    events: Events,
    /// Nothing is sent once this has passed (the agent's liveness is not confirmed).
    fence: Fence,
    /// Devices started / stopped (with why) since the last `devices_*` events.
    started: Vec<String>,
    stopped: BTreeMap<String, Vec<String>>,
}

/// Resolves the device and sink types of a shard. Fails, with the reason, when this
/// agent cannot run it (unknown type, bad options, a sink that cannot be made).
pub fn prepare(
    record: Arc<FleetRecord>,
    shard: u32,
    registry: &Registry,
    secrets: &crate::secrets::Secrets,
    events: &Events,
    metrics: Arc<FleetMetrics>,
    wake_grid: Duration,
) -> Result<Prepared, String> {
    let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
    let sink_ctx = &SinkContext {
        nats: events.client().clone(),
        metrics: metrics.clone(),
        inbound: inbound_tx,
        events: events.clone(),
        secrets: secrets.clone(),
    };
    let ids = if record.spec.count.is_some() {
        Some(record.spec.id_template().map_err(|e| e.to_string())?)
    } else {
        None
    };
    let mut kinds: Vec<Kind> = Vec::new();
    let mut sinks: Vec<(SinkSpec, Impaired)> = Vec::new();
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
                Impaired::new(f.create(d.sink, sink_ctx).map_err(|e| e.to_string())?),
            ));
        }
    }
    let width = record.shard_range(shard).count();
    let record_seed = record.spec.seed.unwrap_or(0);
    let net = NetContext {
        fleet: Arc::from(record.name()),
        seed: record_seed,
        start_ms: record
            .epochs
            .first()
            .map_or(record.created_ms, |e| e.epoch_ms),
        metrics: metrics.clone(),
    };
    let plan = record.network_plan();
    if !plan.is_off() {
        for (_, s) in &mut sinks {
            s.set_plan(plan.clone(), &net);
        }
    }
    Ok(Prepared {
        runner: Runner {
            fleet: Arc::from(record.name()),
            record,
            shard,
            ids,
            kinds,
            sinks,
            net,
            partitions: (0, 0),
            partitions_at: std::time::Instant::now(),
            slots: (0..width).map(|_| None).collect(),
            heap: BinaryHeap::new(),
            gen: 0,
            running: 0,
            metrics,
            buf: Vec::with_capacity(512),
            seed: record_seed,
            inbound: inbound_rx,
            pace: None,
            grid_ms: (wake_grid.as_millis() as u64).max(1),
            lag: Vec::new(),
            events: events.clone(),
            fence: Fence::open(),
            started: Vec::new(),
            stopped: BTreeMap::new(),
        },
    })
}

impl Prepared {
    /// Starts the shard's task. It sends only while `fence` is open.
    pub fn spawn(
        self,
        token: CancellationToken,
        tracker: &TaskTracker,
        fence: &Fence,
    ) -> ShardHandle {
        self.spawn_after(token, tracker, fence, None)
    }

    /// Starts the shard's task, whose devices start once `after` has fired (the same
    /// shard's previous runner has stopped: a replaced spec), so the caller need not wait.
    pub fn spawn_after(
        mut self,
        token: CancellationToken,
        tracker: &TaskTracker,
        fence: &Fence,
        after: Option<oneshot::Receiver<()>>,
    ) -> ShardHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        let (t, why) = (token.clone(), Arc::new(OnceLock::new()));
        let w = why.clone();
        self.runner.fence = fence.clone();
        let done = tracker.spawn(async move {
            if let Some(after) = after {
                tokio::select! {
                    _ = t.cancelled() => return,
                    _ = after => {}
                }
            }
            self.runner.run(t, rx, w).await
        });
        ShardHandle {
            tx,
            commands: Arc::new(tokio::sync::Semaphore::new(SHARD_COMMANDS)),
            token,
            done,
            why,
        }
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

    async fn run(
        mut self,
        token: CancellationToken,
        mut rx: mpsc::UnboundedReceiver<ShardCtl>,
        why: Arc<OnceLock<String>>,
    ) {
        self.reset_pace();
        self.sync_devices().await;
        let mut load_tick = tokio::time::interval(LOAD_TICK);
        load_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut due_turn_taken = false;
        loop {
            let wait = match self.heap.peek().copied() {
                Some(Reverse((key, _, _))) => on_grid(self.wait_for(key), self.grid_ms),
                None => Duration::from_secs(3600),
            };
            let shaped = self.record.spec.load.is_some();
            // Due telemetry and the other inputs take turns: a batch of due slots, then at
            // most one control message or command. A flood of commands cannot delay
            // telemetry, and a backlog of telemetry cannot starve control messages.
            if wait.is_zero() && !due_turn_taken {
                due_turn_taken = true;
                tokio::select! {
                    _ = token.cancelled() => break,
                    // Delayed messages that are due go first: a device's buffer being
                    // flushed stays ahead of its new messages even when the shard runs late.
                    _ = async { self.release_delayed().await; self.run_due().await } => {}
                }
                continue;
            }
            due_turn_taken = false;
            // One timer for the earlier of the next slot and the next delayed message (one
            // timer per wake-up, not two: they cost the runtime's timer wheel each time).
            let net_due = self.sinks.iter().filter_map(|(_, s)| s.next_due_us()).min();
            let wait = match net_due {
                Some(d) => wait.min(Duration::from_micros(d.saturating_sub(now_us()))),
                None => wait,
            };
            tokio::select! {
                biased;
                _ = token.cancelled() => break,
                _ = load_tick.tick(), if shaped => self.load_tick().await,
                ctl = rx.recv() => match ctl {
                    Some(ShardCtl::Update(record)) => self.update(record).await,
                    Some(ShardCtl::Command { device_id, payload, reply, permit }) => {
                        let _ = reply.send(self.command(&device_id, &payload));
                        drop(permit);
                    }
                    None => break,
                },
                Some(msg) = self.inbound.recv() => self.inbound_command(msg).await,
                // Due slots, or messages the network impairments delayed.
                _ = tokio::time::sleep(wait) => {
                    // A sink may block (NATS down): stay cancellable while sending.
                    tokio::select! {
                        _ = token.cancelled() => break,
                        // Delayed messages due by now go in the same wake-up, first (see
                        // above).
                        _ = async { self.release_delayed().await; self.run_due().await } => {}
                    }
                }
            }
        }
        let why = why.get().map_or("shard stopped", String::as_str);
        let _ = tokio::time::timeout(STOP_TIMEOUT, self.stop_all(why)).await;
        self.metrics.devices.fetch_sub(self.running, Relaxed);
        self.running = 0;
    }

    /// Sends what the network impairments delayed and is due now.
    async fn release_delayed(&mut self) {
        if !self.fence.is_open() {
            return;
        }
        let now = now_us();
        if !self
            .sinks
            .iter()
            .any(|(_, s)| s.next_due_us().is_some_and(|d| d <= now))
        {
            return;
        }
        for (_, s) in &mut self.sinks {
            if let Err(e) = s.release_due(now).await {
                self.metrics.errors.fetch_add(1, Relaxed);
                tracing::debug!(error = %e, "sink flush failed");
            }
        }
    }

    /// Publishes `partition_started`/`partition_ended` for the devices that went offline or
    /// came back, at most once a second per shard.
    pub(crate) async fn partition_events(&mut self) {
        for (_, s) in &mut self.sinks {
            let (gone, back) = s.take_partitions();
            self.partitions.0 += gone;
            self.partitions.1 += back;
        }
        if self.partitions == (0, 0) || self.partitions_at.elapsed() < Duration::from_secs(1) {
            return;
        }
        let (gone, back) = std::mem::take(&mut self.partitions);
        self.partitions_at = std::time::Instant::now();
        if gone > 0 {
            self.events
                .partition(&self.fleet, self.shard, false, gone)
                .await;
        }
        if back > 0 {
            self.events
                .partition(&self.fleet, self.shard, true, back)
                .await;
        }
    }

    /// Applies the record's network rules (file and runtime) to every sink.
    fn apply_network(&mut self) {
        let plan = self.record.network_plan();
        for (_, s) in &mut self.sinks {
            s.set_plan(plan.clone(), &self.net);
        }
    }

    fn slot_of(&self, index: u64) -> Option<usize> {
        let base = self.base();
        (index >= base && ((index - base) as usize) < self.slots.len())
            .then(|| (index - base) as usize)
    }
}

#[cfg(test)]
mod grid_tests {
    use super::*;

    #[test]
    fn a_wait_is_stretched_to_the_grid_and_no_further() {
        assert_eq!(on_grid(Duration::ZERO, 5), Duration::ZERO);
        assert_eq!(
            on_grid(Duration::from_millis(3), 1),
            Duration::from_millis(3)
        );
        for ms in [1, 2, 4, 5, 7, 100] {
            let w = Duration::from_millis(ms);
            let g = on_grid(w, 5);
            assert!(g >= w && g < w + Duration::from_millis(5), "{w:?} -> {g:?}");
        }
    }
}
