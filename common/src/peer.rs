//! What agents read of each other: an agent's peer record (`<agent id>` in the peers
//! bucket), the part of its heartbeat that placement, fair share and rebalancing decide on.
//! It is written only when it changes, so a fleet at rest writes none and an agent does not
//! follow the others' 2 s heartbeats (counters and histograms, which only `pluribusctl`
//! reads from the agents bucket).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::messages::Heartbeat;
use crate::PROTOCOL_VERSION;

fn v1() -> u32 {
    1
}

/// One agent as the others see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Protocol version.
    #[serde(default = "v1")]
    pub v: u32,
    /// Agent id (a UUID, new per process).
    pub id: String,
    /// Human-friendly name (`--name`).
    pub name: String,
    /// Labels (`--labels`).
    pub labels: BTreeMap<String, String>,
    /// Devices running.
    pub devices: u64,
    /// Most devices the agent takes (`--max-devices`), if limited.
    pub capacity: Option<u64>,
    /// Draining: takes no work and hands off what it has.
    pub draining: bool,
    /// Most devices on connection-holding sinks the agent takes, if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_capacity: Option<u64>,
    /// Devices on connection-holding sinks running now.
    #[serde(default)]
    pub connection_devices: u64,
    /// Fleets this agent could not start a shard of, and why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refusals: BTreeMap<String, String>,
    /// Device types the agent can run.
    pub device_types: Vec<String>,
    /// Sink types the agent can use.
    pub sink_types: Vec<String>,
}

impl Peer {
    /// The peer record of a heartbeat.
    pub fn of(hb: &Heartbeat) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            id: hb.id.clone(),
            name: hb.name.clone(),
            labels: hb.labels.clone(),
            devices: hb.devices,
            capacity: hb.capacity,
            draining: hb.draining,
            connection_capacity: hb.connection_capacity,
            connection_devices: hb.connection_devices,
            refusals: hb.refusals.clone(),
            device_types: hb.device_types.clone(),
            sink_types: hb.sink_types.clone(),
        }
    }

    /// True when `other` differs from this record in its device counts only (what changes
    /// while shards start and stop; the writer spaces such rewrites out).
    pub fn differs_in_counts_only(&self, other: &Self) -> bool {
        self != other
            && Self {
                devices: other.devices,
                connection_devices: other.connection_devices,
                ..self.clone()
            } == *other
    }

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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> Peer {
        Peer {
            v: 1,
            id: "a1".into(),
            name: "one".into(),
            labels: BTreeMap::from([("zone".into(), "eu".into())]),
            devices: 10,
            capacity: Some(100),
            draining: false,
            connection_capacity: None,
            connection_devices: 0,
            refusals: BTreeMap::new(),
            device_types: vec!["generic".into()],
            sink_types: vec!["nats".into()],
        }
    }

    #[test]
    fn round_trips_and_tells_count_changes_apart() {
        let p = peer();
        let back: Peer = crate::wire::decode(&crate::wire::encode(&p)).expect("decodes");
        assert_eq!(back, p);
        let more = Peer {
            devices: 20,
            ..p.clone()
        };
        assert!(p.differs_in_counts_only(&more));
        assert!(!p.differs_in_counts_only(&p));
        let draining = Peer {
            draining: true,
            devices: 20,
            ..p.clone()
        };
        assert!(!p.differs_in_counts_only(&draining));
        assert_eq!(draining.spare(), Some(0));
        assert_eq!(p.spare(), Some(90));
    }

    #[test]
    fn a_heartbeat_that_is_not_a_peer_record_is_refused() {
        assert!(crate::wire::decode::<Peer>(br#"{"v":1,"id":"x"}"#).is_err());
    }
}
