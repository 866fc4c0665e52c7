//! Every NATS subject and KV bucket Pluribus uses, spelled once.
//!
//! A [`Namespace`] prefixes all of them, so separate runs (or parallel tests) can share one
//! NATS without seeing each other. The default namespace adds no prefix:
//!
//! | what | subject |
//! |---|---|
//! | shard offers (queue group `pluribus-agents`) | `pluribus.v1.work` |
//! | commands to one agent (request/reply) | `pluribus.v1.agent.<agent-id>.cmd` |
//! | commands to every agent (request, many replies) | `pluribus.v1.agents.cmd` |
//! | heartbeats | `pluribus.v1.hb.<agent-id>` |
//! | events | `pluribus.v1.evt.<kind>` |
//! | commands to a device | `pluribus.v1.device.<fleet>.<device-id>.cmd` |
//!
//! With namespace `ci1` every subject gets the prefix `ci1.` and every bucket `ci1_`.

use crate::names::validate_name;
use crate::SpecError;

/// The queue group agents use to share shard offers.
pub const AGENT_QUEUE_GROUP: &str = "pluribus-agents";

/// The default telemetry subject template of the `nats` sink.
pub const DEFAULT_TELEMETRY_SUBJECT: &str = "pluribus.telemetry.{fleet}.{device_id}";

/// A namespace: the prefix on every subject and bucket of one Pluribus installation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespace {
    prefix: Option<String>,
}

impl Namespace {
    /// A namespace by name; the empty string is the default namespace.
    pub fn new(name: &str) -> Result<Self, SpecError> {
        if name.is_empty() {
            return Ok(Self::default());
        }
        validate_name("namespace", name)?;
        Ok(Self {
            prefix: Some(name.to_string()),
        })
    }

    /// The namespace's name ("" for the default one).
    pub fn name(&self) -> &str {
        self.prefix.as_deref().unwrap_or("")
    }

    fn subject(&self, rest: &str) -> String {
        match &self.prefix {
            Some(p) => format!("{p}.pluribus.v1.{rest}"),
            None => format!("pluribus.v1.{rest}"),
        }
    }

    fn bucket(&self, rest: &str) -> String {
        match &self.prefix {
            Some(p) => format!("{p}_pluribus_{rest}"),
            None => format!("pluribus_{rest}"),
        }
    }

    /// Shard offers; agents subscribe in [`AGENT_QUEUE_GROUP`].
    pub fn work(&self) -> String {
        self.subject("work")
    }

    /// Commands for one agent.
    pub fn agent_cmd(&self, agent_id: &str) -> String {
        self.subject(&format!("agent.{agent_id}.cmd"))
    }

    /// Commands for every agent at once (each one replies).
    pub fn agents_cmd(&self) -> String {
        self.subject("agents.cmd")
    }

    /// One agent's heartbeats.
    pub fn heartbeat(&self, agent_id: &str) -> String {
        self.subject(&format!("hb.{agent_id}"))
    }

    /// Every agent's heartbeats.
    pub fn heartbeat_all(&self) -> String {
        self.subject("hb.*")
    }

    /// Events of one kind (see `messages::EventKind::token`).
    pub fn event(&self, kind: &str) -> String {
        self.subject(&format!("evt.{kind}"))
    }

    /// Every event.
    pub fn event_all(&self) -> String {
        self.subject("evt.>")
    }

    /// Commands addressed to one device.
    pub fn device_cmd(&self, fleet: &str, device_id: &str) -> String {
        self.subject(&format!("device.{fleet}.{device_id}.cmd"))
    }

    /// Commands to any device of one fleet (what an agent subscribes to).
    pub fn device_cmd_fleet(&self, fleet: &str) -> String {
        self.subject(&format!("device.{fleet}.*.cmd"))
    }

    /// JetStream stream that keeps the events (`evt.>`) for a bounded time and size, so
    /// `pluribusctl events --since 10m` shows what happened before it started.
    pub fn events_stream(&self) -> String {
        self.bucket("events")
    }

    /// KV bucket with the desired state: one key per fleet or single device.
    pub fn fleets_bucket(&self) -> String {
        self.bucket("fleets")
    }

    /// KV bucket with the shard leases: `<fleet>.<shard>`, created-only with a TTL.
    pub fn leases_bucket(&self) -> String {
        self.bucket("leases")
    }

    /// KV bucket with each live agent's last heartbeat.
    pub fn agents_bucket(&self) -> String {
        self.bucket("agents")
    }
}

/// The lease key of one shard.
pub fn lease_key(fleet: &str, shard: u32) -> String {
    format!("{fleet}.{shard}")
}

/// Splits a lease key back into fleet and shard.
pub fn parse_lease_key(key: &str) -> Option<(&str, u32)> {
    let (fleet, shard) = key.rsplit_once('.')?;
    Some((fleet, shard.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_namespace_has_no_prefix() {
        let ns = Namespace::default();
        assert_eq!(ns.work(), "pluribus.v1.work");
        assert_eq!(ns.fleets_bucket(), "pluribus_fleets");
        assert_eq!(ns.event("fleet_created"), "pluribus.v1.evt.fleet_created");
    }

    #[test]
    fn namespace_prefixes_subjects_and_buckets() {
        let ns = Namespace::new("ci-1").expect("valid");
        assert_eq!(ns.heartbeat("a1"), "ci-1.pluribus.v1.hb.a1");
        assert_eq!(ns.leases_bucket(), "ci-1_pluribus_leases");
        assert!(Namespace::new("a.b").is_err());
        assert!(Namespace::new("a:b").is_err());
    }

    #[test]
    fn lease_keys_round_trip() {
        assert_eq!(parse_lease_key(&lease_key("f-1", 12)), Some(("f-1", 12)));
        assert_eq!(parse_lease_key("nodot"), None);
    }
}
