//! Per-fleet metrics of one agent. Shard runners and sinks add to them (runners once per
//! batch); the heartbeat reads a snapshot. Histograms are cumulative and shipped whole, so
//! readers can merge agents exactly. The heartbeat's snapshot also judges each fleet's
//! achieved rate and saturation ([`crate::saturation`]); the Prometheus exporter reads the
//! same counters without judging ([`Metrics::counters`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use pluribus_common::hist::Hist;
use pluribus_common::messages::{
    FleetCounters, NetworkCounters, MAX_COHORT_KEYS, NO_COHORT, OTHER_COHORTS,
};

use crate::saturation::{RateTracker, Reading};

/// Metrics of one fleet on this agent.
#[derive(Debug, Default)]
pub struct FleetMetrics {
    /// Devices running now.
    pub devices: AtomicU64,
    /// Messages sent.
    pub messages: AtomicU64,
    /// Payload bytes sent.
    pub bytes: AtomicU64,
    /// Send errors.
    pub errors: AtomicU64,
    /// Scheduled messages per second, in thousandths (a gauge kept by the runners).
    pub scheduled_milli_per_s: AtomicU64,
    /// Devices with a live connection.
    pub connected: AtomicU64,
    /// Devices connecting.
    pub connecting: AtomicU64,
    /// Connections lost.
    pub disconnects: AtomicU64,
    /// Connections made again after a loss.
    pub reconnects: AtomicU64,
    /// Failed publishes.
    pub publish_failed: AtomicU64,
    /// Commands received.
    pub commands: AtomicU64,
    /// Commands refused because their queue was full.
    pub commands_refused: AtomicU64,
    /// Messages received by subscriber devices.
    pub received: AtomicU64,
    /// Faults injected by the network impairments, per cohort.
    pub net: NetCohorts,
    connect_failures: Mutex<BTreeMap<String, u64>>,
    responses: Mutex<BTreeMap<String, u64>>,
    // Histograms are made on first use: each costs ~190 KB, and a fleet of one device
    // (`pluribusctl deploy`) should not pay for ones it never fills.
    tick_lag_us: Mutex<Option<Hist>>,
    ack_latency_us: Mutex<Option<Hist>>,
    receive_latency_us: Mutex<Option<Hist>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FleetMetrics {
    /// Counts a failed connection attempt.
    pub fn connect_failed(&self, reason: &str) {
        *lock(&self.connect_failures)
            .entry(reason.to_string())
            .or_default() += 1;
    }

    /// Counts a response by class (e.g. "2xx").
    pub fn response(&self, class: &str) {
        *lock(&self.responses).entry(class.to_string()).or_default() += 1;
    }

    /// Records a batch of tick lateness values (µs).
    pub fn add_tick_lags(&self, values: &[u64]) {
        let mut h = lock(&self.tick_lag_us);
        let h = h.get_or_insert_with(Hist::new);
        for v in values {
            h.record(*v);
        }
    }

    /// Records one acknowledgement latency.
    pub fn ack_latency(&self, us: u64) {
        lock(&self.ack_latency_us)
            .get_or_insert_with(Hist::new)
            .record(us);
    }

    /// Adds a batch of acknowledgement latencies.
    pub fn add_ack_latency(&self, h: &Hist) {
        lock(&self.ack_latency_us)
            .get_or_insert_with(Hist::new)
            .merge(h);
    }

    /// Counts one message received by a subscriber device, `latency_us` after it was sent
    /// (when the payload said when).
    pub fn received(&self, latency_us: Option<u64>) {
        self.received.fetch_add(1, Relaxed);
        if let Some(us) = latency_us {
            lock(&self.receive_latency_us)
                .get_or_insert_with(Hist::new)
                .record(us);
        }
    }

    fn reading(&self) -> Reading {
        Reading {
            devices: self.devices.load(Relaxed),
            scheduled_milli: self.scheduled_milli_per_s.load(Relaxed),
            messages: self.messages.load(Relaxed),
            errors: self.errors.load(Relaxed),
        }
    }

    fn snapshot(&self) -> FleetCounters {
        let (network, network_cohorts) = self.net.snapshot();
        let hist = |m: &Mutex<Option<Hist>>| lock(m).as_ref().filter(|h| h.count() > 0).cloned();
        FleetCounters {
            devices: self.devices.load(Relaxed),
            messages: self.messages.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            errors: self.errors.load(Relaxed),
            scheduled_per_s: self.scheduled_milli_per_s.load(Relaxed) as f64 / 1000.0,
            achieved_per_s: 0.0,
            saturated: false,
            tick_lag_us: hist(&self.tick_lag_us),
            connected: self.connected.load(Relaxed),
            connecting: self.connecting.load(Relaxed),
            connect_failures: lock(&self.connect_failures).clone(),
            disconnects: self.disconnects.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            publish_failed: self.publish_failed.load(Relaxed),
            commands: self.commands.load(Relaxed),
            commands_refused: self.commands_refused.load(Relaxed),
            ack_latency_us: hist(&self.ack_latency_us),
            responses: lock(&self.responses).clone(),
            received: self.received.load(Relaxed),
            receive_latency_us: hist(&self.receive_latency_us),
            network,
            network_cohorts,
        }
    }
}

/// Faults injected by a fleet's network impairments on this agent, per cohort (see
/// [`FleetCounters::network_cohorts`]): at most [`MAX_COHORT_KEYS`] sets of counters, the
/// rest counted under [`OTHER_COHORTS`].
#[derive(Debug, Default)]
pub struct NetCohorts(Mutex<BTreeMap<String, Arc<NetMetrics>>>);

impl NetCohorts {
    /// The counters of `cohort` (`None`: devices in no cohort), made on first use.
    pub fn cohort(&self, cohort: Option<&str>) -> Arc<NetMetrics> {
        let key = cohort.unwrap_or(NO_COHORT);
        let mut m = lock(&self.0);
        if let Some(c) = m.get(key) {
            return c.clone();
        }
        let named = m
            .keys()
            .filter(|k| *k != NO_COHORT && *k != OTHER_COHORTS)
            .count();
        let key = if key != NO_COHORT && named + 2 >= MAX_COHORT_KEYS {
            OTHER_COHORTS
        } else {
            key
        };
        m.entry(key.to_string()).or_default().clone()
    }

    /// The fleet's total and its cohorts' counters (those that injected anything).
    fn snapshot(&self) -> (Option<NetworkCounters>, BTreeMap<String, NetworkCounters>) {
        let cohorts: BTreeMap<String, NetworkCounters> = lock(&self.0)
            .iter()
            .filter_map(|(k, v)| v.snapshot().map(|c| (k.clone(), c)))
            .collect();
        let total = cohorts
            .values()
            .fold(None, |acc: Option<NetworkCounters>, c| {
                let mut t = acc.unwrap_or_default();
                t.merge(c);
                Some(t)
            });
        (total, cohorts)
    }
}

/// Faults injected by a fleet's network impairments on this agent, into one cohort.
#[derive(Debug, Default)]
pub struct NetMetrics {
    /// Messages dropped.
    pub dropped: AtomicU64,
    /// Messages sent twice.
    pub duplicated: AtomicU64,
    /// Messages delayed.
    pub delayed: AtomicU64,
    /// Messages held back behind later ones.
    pub reordered: AtomicU64,
    /// Payloads mangled.
    pub corrupted: AtomicU64,
    /// Messages that waited for the bandwidth cap.
    pub throttled: AtomicU64,
    /// Messages kept by offline devices.
    pub buffered: AtomicU64,
    /// Buffered messages sent when their device came back.
    pub flushed: AtomicU64,
    /// Messages an offline device lost (full buffer, or stopped while offline).
    pub buffer_dropped: AtomicU64,
    /// Devices that went offline.
    pub partitions_started: AtomicU64,
    /// Devices that came back.
    pub partitions_ended: AtomicU64,
    /// Device connections closed or stalled by the network layer.
    pub disconnects: AtomicU64,
    added_delay_us: Mutex<Option<Hist>>,
}

impl NetMetrics {
    /// Records a batch of added delays (µs).
    pub fn add_delays(&self, values: &[u64]) {
        let mut h = lock(&self.added_delay_us);
        let h = h.get_or_insert_with(Hist::new);
        for v in values {
            h.record(*v);
        }
    }

    /// The counters, or `None` if nothing was ever injected.
    fn snapshot(&self) -> Option<NetworkCounters> {
        let c = NetworkCounters {
            dropped: self.dropped.load(Relaxed),
            duplicated: self.duplicated.load(Relaxed),
            delayed: self.delayed.load(Relaxed),
            reordered: self.reordered.load(Relaxed),
            corrupted: self.corrupted.load(Relaxed),
            throttled: self.throttled.load(Relaxed),
            buffered: self.buffered.load(Relaxed),
            flushed: self.flushed.load(Relaxed),
            buffer_dropped: self.buffer_dropped.load(Relaxed),
            partitions_started: self.partitions_started.load(Relaxed),
            partitions_ended: self.partitions_ended.load(Relaxed),
            disconnects: self.disconnects.load(Relaxed),
            added_delay_us: lock(&self.added_delay_us)
                .as_ref()
                .filter(|h| h.count() > 0)
                .cloned(),
        };
        (c != NetworkCounters::default()).then_some(c)
    }
}

/// All fleets' metrics. Cheap to clone: clones share the same counters.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    fleets: Arc<Mutex<BTreeMap<String, Arc<FleetMetrics>>>>,
    rates: Arc<Mutex<BTreeMap<String, RateTracker>>>,
}

impl Metrics {
    /// The metrics of `fleet`, created on first use.
    pub fn fleet(&self, fleet: &str) -> Arc<FleetMetrics> {
        lock(&self.fleets)
            .entry(fleet.to_string())
            .or_default()
            .clone()
    }

    /// A snapshot for the heartbeat, with each fleet's achieved rate and saturation over
    /// the interval since the previous snapshot. A fleet no runner uses any more is reported
    /// once more (with zero devices) and then dropped.
    pub fn snapshot(&self) -> BTreeMap<String, FleetCounters> {
        let now = Instant::now();
        let mut m = lock(&self.fleets);
        let mut rates = lock(&self.rates);
        let out: BTreeMap<_, _> = m
            .iter()
            .map(|(k, v)| {
                let verdict = rates
                    .entry(k.clone())
                    .or_default()
                    .observe(now, v.reading());
                let mut c = v.snapshot();
                c.achieved_per_s = verdict.achieved_per_s;
                c.saturated = verdict.saturated;
                (k.clone(), c)
            })
            .collect();
        m.retain(|_, v| v.devices.load(Relaxed) > 0 || Arc::strong_count(v) > 1);
        rates.retain(|k, _| m.contains_key(k));
        out
    }

    /// The counters now, with the achieved rate and saturation of the last snapshot; judges
    /// nothing and drops nothing (for readers other than the heartbeat).
    pub fn counters(&self) -> BTreeMap<String, FleetCounters> {
        let m = lock(&self.fleets);
        let rates = lock(&self.rates);
        m.iter()
            .map(|(k, v)| {
                let mut c = v.snapshot();
                if let Some(r) = rates.get(k) {
                    c.achieved_per_s = r.last().achieved_per_s;
                    c.saturated = r.last().saturated;
                }
                (k.clone(), c)
            })
            .collect()
    }

    /// Devices running on this agent.
    pub fn devices(&self) -> u64 {
        lock(&self.fleets)
            .values()
            .map(|v| v.devices.load(Relaxed))
            .sum()
    }
}
