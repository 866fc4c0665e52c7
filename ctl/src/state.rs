//! Reading the state from KV (fleets, leases, agents) and what follows from it: devices
//! running per fleet and per agent, and why devices are pending.

use std::collections::BTreeMap;

use anyhow::Result;
use pluribus_common::messages::{Heartbeat, LeaseRecord};
use pluribus_common::record::{FleetRecord, RecordKind};
use pluribus_common::spec::FleetSpec;
use pluribus_common::subjects::parse_lease_key;
use pluribus_common::time::now_ms;
use pluribus_common::wire::decode;
use serde::Serialize;

use crate::cmd::Ctx;
use crate::feed::KvFeed;

/// Leases of one fleet, by shard.
pub type LeaseMap = BTreeMap<u32, LeaseRecord>;

/// Everything in the three buckets at one moment.
#[derive(Debug, Clone)]
pub struct State {
    /// When it was read (Unix ms).
    pub now_ms: u64,
    /// Fleet records by name.
    pub fleets: BTreeMap<String, FleetRecord>,
    /// Live leases by fleet, then shard.
    pub leases: BTreeMap<String, LeaseMap>,
    /// Every agent entry, alive or not, by id.
    pub agents: Vec<Heartbeat>,
}

impl State {
    /// Reads the three buckets.
    pub async fn load(ctx: &Ctx) -> Result<Self> {
        let (fleets, leases, agents) =
            tokio::try_join!(load_fleets(ctx), load_leases(ctx, ">"), load_agents(ctx))?;
        Ok(Self {
            now_ms: now_ms(),
            fleets,
            leases,
            agents,
        })
    }

    /// The agents that are alive now.
    pub fn live_agents(&self) -> Vec<&Heartbeat> {
        live(&self.agents, self.now_ms)
    }

    /// The status of one fleet.
    pub fn fleet_status(&self, record: &FleetRecord) -> FleetStatus {
        let empty = LeaseMap::new();
        let leases = self.leases.get(record.name()).unwrap_or(&empty);
        fleet_status(record, leases, &self.live_agents())
    }
}

/// Every fleet record, by name. Records this build cannot read are skipped with a warning.
pub async fn load_fleets(ctx: &Ctx) -> Result<BTreeMap<String, FleetRecord>> {
    let raw = KvFeed::snapshot(&ctx.conn.client, &ctx.buckets.fleets, ">").await?;
    let mut out = BTreeMap::new();
    for (key, value) in raw {
        match decode::<FleetRecord>(&value) {
            Ok(r) => {
                out.insert(key, r);
            }
            Err(e) => tracing::warn!("skipping fleet {key}: {e}"),
        }
    }
    Ok(out)
}

/// Live leases matching `filter` (`>` or `<fleet>.*`), by fleet and shard.
pub async fn load_leases(ctx: &Ctx, filter: &str) -> Result<BTreeMap<String, LeaseMap>> {
    let raw = KvFeed::snapshot(&ctx.conn.client, &ctx.buckets.leases, filter).await?;
    let mut out: BTreeMap<String, LeaseMap> = BTreeMap::new();
    for (key, value) in raw {
        let Some((fleet, shard)) = parse_lease_key(&key) else {
            tracing::warn!("skipping lease with a malformed key: {key}");
            continue;
        };
        match decode::<LeaseRecord>(&value) {
            Ok(l) => {
                out.entry(fleet.to_string()).or_default().insert(shard, l);
            }
            Err(e) => tracing::warn!("skipping lease {key}: {e}"),
        }
    }
    Ok(out)
}

/// Every agent entry (alive or not), sorted by name then id.
pub async fn load_agents(ctx: &Ctx) -> Result<Vec<Heartbeat>> {
    let raw = KvFeed::snapshot(&ctx.conn.client, &ctx.buckets.agents, ">").await?;
    let mut out: Vec<Heartbeat> = raw
        .iter()
        .filter_map(|(key, value)| match decode::<Heartbeat>(value) {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!("skipping agent {key}: {e}");
                None
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    Ok(out)
}

/// The agents alive at `now_ms`.
pub fn live(agents: &[Heartbeat], now_ms: u64) -> Vec<&Heartbeat> {
    agents.iter().filter(|h| h.is_alive(now_ms)).collect()
}

/// Devices of a fleet on one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Share {
    /// The agent's id.
    pub agent_id: String,
    /// The agent's name.
    pub agent_name: String,
    /// Devices of the fleet it runs.
    pub devices: u64,
}

/// What runs of a fleet, from its leases.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Running {
    /// Devices running: the desired devices of every shard held at the current generation.
    pub devices: u64,
    /// Shards held at the current generation.
    pub shards_held: u32,
    /// Devices per agent, most first.
    pub agents: Vec<Share>,
}

/// Devices running of `record`, given its live leases.
pub fn running(record: &FleetRecord, leases: &LeaseMap) -> Running {
    let mut out = Running::default();
    let mut by_agent: BTreeMap<&str, Share> = BTreeMap::new();
    for (&shard, lease) in leases.range(..record.shard_count()) {
        if lease.generation != record.generation {
            continue;
        }
        let n = record.shard_desired(shard);
        out.devices += n;
        out.shards_held += 1;
        by_agent
            .entry(&lease.agent_id)
            .or_insert_with(|| Share {
                agent_id: lease.agent_id.clone(),
                agent_name: lease.agent_name.clone(),
                devices: 0,
            })
            .devices += n;
    }
    out.agents = by_agent.into_values().collect();
    out.agents.sort_by(|a, b| {
        b.devices
            .cmp(&a.devices)
            .then(a.agent_name.cmp(&b.agent_name))
    });
    out
}

/// Why pending devices of a fleet do not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocker {
    /// No agent is alive.
    NoAgent,
    /// No live agent meets a requirement of the spec; says which.
    NoFit(String),
    /// Every live agent that fits is draining.
    AllDraining,
    /// The agents that fit are full.
    Capacity {
        /// Devices they still have room for.
        spare: u64,
    },
}

impl Blocker {
    /// A short description, for status.
    pub fn describe(&self) -> String {
        match self {
            Self::NoAgent => "no live agent".into(),
            Self::NoFit(why) => why.clone(),
            Self::AllDraining => "every live agent that fits is draining".into(),
            Self::Capacity { spare } => {
                format!("not enough capacity: live agents have room for {spare} more")
            }
        }
    }
}

/// Why `pending` devices of `spec` cannot run on the `live` agents, if that can be told.
pub fn blocker(spec: &FleetSpec, live: &[&Heartbeat], pending: u64) -> Option<Blocker> {
    if pending == 0 {
        return None;
    }
    if live.is_empty() {
        return Some(Blocker::NoAgent);
    }
    if let Some(why) = fit_problem(spec, live) {
        return Some(Blocker::NoFit(why));
    }
    let fitting: Vec<&&Heartbeat> = live
        .iter()
        .filter(|h| h.fits(&spec.placement, &spec.device_types(), &spec.sink_types()))
        .collect();
    if fitting.iter().all(|h| h.draining) {
        return Some(Blocker::AllDraining);
    }
    let mut spare = 0u64;
    for h in &fitting {
        match h.spare_for(spec.holds_connections()) {
            None => return None,
            Some(s) => spare += s,
        }
    }
    (spare < pending).then_some(Blocker::Capacity { spare })
}

/// What agents said when they could not start a shard of `fleet` (a missing TLS file, a
/// bad option), when devices are pending.
fn refusal(fleet: &str, live: &[&Heartbeat], pending: u64) -> Option<String> {
    if pending == 0 {
        return None;
    }
    let said: Vec<String> = live
        .iter()
        .filter_map(|h| {
            h.refusals
                .get(fleet)
                .map(|why| format!("agent {} cannot run it: {why}", h.name))
        })
        .collect();
    (!said.is_empty()).then(|| said.join("; "))
}

/// Which requirement of `spec` no live agent meets, if none fits.
pub fn fit_problem(spec: &FleetSpec, live: &[&Heartbeat]) -> Option<String> {
    let devices = spec.device_types();
    let sinks = spec.sink_types();
    if live
        .iter()
        .any(|h| h.fits(&spec.placement, &devices, &sinks))
    {
        return None;
    }
    let known = |f: fn(&Heartbeat) -> &Vec<String>| {
        let mut all: Vec<&str> = live
            .iter()
            .flat_map(|h| f(h).iter().map(String::as_str))
            .collect();
        all.sort();
        all.dedup();
        if all.is_empty() {
            "none".to_string()
        } else {
            all.join(", ")
        }
    };
    for d in &devices {
        if !live.iter().any(|h| h.device_types.contains(d)) {
            return Some(format!(
                "no live agent runs device type {d} (agents know: {})",
                known(|h| &h.device_types)
            ));
        }
    }
    for s in &sinks {
        if !live.iter().any(|h| h.sink_types.contains(s)) {
            return Some(format!(
                "no live agent has sink type {s} (agents know: {})",
                known(|h| &h.sink_types)
            ));
        }
    }
    let labels = labels_text(&spec.placement);
    if !live.iter().any(|h| {
        spec.placement
            .iter()
            .all(|(k, v)| h.labels.get(k) == Some(v))
    }) {
        return Some(format!("no live agent has labels {labels}"));
    }
    Some(format!(
        "no live agent has labels {labels} and runs device types {} with sinks {} at once",
        devices.join(", "),
        sinks.join(", ")
    ))
}

/// `k=v,k2=v2`.
pub fn labels_text(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// One fleet in `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetStatus {
    /// Fleet name.
    pub name: String,
    /// Fleet or single device.
    pub kind: RecordKind,
    /// Devices that should run.
    pub desired: u64,
    /// Devices running at the current generation.
    pub running: u64,
    /// `desired - running`.
    pub pending: u64,
    /// The record's generation.
    pub generation: u64,
    /// Shards held at the current generation.
    pub shards_held: u32,
    /// Shards in all.
    pub shards_total: u32,
    /// Devices per agent.
    pub agents: Vec<Share>,
    /// When the fleet deletes itself (Unix ms), if it has a duration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
    /// Why devices are pending, when that can be told.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The load shape's current target and phase, if the fleet has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<String>,
}

/// The status of `record` given its live leases and the live agents.
pub fn fleet_status(record: &FleetRecord, leases: &LeaseMap, live: &[&Heartbeat]) -> FleetStatus {
    let r = running(record, leases);
    let desired = record.desired();
    let pending = desired.saturating_sub(r.devices);
    FleetStatus {
        name: record.name().to_string(),
        kind: record.kind,
        desired,
        running: r.devices,
        pending,
        generation: record.generation,
        shards_held: r.shards_held,
        shards_total: record.shard_count(),
        agents: r.agents,
        expires_ms: record.expires_ms(),
        reason: blocker(&record.spec, live, pending)
            .map(|b| b.describe())
            .or_else(|| refusal(record.name(), live, pending)),
        load: record.spec.load.as_ref().map(|l| {
            l.describe(
                record.load_elapsed(pluribus_common::time::now_ms()),
                record.count(),
                record.spec.seed.unwrap_or(0),
            )
        }),
    }
}

/// One agent in `status` and `agents`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentRow {
    /// Agent id.
    pub id: String,
    /// Agent name.
    pub name: String,
    /// Heartbeat recent enough.
    pub alive: bool,
    /// Seconds since the last heartbeat.
    pub heartbeat_age_s: f64,
    /// Devices running.
    pub devices: u64,
    /// Most devices it takes, if limited.
    pub capacity: Option<u64>,
    /// Draining.
    pub draining: bool,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Agent version.
    pub version: String,
    /// Seconds since the agent started.
    pub uptime_s: u64,
    /// Device types it runs.
    pub device_types: Vec<String>,
    /// Sink types it has.
    pub sink_types: Vec<String>,
    /// It falls behind the schedule of some fleets: the generator is the bottleneck.
    pub saturated: bool,
    /// The fleets it falls behind on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub saturated_fleets: Vec<String>,
}

impl AgentRow {
    /// The row of one heartbeat, seen at `now_ms`.
    pub fn new(h: &Heartbeat, now_ms: u64) -> Self {
        let age_ms = now_ms.saturating_sub(h.ts_ms);
        Self {
            id: h.id.clone(),
            name: h.name.clone(),
            alive: h.is_alive(now_ms),
            heartbeat_age_s: (age_ms / 100) as f64 / 10.0,
            devices: h.devices,
            capacity: h.capacity,
            draining: h.draining,
            labels: h.labels.clone(),
            version: h.version.clone(),
            uptime_s: h.uptime_s,
            device_types: h.device_types.clone(),
            sink_types: h.sink_types.clone(),
            saturated: h.saturated,
            saturated_fleets: h
                .fleets
                .iter()
                .filter(|(_, c)| c.saturated)
                .map(|(k, _)| k.clone())
                .collect(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use pluribus_common::record::RecordKind;
    use std::time::Duration;

    pub(crate) fn hb(id: &str, devices: u64, capacity: Option<u64>) -> Heartbeat {
        Heartbeat {
            v: 1,
            id: id.into(),
            name: format!("n-{id}"),
            labels: BTreeMap::new(),
            version: "0.1.0".into(),
            uptime_s: 10,
            devices,
            capacity,
            draining: false,
            connection_capacity: None,
            connection_devices: 0,
            refusals: BTreeMap::new(),
            device_types: vec!["generic".into()],
            sink_types: vec!["console".into(), "nats".into()],
            fleets: BTreeMap::new(),
            saturated: false,
            interval_ms: 2_000,
            ts_ms: 100_000,
        }
    }

    fn lease(agent: &str, devices: u64, generation: u64) -> LeaseRecord {
        LeaseRecord {
            v: 1,
            agent_id: agent.into(),
            agent_name: format!("n-{agent}"),
            devices,
            generation,
            since_ms: 1,
        }
    }

    fn record(count: u64, shard_size: u32) -> FleetRecord {
        let mut s = FleetSpec::counted("f", count);
        s.shard_size = shard_size;
        FleetRecord::new(RecordKind::Fleet, s, 1_000, Duration::from_secs(2))
    }

    #[test]
    fn running_counts_current_generation_shards_only() {
        let mut r = record(1050, 100);
        r.generation = 2;
        let mut leases = LeaseMap::new();
        leases.insert(0, lease("a", 100, 2));
        leases.insert(1, lease("b", 100, 2));
        leases.insert(2, lease("b", 100, 1)); // old generation
        leases.insert(10, lease("a", 50, 2)); // the short last shard
        leases.insert(11, lease("a", 100, 2)); // past the end (a shrink in progress)
        let run = running(&r, &leases);
        assert_eq!(run.devices, 250);
        assert_eq!(run.shards_held, 3);
        assert_eq!(
            run.agents,
            vec![
                Share {
                    agent_id: "a".into(),
                    agent_name: "n-a".into(),
                    devices: 150
                },
                Share {
                    agent_id: "b".into(),
                    agent_name: "n-b".into(),
                    devices: 100
                },
            ]
        );
    }

    #[test]
    fn stopped_devices_do_not_count_as_running() {
        let mut r = record(10, 5);
        r.stopped.insert(7);
        let mut leases = LeaseMap::new();
        leases.insert(1, lease("a", 4, 1));
        assert_eq!(running(&r, &leases).devices, 4);
        let st = fleet_status(&r, &leases, &[]);
        assert_eq!((st.desired, st.running, st.pending), (9, 4, 5));
        assert_eq!(st.reason.as_deref(), Some("no live agent"));
    }

    #[test]
    fn blockers_name_the_missing_requirement() {
        let mut spec = FleetSpec::counted("f", 100);
        let a = hb("a", 0, None);
        let live = vec![&a];
        assert_eq!(blocker(&spec, &live, 0), None);
        assert_eq!(blocker(&spec, &[], 5), Some(Blocker::NoAgent));
        assert_eq!(blocker(&spec, &live, 5), None);

        spec.device.kind = "thermostat".into();
        assert_eq!(
            blocker(&spec, &live, 5),
            Some(Blocker::NoFit(
                "no live agent runs device type thermostat (agents know: generic)".into()
            ))
        );
        spec.device.kind = "generic".into();
        spec.sink.kind = "kafka".into();
        assert_eq!(
            fit_problem(&spec, &live).as_deref(),
            Some("no live agent has sink type kafka (agents know: console, nats)")
        );
        spec.sink.kind = "console".into();
        spec.placement.insert("zone".into(), "a".into());
        assert_eq!(
            fit_problem(&spec, &live).as_deref(),
            Some("no live agent has labels zone=a")
        );
    }

    #[test]
    fn mqtt_fleets_count_against_the_connection_capacity() {
        let mut a = hb("a", 0, Some(100));
        a.connection_capacity = Some(30);
        a.connection_devices = 10;
        assert_eq!(a.spare_for(false), Some(100));
        assert_eq!(a.spare_for(true), Some(20));
        let mut b = hb("b", 0, None);
        b.connection_capacity = Some(50);
        assert_eq!(b.spare_for(true), Some(50));
        assert_eq!(b.spare_for(false), None);
    }

    #[test]
    fn blockers_see_capacity_and_draining() {
        let spec = FleetSpec::counted("f", 100);
        let a = hb("a", 90, Some(100));
        let mut b = hb("b", 0, Some(50));
        assert_eq!(
            blocker(&spec, &[&a, &b], 100),
            Some(Blocker::Capacity { spare: 60 })
        );
        assert_eq!(blocker(&spec, &[&a, &b], 60), None);
        b.draining = true;
        assert_eq!(
            blocker(&spec, &[&a, &b], 60),
            Some(Blocker::Capacity { spare: 10 })
        );
        let mut c = hb("c", 0, None);
        assert_eq!(blocker(&spec, &[&a, &c], 1_000_000), None);
        c.draining = true;
        let mut a2 = a.clone();
        a2.draining = true;
        assert_eq!(blocker(&spec, &[&a2, &c], 1), Some(Blocker::AllDraining));
    }

    #[test]
    fn agent_rows_show_liveness_and_age() {
        let h = hb("a", 3, None);
        let row = AgentRow::new(&h, 101_530);
        assert!(row.alive);
        assert_eq!(row.heartbeat_age_s, 1.5);
        assert!(!AgentRow::new(&h, 200_000).alive);
    }
}
