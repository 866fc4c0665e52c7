//! How an agent behaves: [`AgentConfig`] (what `pluribus-agent`'s flags set) and the
//! defaults and fence it derives. Apart from `agent.rs`, which starts an agent with it, so
//! that the control loop can read it without importing the starter.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Default TTL of an agent's liveness entry, on which its shard leases stand: its devices
/// run again elsewhere within about this long after it dies.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(3);
/// Default heartbeat interval.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(2);
/// Default wake-up grid of the device timers (`--wake-grid`).
pub const DEFAULT_WAKE_GRID: Duration = Duration::from_millis(1);

/// How an agent behaves.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Human-friendly name.
    pub name: String,
    /// Labels fleets can require (`placement`).
    pub labels: BTreeMap<String, String>,
    /// Most devices this agent runs (None: no limit).
    pub max_devices: Option<u64>,
    /// Most devices on connection-holding sinks (None: no limit). `main` derives it from
    /// the open-files limit unless `--max-connections` is given.
    pub max_connections: Option<u64>,
    /// Time-to-live of the agent's liveness entry (its shard leases stand while it does).
    /// Renewed every third of it; the agent fences itself (stops every shard) when it could
    /// not renew for 75% of it.
    pub lease_ttl: Duration,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Wake-up grid of the shard runners' device timers (see `--wake-grid`).
    pub wake_grid: Duration,
    /// How often unheld shards are re-offered and the balance checked.
    pub reconcile: Duration,
    /// Release shards above the fair share when an agent with room is around.
    pub auto_rebalance: bool,
    /// Serve Prometheus metrics on this address (`/metrics`), if set.
    pub metrics_listen: Option<SocketAddr>,
    /// What sink specs may reference as `env:` and `file:` secrets.
    pub secrets: crate::secrets::SecretPolicy,
    /// A NATS connection of its own for the liveness entry, so that telemetry (the `nats`
    /// sink shares the agent's connection) never queues ahead of a renewal. None: the
    /// agent's connection (`main` makes one).
    pub liveness_client: Option<async_nats::Client>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            name: "agent".into(),
            labels: BTreeMap::new(),
            max_devices: None,
            max_connections: None,
            lease_ttl: DEFAULT_LEASE_TTL,
            heartbeat: DEFAULT_HEARTBEAT,
            wake_grid: DEFAULT_WAKE_GRID,
            reconcile: Duration::from_secs(2),
            auto_rebalance: true,
            metrics_listen: None,
            secrets: Default::default(),
            liveness_client: None,
        }
    }
}

impl AgentConfig {
    /// The time after the last successful liveness renewal at which the agent stops sending
    /// (every shard). It is counted from when the renewal was sent, so the entry (counted
    /// from when the server stored it) still has a quarter of its TTL left.
    pub fn fence_after(&self) -> Duration {
        self.lease_ttl.mul_f64(FENCE_FRACTION)
    }

    /// How often the liveness entry is renewed, and how long one attempt may take: a third
    /// of the TTL (1 s by default), so that a blip costs an attempt, not the shards.
    pub fn renew_every(&self) -> Duration {
        self.lease_ttl / 3
    }
}

/// The share of the lease TTL after which an agent that could not renew stops a shard.
pub const FENCE_FRACTION: f64 = 0.75;
