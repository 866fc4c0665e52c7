//! Typed messages on the bus. Each carries `v` ([`crate::PROTOCOL_VERSION`]); decode them
//! with [`crate::wire::decode`], which refuses other versions with a clear error.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hist::Hist;

use crate::PROTOCOL_VERSION;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn v1() -> u32 {
    PROTOCOL_VERSION
}

/// An offer of one shard, published on `work` to the agents' queue group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardOffer {
    /// Protocol version.
    #[serde(default = "v1")]
    pub v: u32,
    /// Fleet name.
    pub fleet: String,
    /// Shard index.
    pub shard: u32,
    /// How many agents declined it already; past a limit the next one takes it if it can.
    #[serde(default)]
    pub hops: u32,
    /// Set by an agent that just deleted its lease on the shard: the last revision of that
    /// lease. A receiver whose view of the leases bucket still shows this revision (or an
    /// older one) knows its view is behind and tries to claim anyway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<u64>,
}

impl ShardOffer {
    /// A fresh offer.
    pub fn new(fleet: &str, shard: u32) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            fleet: fleet.into(),
            shard,
            hops: 0,
            released: None,
        }
    }

    /// An offer of a shard whose lease, last at `revision`, the sender has just deleted.
    pub fn released(fleet: &str, shard: u32, revision: u64) -> Self {
        Self {
            released: Some(revision),
            ..Self::new(fleet, shard)
        }
    }
}

/// The value of a lease key (`<fleet>.<shard>` in the leases bucket).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Protocol version.
    #[serde(default = "v1")]
    pub v: u32,
    /// Holder's id.
    pub agent_id: String,
    /// Holder's name.
    pub agent_name: String,
    /// Devices running in the shard.
    pub devices: u64,
    /// Fleet generation the holder runs.
    pub generation: u64,
    /// When the holder claimed it.
    pub since_ms: u64,
    /// The epoch of the holder's liveness entry (`_live.<agent id>`) when it wrote this
    /// lease. The lease stands while that entry does, at that epoch; once it is gone (the
    /// holder died or was cut off longer than its TTL) any agent may take the shard over.
    /// 0 (a lease of an older agent) never matches a live entry.
    #[serde(default)]
    pub epoch: u64,
}

/// The value of an agent's liveness key (`<agent id>` in the live bucket, a short per-key
/// TTL, renewed about every second) and of its epoch record (`_live.<agent id>` in the
/// leases bucket, written once per epoch). A new key (after the old one expired) has a new
/// `epoch`, so the leases written under the old one are void.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Liveness {
    /// Protocol version.
    #[serde(default = "v1")]
    pub v: u32,
    /// The agent's id.
    pub agent_id: String,
    /// The agent's name.
    pub agent_name: String,
    /// Chosen at random when the entry is created; never 0.
    pub epoch: u64,
}

/// Counters of one fleet on one agent, since the agent started. Counters only grow;
/// readers take rates from two heartbeats. Histograms are cumulative too, and mergeable.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetCounters {
    /// Devices of the fleet running on the agent.
    pub devices: u64,
    /// Telemetry messages sent.
    pub messages: u64,
    /// Payload bytes sent.
    pub bytes: u64,
    /// Send errors.
    pub errors: u64,
    /// Messages per second the schedule asks of this agent for this fleet (a gauge).
    #[serde(default)]
    pub scheduled_per_s: f64,
    /// Messages per second sent over the agent's last heartbeat interval (a gauge).
    #[serde(default)]
    pub achieved_per_s: f64,
    /// Over the last interval the agent sent (or tried to send) less than 98% of what the
    /// schedule asked, and the backlog is growing: the generator is the bottleneck.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub saturated: bool,
    /// Lateness of each telemetry slot (send time minus scheduled time), in µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tick_lag_us: Option<Hist>,
    /// Devices with a live connection (connection-holding sinks such as MQTT).
    #[serde(default)]
    pub connected: u64,
    /// Devices connecting now.
    #[serde(default)]
    pub connecting: u64,
    /// Failed connection attempts, by reason.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub connect_failures: BTreeMap<String, u64>,
    /// Connections lost after they were up.
    #[serde(default)]
    pub disconnects: u64,
    /// Connections made again after a loss.
    #[serde(default)]
    pub reconnects: u64,
    /// Publishes that failed (not acknowledged, refused, or the connection was down).
    #[serde(default)]
    pub publish_failed: u64,
    /// Commands received by devices.
    #[serde(default)]
    pub commands: u64,
    /// Commands refused because their queue was full (answered `busy`, or for MQTT
    /// command topics dropped): a flood of commands never delays telemetry.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub commands_refused: u64,
    /// QoS 1/2 acknowledgement (or HTTP response) latency, in µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_latency_us: Option<Hist>,
    /// Responses by class (HTTP sink: "2xx", "4xx", ...; FIX sink: "exec_report", "reject",
    /// "business_reject", "seq_gap").
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub responses: BTreeMap<String, u64>,
    /// Messages received by subscriber devices (MQTT `role: subscriber`).
    #[serde(default)]
    pub received: u64,
    /// End-to-end latency of received messages (now minus the payload's `ts`), in µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_latency_us: Option<Hist>,
    /// Faults the agent injected on purpose (network impairments), when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkCounters>,
    /// The same per cohort: a device's faults count under the cohort of the last rule in
    /// force that names one it is in ([`NO_COHORT`] when only rules for every device apply
    /// to it). Together they make `network`. At most [`MAX_COHORT_KEYS`] entries.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub network_cohorts: BTreeMap<String, NetworkCounters>,
}

/// The cohort key of faults injected into devices that no cohort's rule applies to.
pub const NO_COHORT: &str = "none";
/// The cohort key of faults beyond [`MAX_COHORT_KEYS`] cohorts on one agent (runtime rules
/// changed many times).
pub const OTHER_COHORTS: &str = "other";
/// Most cohorts an agent counts apart per fleet: the rules' limit, [`NO_COHORT`], and
/// [`OTHER_COHORTS`].
pub const MAX_COHORT_KEYS: usize = crate::spec::network::MAX_COHORTS + 2;

/// Faults injected by an agent's network impairments, for one fleet (cumulative).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkCounters {
    /// Messages dropped (loss, or a full delay queue).
    #[serde(default)]
    pub dropped: u64,
    /// Messages sent twice.
    #[serde(default)]
    pub duplicated: u64,
    /// Messages delayed (latency or the bandwidth cap).
    #[serde(default)]
    pub delayed: u64,
    /// Messages held back behind later ones.
    #[serde(default)]
    pub reordered: u64,
    /// Payloads mangled.
    #[serde(default)]
    pub corrupted: u64,
    /// Messages that waited for the bandwidth cap.
    #[serde(default)]
    pub throttled: u64,
    /// Messages kept by offline (partitioned) devices.
    #[serde(default)]
    pub buffered: u64,
    /// Buffered messages sent when their device came back.
    #[serde(default)]
    pub flushed: u64,
    /// Messages offline devices lost (full buffer, or stopped while offline).
    #[serde(default)]
    pub buffer_dropped: u64,
    /// Devices that went offline (a partition started for them).
    #[serde(default)]
    pub partitions_started: u64,
    /// Devices that came back.
    #[serde(default)]
    pub partitions_ended: u64,
    /// Device connections the network layer cut (closed or stalled: partitions and
    /// flapping on sinks with a connection per device).
    #[serde(default)]
    pub disconnects: u64,
    /// Delay added to delayed messages, in µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_delay_us: Option<Hist>,
}

impl NetworkCounters {
    /// Adds another agent's counters.
    pub fn merge(&mut self, o: &NetworkCounters) {
        self.dropped += o.dropped;
        self.duplicated += o.duplicated;
        self.delayed += o.delayed;
        self.reordered += o.reordered;
        self.corrupted += o.corrupted;
        self.throttled += o.throttled;
        self.buffered += o.buffered;
        self.flushed += o.flushed;
        self.buffer_dropped += o.buffer_dropped;
        self.partitions_started += o.partitions_started;
        self.partitions_ended += o.partitions_ended;
        self.disconnects += o.disconnects;
        if let Some(h) = &o.added_delay_us {
            match &mut self.added_delay_us {
                Some(mine) => mine.merge(h),
                None => self.added_delay_us = Some(h.clone()),
            }
        }
    }
}

/// An agent's heartbeat: published on `hb.<id>` and kept in the agents bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Protocol version.
    #[serde(default = "v1")]
    pub v: u32,
    /// Agent id (a UUID, new per process).
    pub id: String,
    /// Human-friendly name (`--name`).
    pub name: String,
    /// Labels (`--labels`).
    pub labels: BTreeMap<String, String>,
    /// Agent version.
    pub version: String,
    /// Seconds since the agent started.
    pub uptime_s: u64,
    /// Devices running.
    pub devices: u64,
    /// Most devices the agent takes (`--max-devices`), if limited.
    pub capacity: Option<u64>,
    /// Draining: takes no work and hands off what it has.
    pub draining: bool,
    /// Most devices on connection-holding sinks (MQTT) the agent takes: from its
    /// open-files limit unless set (`--max-connections`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_capacity: Option<u64>,
    /// Devices on connection-holding sinks running now.
    #[serde(default)]
    pub connection_devices: u64,
    /// Fleets this agent could not start a shard of, and why (a missing TLS file, a bad
    /// option): shown by `status` for pending devices.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refusals: BTreeMap<String, String>,
    /// Device types the agent can run.
    pub device_types: Vec<String>,
    /// Sink types the agent can use.
    pub sink_types: Vec<String>,
    /// Per-fleet counters.
    pub fleets: BTreeMap<String, FleetCounters>,
    /// Some fleet fell behind its schedule over the last interval (see
    /// [`FleetCounters::saturated`]): the generator, not the system under test, is the
    /// bottleneck.
    #[serde(default)]
    pub saturated: bool,
    /// Heartbeat interval, so readers know when one is late.
    pub interval_ms: u64,
    /// When this heartbeat was sent (Unix ms, on the sender's clock: right only as far as
    /// that clock is). Rates between two heartbeats of one agent use it.
    pub ts_ms: u64,
    /// When the NATS server stored this heartbeat, on the reader's clock (Unix ms): set by
    /// the reader (`pluribusctl` from the KV entry's server stamp), never on the wire.
    /// Liveness is judged by it when known, so that a sender's wrong clock cannot make a
    /// live agent look dead or a dead one alive.
    #[serde(skip)]
    pub arrived_ms: Option<u64>,
}

impl Heartbeat {
    /// True if the agent may run a fleet with these placement labels and types.
    pub fn fits(
        &self,
        placement: &BTreeMap<String, String>,
        devices: &[String],
        sinks: &[String],
    ) -> bool {
        placement.iter().all(|(k, v)| self.labels.get(k) == Some(v))
            && devices.iter().all(|d| self.device_types.contains(d))
            && sinks.iter().all(|s| self.sink_types.contains(s))
    }

    /// Devices the agent may still take (None: unlimited).
    pub fn spare(&self) -> Option<u64> {
        if self.draining {
            return Some(0);
        }
        self.capacity.map(|c| c.saturating_sub(self.devices))
    }

    /// Devices the agent may still take for a fleet that holds a connection per device
    /// (`connections`) or not (None: unlimited).
    pub fn spare_for(&self, connections: bool) -> Option<u64> {
        let devices = self.spare();
        if !connections {
            return devices;
        }
        let conns = self
            .connection_capacity
            .map(|c| c.saturating_sub(self.connection_devices));
        match (devices, conns) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// True when the heartbeat is recent enough for the agent to count as alive: it
    /// arrived (or, when its arrival is unknown, was sent) within three intervals and a
    /// second of `now_ms`.
    pub fn is_alive(&self, now_ms: u64) -> bool {
        self.age_ms(now_ms) <= self.interval_ms * 3 + 1_000
    }

    /// How long before `now_ms` the heartbeat arrived (see [`Heartbeat::arrived_ms`]), or
    /// was sent when its arrival is unknown.
    pub fn age_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.arrived_ms.unwrap_or(self.ts_ms))
    }
}

/// A command to one agent (`agent.<id>.cmd`) or all agents (`agents.cmd`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCommand {
    /// Protocol version.
    #[serde(default = "v1")]
    pub v: u32,
    /// What to do.
    pub op: AgentOp,
}

impl AgentCommand {
    /// A command.
    pub fn new(op: AgentOp) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            op,
        }
    }
}

/// The operations of an [`AgentCommand`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum AgentOp {
    /// Reply with a heartbeat.
    Ping,
    /// Stop taking work and hand off every shard (`undo`: take work again).
    Drain {
        /// Turn draining off instead.
        #[serde(default)]
        undo: bool,
    },
    /// Release shards above the fair share now.
    Rebalance,
    /// End the agent's process at once, as SIGKILL would: nothing is released, stopped or
    /// flushed, so its shards fail over as after a crash (the scenarios' `kill_agent`
    /// failover drill). Answered before the process ends.
    Kill,
}

/// What an agent answers to a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentAnswer {
    /// The agent's state after the command.
    pub heartbeat: Heartbeat,
    /// Shards the command released.
    #[serde(default)]
    pub released: u32,
}

/// The one reply envelope for every request: `{"v":1,"ok":…}` or `{"v":1,"error":…}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply<T> {
    /// Protocol version.
    #[serde(default = "v1")]
    pub v: u32,
    /// The result, on success. (No `default` here: on a generic field it would make serde
    /// require `T: Default`; a missing `Option` field reads as `None` anyway.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ok: Option<T>,
    /// The error, on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl<T> Reply<T> {
    /// A success.
    pub fn ok(value: T) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            ok: Some(value),
            error: None,
        }
    }

    /// A failure.
    pub fn err(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            ok: None,
            error: Some(ErrorBody {
                code,
                message: message.into(),
            }),
        }
    }

    /// The result as a `Result`.
    pub fn into_result(self) -> Result<T, ErrorBody> {
        match (self.ok, self.error) {
            (Some(v), _) => Ok(v),
            (None, Some(e)) => Err(e),
            (None, None) => Err(ErrorBody {
                code: ErrorCode::BadRequest,
                message: "empty reply".into(),
            }),
        }
    }
}

/// An error in a [`Reply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ErrorBody {
    /// Machine-readable kind.
    pub code: ErrorCode,
    /// What happened and what to do.
    pub message: String,
}

/// Kinds of [`ErrorBody`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The message could not be decoded.
    BadRequest,
    /// The message has a protocol version this agent does not speak.
    UnsupportedVersion,
    /// The agent could not carry it out.
    Failed,
    /// Too many requests are queued already: nothing was done; slow down and retry.
    Busy,
}

/// A state change, published on `evt.<kind>` for anyone to follow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Protocol version.
    #[serde(default = "v1")]
    pub v: u32,
    /// Unix ms.
    pub ts_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The kinds of [`Event`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum EventKind {
    /// A fleet or device was deployed.
    FleetCreated { fleet: String, devices: u64 },
    /// A fleet's size changed.
    FleetScaled { fleet: String, from: u64, to: u64 },
    /// A fleet was deleted (by the user, or when its duration ran out).
    FleetDeleted { fleet: String, reason: String },
    /// An agent took a shard.
    ShardClaimed {
        fleet: String,
        shard: u32,
        agent_id: String,
        devices: u64,
    },
    /// An agent gave a shard back.
    ShardReleased {
        fleet: String,
        shard: u32,
        agent_id: String,
        reason: String,
    },
    /// An agent stopped a shard because it could not renew the lease.
    ShardFenced {
        fleet: String,
        shard: u32,
        agent_id: String,
    },
    /// An agent started.
    AgentJoined { agent_id: String, name: String },
    /// An agent stopped.
    AgentLeft { agent_id: String, name: String },
    /// An agent fell behind the schedule of some fleets: it cannot generate the load asked
    /// of it (published when it turns saturated, not while it stays so).
    Saturated {
        agent_id: String,
        name: String,
        /// The fleets behind schedule.
        fleets: Vec<String>,
    },
    /// Devices of a shard started (on_start ran). One event per change of the shard, with
    /// at most [`MAX_EVENT_DEVICES`] ids (more become several events).
    DevicesStarted {
        fleet: String,
        shard: u32,
        agent_id: String,
        device_ids: Vec<String>,
    },
    /// Devices of a shard stopped (on_stop ran), and why: `scaled down`, `stopped` (by
    /// `pluribusctl stop`), `load shape` (inactive under the arrival shape), or what
    /// stopped their whole shard here: `drain`, `rebalance`, `fleet deleted`, `fenced`,
    /// `lease lost`, `spec replaced`, `agent stopping`.
    DevicesStopped {
        fleet: String,
        shard: u32,
        agent_id: String,
        reason: String,
        device_ids: Vec<String>,
    },
    /// An agent refused a fleet record it read from KV (an unsafe telemetry subject, absurd
    /// sizes, a record that does not decode): it runs none of its devices. Published once
    /// per agent and record revision.
    FleetRefused {
        fleet: String,
        agent_id: String,
        reason: String,
    },
    /// A device failed: its sink could not open it, or its connection failed (the first
    /// failure of a streak, not every retry). Rate-limited per agent; `suppressed` counts
    /// the failures not published since the last event.
    DeviceFailed {
        fleet: String,
        agent_id: String,
        device_id: String,
        error: String,
        #[serde(default)]
        suppressed: u64,
    },
    /// Devices of a shard went offline under a network rule (`offline`/`partition`);
    /// one event per shard and second at most, counting the devices.
    PartitionStarted {
        fleet: String,
        shard: u32,
        agent_id: String,
        devices: u64,
    },
    /// Devices of a shard came back from offline and flushed their buffers.
    PartitionEnded {
        fleet: String,
        shard: u32,
        agent_id: String,
        devices: u64,
    },
    /// A fleet's runtime network rules changed (`pluribusctl network set` or `clear`).
    NetworkChanged {
        fleet: String,
        /// What changed, e.g. `set cohort 10%: loss 5%` or `cleared 2 rules`.
        change: String,
        /// Runtime rules in force after the change.
        rules: u64,
    },
}

/// Most device ids in one devices_started / devices_stopped event.
pub const MAX_EVENT_DEVICES: usize = 1000;

impl EventKind {
    /// The subject token of this kind (`evt.<token>`).
    pub fn token(&self) -> &'static str {
        match self {
            Self::FleetCreated { .. } => "fleet_created",
            Self::FleetScaled { .. } => "fleet_scaled",
            Self::FleetDeleted { .. } => "fleet_deleted",
            Self::ShardClaimed { .. } => "shard_claimed",
            Self::ShardReleased { .. } => "shard_released",
            Self::ShardFenced { .. } => "shard_fenced",
            Self::AgentJoined { .. } => "agent_joined",
            Self::AgentLeft { .. } => "agent_left",
            Self::Saturated { .. } => "saturated",
            Self::DevicesStarted { .. } => "devices_started",
            Self::DevicesStopped { .. } => "devices_stopped",
            Self::DeviceFailed { .. } => "device_failed",
            Self::FleetRefused { .. } => "fleet_refused",
            Self::NetworkChanged { .. } => "network_changed",
            Self::PartitionStarted { .. } => "partition_started",
            Self::PartitionEnded { .. } => "partition_ended",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_read_peer_heartbeats_without_their_histograms() {
        let hb = Heartbeat {
            v: 1,
            id: "a1".into(),
            name: "n".into(),
            labels: BTreeMap::from([("zone".into(), "a".into())]),
            version: "x".into(),
            uptime_s: 1,
            devices: 3,
            capacity: Some(10),
            draining: false,
            connection_capacity: None,
            connection_devices: 0,
            refusals: BTreeMap::new(),
            device_types: vec!["generic".into()],
            sink_types: vec!["nats".into()],
            fleets: BTreeMap::new(),
            saturated: false,
            interval_ms: 500,
            ts_ms: 7,
            arrived_ms: None,
        };
        let mut v = serde_json::to_value(&hb).expect("json");
        // A forged histogram (and junk) under fleets: a full decode refuses it...
        v["fleets"] =
            serde_json::json!({"f": {"ack_latency_us": "HISTOGRAM?", "junk": [1, {"a": "b"}]}});
        let bytes = serde_json::to_vec(&v).expect("bytes");
        assert!(crate::wire::decode::<Heartbeat>(&bytes).is_err());
        // ... an agent's never looks at it: agents read each other as peer records, and a
        // heartbeat forged into that bucket is read as one without parsing its fleets.
        let peer = crate::wire::decode::<crate::peer::Peer>(&bytes).expect("peer view");
        assert_eq!(peer, crate::peer::Peer::of(&hb));
    }

    #[test]
    fn liveness_follows_arrival_when_it_is_known() {
        let mut hb = crate::wire::decode::<Heartbeat>(
            br#"{"id":"a","name":"n","labels":{},"version":"x","uptime_s":1,"devices":0,
            "capacity":null,"draining":false,"device_types":[],"sink_types":[],"fleets":{},
            "interval_ms":1000,"ts_ms":100000,"arrived_ms":5}"#,
        )
        .expect("heartbeat");
        // Not on the wire: a sender cannot claim when its heartbeat arrived.
        assert_eq!(hb.arrived_ms, None);
        assert!(hb.is_alive(103_000) && !hb.is_alive(105_000));
        // A sender 90 s ahead: alive by arrival, though its stamp says otherwise.
        hb.ts_ms = 190_000;
        hb.arrived_ms = Some(100_000);
        assert!(hb.is_alive(103_000) && !hb.is_alive(105_000));
        assert_eq!(hb.age_ms(103_000), 3_000);
        assert!(!serde_json::to_string(&hb)
            .expect("json")
            .contains("arrived"));
    }
}
