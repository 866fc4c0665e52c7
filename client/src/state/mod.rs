//! Reading the state from KV (fleets, leases, agents) and what follows from it: devices
//! assigned and active per fleet and per agent, and why devices are pending.
//!
//! The device figures, named the same in every output (text, `--json`, `/metrics`):
//! - **desired**: devices the fleet should run (its count, minus devices stopped by hand);
//! - **assigned**: devices in shards an agent holds a lease on, at the fleet's generation;
//! - **active**: devices started and running on the agents now, from their heartbeats
//!   (lower than assigned while a load shape's arrival ramps up, and for a heartbeat
//!   interval after a claim);
//! - **pending**: desired minus assigned (no agent holds their shard);
//! - **stale**: assigned to an agent that stopped heartbeating; they move to another agent
//!   when its leases expire;
//! - **connected**: devices holding a live connection (MQTT), see `status`'s CONNECTIONS.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use pluribus_common::messages::{Heartbeat, LeaseRecord};
use pluribus_common::record::{FleetRecord, RecordKind};
use pluribus_common::subjects::parse_lease_key;
use pluribus_common::time::now_ms;
use pluribus_common::wire::decode;
use serde::Serialize;

use crate::feed::KvFeed;
use crate::Ctx;

mod blocker;
#[doc(hidden)]
pub mod fixtures;
#[cfg(test)]
mod tests;

use blocker::refusal;
pub use blocker::{blocker, fit_problem, labels_text, Blocker};

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
    /// When each lease expires unless renewed (Unix ms), by fleet, then shard.
    pub lease_expiry: BTreeMap<String, BTreeMap<u32, u64>>,
    /// Every agent entry, alive or not, by id.
    pub agents: Vec<Heartbeat>,
    /// The agents with an epoch record (`_live.<id>` in the leases bucket), whose leases
    /// stand; `None` when unknown. A record goes a TTL (3 s) after its agent died, sooner
    /// than its heartbeat looks stale (three intervals): an agent without one is not alive,
    /// and its devices, which others run by then, are not counted twice.
    pub epochs: Option<BTreeSet<String>>,
}

impl State {
    /// Reads the three buckets.
    pub async fn load(ctx: &Ctx) -> Result<Self> {
        let (fleets, (leases, lease_expiry, epochs), agents) = tokio::try_join!(
            load_fleets(ctx),
            load_leases_expiring(ctx, ">"),
            load_agents(ctx)
        )?;
        Ok(Self {
            now_ms: now_ms(),
            fleets,
            leases,
            lease_expiry,
            agents,
            epochs: Some(epochs),
        })
    }

    /// True when `h`'s agent is alive now: a recent heartbeat, and an epoch record (when
    /// known).
    pub fn is_alive(&self, h: &Heartbeat) -> bool {
        h.is_alive(self.now_ms) && self.epochs.as_ref().is_none_or(|e| e.contains(&h.id))
    }

    /// The agents that are alive now.
    pub fn live_agents(&self) -> Vec<&Heartbeat> {
        self.agents.iter().filter(|h| self.is_alive(h)).collect()
    }

    /// The status of one fleet.
    pub fn fleet_status(&self, record: &FleetRecord) -> FleetStatus {
        let empty = LeaseMap::new();
        let leases = self.leases.get(record.name()).unwrap_or(&empty);
        let mut st = fleet_status(record, leases, &self.live_agents());
        let no_expiry = BTreeMap::new();
        let expiry = self.lease_expiry.get(record.name()).unwrap_or(&no_expiry);
        let notes: Vec<String> = st
            .agents
            .iter()
            .filter(|s| !s.alive)
            .map(|s| stale_note(s, leases, expiry, self.now_ms))
            .collect();
        if !notes.is_empty() {
            let mut all = notes;
            all.extend(st.reason.take());
            st.reason = Some(all.join("; "));
        }
        st
    }

    /// Devices assigned to each agent (from the leases at the fleets' generations), by id.
    pub fn assigned_by_agent(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (name, record) in &self.fleets {
            let Some(leases) = self.leases.get(name) else {
                continue;
            };
            for s in running(record, leases).agents {
                *out.entry(s.agent_id).or_default() += s.devices;
            }
        }
        out
    }
}

/// "1000 on agent-1, which stopped heartbeating; they move when its leases expire in ~6 s".
fn stale_note(
    share: &Share,
    leases: &LeaseMap,
    expiry: &BTreeMap<u32, u64>,
    now_ms: u64,
) -> String {
    let last = leases
        .iter()
        .filter(|(_, l)| l.agent_id == share.agent_id)
        .filter_map(|(shard, _)| expiry.get(shard))
        .max();
    let when = match last {
        Some(&at) if at > now_ms => format!("in ~{} s", (at - now_ms).div_ceil(1000)),
        Some(_) => "now".to_string(),
        None => "(within the lease TTL)".to_string(),
    };
    format!(
        "{} on {}, which stopped heartbeating; they move when its leases expire {when}",
        share.devices, share.agent_name
    )
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
    Ok(load_leases_expiring(ctx, filter).await?.0)
}

/// Lease expiries (Unix ms) by fleet, then shard.
pub type Expiries = BTreeMap<String, BTreeMap<u32, u64>>;

/// Live leases matching `filter`, by fleet and shard, when each expires unless renewed,
/// and the agents with an epoch record (among the keys `filter` covers).
pub async fn load_leases_expiring(
    ctx: &Ctx,
    filter: &str,
) -> Result<(BTreeMap<String, LeaseMap>, Expiries, BTreeSet<String>)> {
    let raw = KvFeed::snapshot_entries(&ctx.conn.client, &ctx.buckets.leases, filter).await?;
    let mut out: BTreeMap<String, LeaseMap> = BTreeMap::new();
    let mut expiry = Expiries::new();
    // A lease stands on its holder's epoch record (`_live.<id>`, in the same bucket), which
    // goes once the holder's liveness key (in the live bucket) expires.
    let mut live_expiry = live_expiries(ctx).await;
    let mut epochs = BTreeSet::new();
    for (key, entry) in &raw {
        let Some(id) = pluribus_common::subjects::parse_liveness_key(key) else {
            continue;
        };
        epochs.insert(id.to_string());
        if let Some(at) = entry.expires_ms {
            live_expiry.insert(id.to_string(), at);
        }
    }
    for (key, entry) in raw {
        let value = entry.value;
        let Some((fleet, shard)) = parse_lease_key(&key) else {
            if pluribus_common::subjects::parse_liveness_key(&key).is_none() {
                tracing::warn!("skipping lease with a malformed key: {key}");
            }
            continue;
        };
        match decode::<LeaseRecord>(&value) {
            Ok(l) => {
                if let Some(at) = entry
                    .expires_ms
                    .or_else(|| live_expiry.get(&l.agent_id).copied())
                {
                    expiry
                        .entry(fleet.to_string())
                        .or_default()
                        .insert(shard, at);
                }
                out.entry(fleet.to_string()).or_default().insert(shard, l);
            }
            Err(e) => tracing::warn!("skipping lease {key}: {e}"),
        }
    }
    Ok((out, expiry, epochs))
}

/// When each agent's liveness keys expire unless renewed (Unix ms), by agent id: the later
/// of its two keys (an agent counts as gone only once both have expired). Best effort: a
/// credential that may not read the live buckets gets none, and status then says the
/// devices move "within the lease TTL".
async fn live_expiries(ctx: &Ctx) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for bucket in ctx.conn.ns.live_buckets() {
        let open = ctx.conn.js.get_key_value(bucket);
        let Ok(Ok(store)) = tokio::time::timeout(std::time::Duration::from_secs(3), open).await
        else {
            continue;
        };
        match KvFeed::snapshot_entries(&ctx.conn.client, &store, ">").await {
            Ok(raw) => {
                for (id, at) in raw
                    .into_iter()
                    .filter_map(|(id, e)| Some((id, e.expires_ms?)))
                {
                    let e = out.entry(id).or_insert(at);
                    *e = (*e).max(at);
                }
            }
            Err(e) => tracing::debug!("liveness keys not read: {e}"),
        }
    }
    out
}

/// Every agent entry (alive or not), sorted by name then id, each stamped with when the
/// server stored it (see [`Heartbeat::arrived_ms`]).
pub async fn load_agents(ctx: &Ctx) -> Result<Vec<Heartbeat>> {
    let raw = KvFeed::snapshot_entries(&ctx.conn.client, &ctx.buckets.agents, ">").await?;
    let mut out: Vec<Heartbeat> = raw
        .iter()
        .filter_map(|(key, e)| match decode::<Heartbeat>(&e.value) {
            Ok(mut h) => {
                h.arrived_ms = e.stored_ms;
                Some(h)
            }
            Err(err) => {
                tracing::warn!("skipping agent {key}: {err}");
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

/// Devices of a fleet assigned to one agent (from its leases).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Share {
    /// The agent's id.
    pub agent_id: String,
    /// The agent's name.
    pub agent_name: String,
    /// Devices of the fleet assigned to it (in shards it holds).
    #[serde(rename = "assigned")]
    pub devices: u64,
    /// The agent heartbeats; false: its devices are stale and move when its leases expire.
    pub alive: bool,
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
                alive: true,
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

/// One fleet in `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetStatus {
    /// Fleet name.
    pub name: String,
    /// Fleet or single device.
    pub kind: RecordKind,
    /// Devices that should run.
    pub desired: u64,
    /// Devices in shards held by an agent at the current generation.
    pub assigned: u64,
    /// Devices started and running on the live agents now (from their heartbeats).
    pub active: u64,
    /// `desired - assigned`: devices in shards no agent holds.
    pub pending: u64,
    /// Assigned devices on agents that stopped heartbeating (they move when the leases
    /// expire; `reason` says when).
    pub stale: u64,
    /// Deprecated: the same as `assigned` (its name before 0.2); will be removed.
    pub running: u64,
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
    let mut r = running(record, leases);
    let desired = record.desired();
    let pending = desired.saturating_sub(r.devices);
    let mut stale = 0;
    for s in &mut r.agents {
        s.alive = live.iter().any(|h| h.id == s.agent_id);
        if !s.alive {
            stale += s.devices;
        }
    }
    let active = live
        .iter()
        .filter_map(|h| h.fleets.get(record.name()))
        .map(|c| c.devices)
        .sum();
    FleetStatus {
        name: record.name().to_string(),
        kind: record.kind,
        desired,
        assigned: r.devices,
        active,
        pending,
        stale,
        running: r.devices,
        generation: record.generation,
        shards_held: r.shards_held,
        shards_total: record.shard_count(),
        agents: r.agents,
        expires_ms: record.expires_ms(),
        // What agents said first: a record they refused (an unsafe subject, say) matters
        // more than an unknown sink type.
        reason: refusal(record.name(), live, pending)
            .or_else(|| blocker(&record.spec, live, pending).map(|b| b.describe())),
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
    /// Seconds since the last heartbeat arrived (by the NATS server's stamp, not the
    /// agent's clock).
    pub heartbeat_age_s: f64,
    /// Devices in shards it holds leases on (from the leases bucket).
    pub assigned: u64,
    /// Devices started and running on it now (from its last heartbeat).
    pub active: u64,
    /// Deprecated: the same as `assigned` (`status`'s meaning before 0.2); will be removed.
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
    /// The rows of every agent of `st`, with the devices assigned to each from the leases.
    pub fn all(st: &State) -> Vec<Self> {
        let assigned = st.assigned_by_agent();
        st.agents
            .iter()
            .map(|h| {
                let mut row = Self::new(h, st.now_ms);
                row.alive = st.is_alive(h);
                row.assigned = assigned.get(&h.id).copied().unwrap_or(0);
                row.devices = row.assigned;
                row
            })
            .collect()
    }

    /// The row of one heartbeat, seen at `now_ms` (nothing assigned: see [`AgentRow::all`]).
    pub fn new(h: &Heartbeat, now_ms: u64) -> Self {
        let age_ms = h.age_ms(now_ms);
        Self {
            id: h.id.clone(),
            name: h.name.clone(),
            alive: h.is_alive(now_ms),
            heartbeat_age_s: (age_ms / 100) as f64 / 10.0,
            assigned: 0,
            active: h.devices,
            devices: 0,
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
