//! What the dashboard shows at one moment, built once a second from the three buckets and
//! the heartbeats with the same code as `status` and `watch`.

use std::collections::BTreeMap;

use pluribus_common::messages::Heartbeat;
use pluribus_common::record::FleetRecord;
use serde::Serialize;

use super::latency::{self, Beats};
use crate::connections::{self, Connections};
use crate::figures::{tabulate, Figures, WATCH};
use crate::state::{fleet_status, AgentRow, FleetStatus, LeaseMap};

/// One agent: its `status` row and its `watch` rates.
#[derive(Debug, Clone, Serialize)]
pub struct AgentView {
    /// As `status --json` shows it.
    #[serde(flatten)]
    pub row: AgentRow,
    /// Messages per second it sends.
    pub msgs_per_s: f64,
    /// Messages per second its schedules ask for.
    pub scheduled_per_s: f64,
}

/// One fleet: its `status` entry, its sink, and its `watch` figures.
#[derive(Debug, Clone, Serialize)]
pub struct FleetView {
    /// As `status --json` shows it.
    #[serde(flatten)]
    pub status: FleetStatus,
    /// The sink type.
    pub sink: String,
    /// Rates, errors and latency percentiles (none while no agent runs it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub figures: Option<Figures>,
    /// Connection figures, for fleets whose devices hold connections or get responses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<Connections>,
    /// Faults its network impairments injected, totals of the live agents.
    pub injected: Injected,
}

/// Faults the agents' network impairments injected (totals since each agent started, from
/// their heartbeats): what the charts turn into rates, so that a user can tell the faults
/// Pluribus caused from the system's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Injected {
    /// Messages dropped on purpose (loss, full queues, offline devices' lost buffers).
    pub dropped: u64,
    /// Messages sent twice on purpose.
    pub duplicated: u64,
    /// Messages delayed on purpose (latency, bandwidth caps).
    pub delayed: u64,
    /// Messages reordered or corrupted on purpose.
    pub mangled: u64,
    /// Devices offline now (partitions started minus ended).
    pub offline: u64,
}

impl Injected {
    fn add(&mut self, n: &pluribus_common::messages::NetworkCounters) {
        self.dropped += n.dropped + n.buffer_dropped;
        self.duplicated += n.duplicated;
        self.delayed += n.delayed;
        self.mangled += n.reordered + n.corrupted;
        self.offline += n.partitions_started.saturating_sub(n.partitions_ended);
    }

    fn merge(&mut self, o: &Injected) {
        self.dropped += o.dropped;
        self.duplicated += o.duplicated;
        self.delayed += o.delayed;
        self.mangled += o.mangled;
        self.offline += o.offline;
    }
}

/// Everything at one moment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Model {
    /// When (Unix ms).
    pub ts_ms: u64,
    /// Every known agent, live first, by name.
    pub agents: Vec<AgentView>,
    /// Every fleet, by name.
    pub fleets: Vec<FleetView>,
    /// Every fleet together.
    pub total: Figures,
    /// Every fleet's connections together.
    pub connections: Connections,
    /// Every fleet's injected faults together.
    pub injected: Injected,
}

/// The desired state the dashboard follows.
#[derive(Debug, Default)]
pub struct Desired {
    /// Fleet records by name.
    pub fleets: BTreeMap<String, FleetRecord>,
    /// Live leases by fleet and shard.
    pub leases: BTreeMap<String, LeaseMap>,
    /// The agents with an epoch record (`None` until one is seen): as in `status`, an agent
    /// without one is not alive, whatever its last heartbeat says (see
    /// `pluribus_client::state::State::epochs`).
    pub epochs: Option<std::collections::BTreeSet<String>>,
}

impl Desired {
    /// True when the agent of `id` has an epoch record, or none is known yet.
    fn has_epoch(&self, id: &str) -> bool {
        self.epochs.as_ref().is_none_or(|e| e.contains(id))
    }
}

/// Puts the latency percentiles into the figures computed from heartbeats without
/// histograms: merged from the agents' sparse histograms (cumulative since each agent
/// started, as `watch` shows them), per fleet and for the cluster.
fn add_latency(
    beats: &Beats,
    now_ms: u64,
    figures: &mut BTreeMap<String, Figures>,
    conns: &mut BTreeMap<String, Connections>,
    total: &mut Figures,
) {
    let live = beats.live_latency(now_ms);
    for (fleet, all) in &live {
        let lag = latency::merged(all, |l| l.lag.as_ref());
        let ack = latency::merged(all, |l| l.ack.as_ref());
        if let Some(f) = figures.get_mut(*fleet) {
            f.tick_lag_us = lag;
            f.ack_latency_us = ack;
            if let Some(n) = f.network.as_mut() {
                n.added_delay_us = latency::merged(all, |l| l.delay.as_ref());
            }
        }
        if let Some(q) = ack {
            conns
                .entry((*fleet).to_string())
                .or_default()
                .ack_latency_us = Some([q.p50, q.p90, q.p99, q.max]);
        }
    }
    let every: Vec<&latency::FleetLatency> = live.values().flatten().copied().collect();
    total.tick_lag_us = latency::merged(&every, |l| l.lag.as_ref());
    total.ack_latency_us = latency::merged(&every, |l| l.ack.as_ref());
}

/// The model at `now_ms`.
pub fn build(all: &Beats, desired: &Desired, now_ms: u64) -> Model {
    let beats = &all.counters;
    let mut spans = beats.live_spans(now_ms);
    spans.retain(|s| desired.has_epoch(&s.latest.id));
    let live: Vec<&Heartbeat> = spans.iter().map(|s| s.latest).collect();
    let mut table = tabulate(&spans, None, WATCH);
    let mut conns = connections::merge(&live, None);
    let mut figures: BTreeMap<String, Figures> = table
        .fleets
        .into_iter()
        .map(|f| (f.name, f.figures))
        .collect();
    add_latency(all, now_ms, &mut figures, &mut conns, &mut table.total);
    let total_connections = sum(conns.values().cloned());
    let mut injected: BTreeMap<&str, Injected> = BTreeMap::new();
    for h in &live {
        for (name, c) in &h.fleets {
            if let Some(n) = &c.network {
                injected.entry(name.as_str()).or_default().add(n);
            }
        }
    }
    let mut all_injected = Injected::default();
    for i in injected.values() {
        all_injected.merge(i);
    }
    let empty = LeaseMap::new();
    let fleets: Vec<FleetView> = desired
        .fleets
        .values()
        .map(|r| FleetView {
            status: fleet_status(r, desired.leases.get(r.name()).unwrap_or(&empty), &live),
            sink: r.spec.sink.kind.clone(),
            figures: figures.remove(r.name()),
            connections: conns.remove(r.name()),
            injected: injected.get(r.name()).copied().unwrap_or_default(),
        })
        .collect();
    let rates: BTreeMap<&str, &Figures> = table
        .agents
        .iter()
        .map(|a| (a.id.as_str(), &a.figures))
        .collect();
    let mut agents: Vec<AgentView> = beats
        .agents
        .values()
        .map(|b| {
            let mut row = AgentRow::new(&b.latest, now_ms);
            row.alive &= desired.has_epoch(&row.id);
            // Devices from the leases, which change at once (as `status` does).
            if row.alive {
                row.devices = fleets
                    .iter()
                    .flat_map(|f| f.status.agents.iter())
                    .filter(|s| s.agent_id == row.id)
                    .map(|s| s.devices)
                    .sum();
            }
            let f = rates.get(row.id.as_str());
            AgentView {
                msgs_per_s: f.map_or(0.0, |f| f.msgs_per_s),
                scheduled_per_s: f.map_or(0.0, |f| f.scheduled_per_s),
                row,
            }
        })
        .collect();
    agents.sort_by(|a, b| {
        (!a.row.alive, &a.row.name, &a.row.id).cmp(&(!b.row.alive, &b.row.name, &b.row.id))
    });
    Model {
        ts_ms: now_ms,
        agents,
        fleets,
        total: table.total,
        connections: total_connections,
        injected: all_injected,
    }
}

/// The connection figures of several fleets together (latency percentiles left out: they
/// do not add up).
fn sum(all: impl Iterator<Item = Connections>) -> Connections {
    let mut t = Connections::default();
    for c in all {
        t.connected += c.connected;
        t.connecting += c.connecting;
        t.disconnects += c.disconnects;
        t.reconnects += c.reconnects;
        t.published += c.published;
        t.publish_failed += c.publish_failed;
        t.commands += c.commands;
        for (k, v) in c.connect_failures {
            *t.connect_failures.entry(k).or_default() += v;
        }
        for (k, v) in c.responses {
            *t.responses.entry(k).or_default() += v;
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::fixtures::hb;
    use pluribus_common::hist::Hist;
    use pluribus_common::messages::{FleetCounters, LeaseRecord};
    use pluribus_common::record::RecordKind;
    use pluribus_common::spec::FleetSpec;
    use std::time::Duration;

    #[test]
    fn fleets_and_agents_come_with_their_figures() {
        let mut beats = Beats::default();
        let mut a = hb("a", 3, None);
        let mut lag = Hist::new();
        (1..=100).for_each(|v| lag.record(v));
        let mut ack = Hist::new();
        ack.record(5_000);
        let c = FleetCounters {
            devices: 3,
            messages: 30,
            achieved_per_s: 3.0,
            scheduled_per_s: 3.0,
            connect_failures: [("refused".to_string(), 2)].into(),
            tick_lag_us: Some(lag.clone()),
            ack_latency_us: Some(ack.clone()),
            ..Default::default()
        };
        a.fleets.insert("f".into(), c);
        let mut b = hb("b", 1, None);
        let mut lag_b = Hist::new();
        lag_b.record(1_000_000);
        b.fleets.insert(
            "f".into(),
            FleetCounters {
                devices: 1,
                tick_lag_us: Some(lag_b.clone()),
                ..Default::default()
            },
        );
        beats.insert("a".into(), a);
        beats.insert("b".into(), b);
        let mut desired = Desired::default();
        let record = FleetRecord::new(
            RecordKind::Fleet,
            FleetSpec::counted("f", 3),
            0,
            Duration::ZERO,
        );
        desired.fleets.insert("f".into(), record);
        let lease = LeaseRecord {
            v: 1,
            agent_id: "a".into(),
            agent_name: "n-a".into(),
            devices: 3,
            generation: 1,
            since_ms: 1,
            epoch: 0,
        };
        desired
            .leases
            .insert("f".into(), [(0u32, lease)].into_iter().collect());
        let m = build(&beats, &desired, 100_500);
        assert_eq!(m.fleets[0].status.running, 3);
        assert_eq!(
            m.fleets[0].figures.as_ref().map(|f| f.msgs_per_s),
            Some(3.0)
        );
        assert_eq!(m.agents[0].row.devices, 3);
        assert_eq!(m.agents[0].msgs_per_s, 3.0);
        assert_eq!(m.total.msgs_per_s, 3.0);
        assert_eq!(m.connections.connect_failures["refused"], 2);
        // Percentiles of both agents' histograms merged, as `watch` computes them.
        lag.merge(&lag_b);
        let q = crate::figures::Quantiles::of(&lag);
        let f = m.fleets[0].figures.as_ref().expect("figures");
        assert_eq!(f.tick_lag_us, q);
        assert_eq!(f.tick_lag_us.map(|q| q.max), Some(lag_b.max()));
        assert_eq!(m.total.tick_lag_us, q);
        assert_eq!(f.ack_latency_us, crate::figures::Quantiles::of(&ack));
        let acks = m.fleets[0]
            .connections
            .as_ref()
            .and_then(|c| c.ack_latency_us);
        assert_eq!(acks.map(|a| a[3]), Some(ack.max()));

        // b's epoch record is gone (killed a TTL ago; its heartbeat still looks fresh): it
        // is not alive, and nothing of it is counted.
        desired.epochs = Some(["a".to_string()].into());
        let m = build(&beats, &desired, 100_500);
        let alive: Vec<(&str, bool)> = m
            .agents
            .iter()
            .map(|a| (a.row.id.as_str(), a.row.alive))
            .collect();
        assert_eq!(alive, [("a", true), ("b", false)]);
        assert_eq!(m.fleets[0].status.running, 3);
    }
}
