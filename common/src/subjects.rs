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

    /// KV bucket of the agents' liveness keys (`<agent id>`, per-key TTL, renewed about
    /// every second). Each is watched by its agent and a few ring neighbours, not by all.
    pub fn live_bucket(&self) -> String {
        self.bucket("live")
    }

    /// The second liveness bucket: every agent keeps its key in both, and an agent counts
    /// as gone only when both keys have expired. Each bucket is a stream of its own, whose
    /// leaders the agents keep on different NATS nodes, so the death of one node (and the
    /// election that follows) never stops every renewal.
    pub fn live2_bucket(&self) -> String {
        self.bucket("live2")
    }

    /// Both liveness buckets, the first one first.
    pub fn live_buckets(&self) -> [String; 2] {
        [self.live_bucket(), self.live2_bucket()]
    }

    /// KV bucket of the agents' peer records (`<agent id>`: what agents decide on about
    /// each other, written only when it changes). Only agents use it.
    pub fn peers_bucket(&self) -> String {
        self.bucket("peers")
    }

    /// KV bucket of detached scenario runs: `run.<id>` (the scenario, its progress and, at
    /// the end, its outcome) and `lease.<id>` (the agent executing it: create-only, TTL).
    pub fn scenarios_bucket(&self) -> String {
        self.bucket("scenarios")
    }
}

/// In a subject pattern (see [`reserved_subject`]), stands for "one or more digits": what
/// an `{index}` placeholder renders to.
pub const DIGITS: char = '\u{1}';

/// Why telemetry may not be published on `pattern`, if it may not: it can reach a NATS
/// system subject (`$KV`, `$JS`, `$SYS`, ...), a reply inbox (`_INBOX...`) or Pluribus's own
/// control plane (`pluribus.v1.…` in any namespace: leases, offers, commands, heartbeats).
///
/// `pattern` is a concrete subject, or one where [`DIGITS`] marks where a device index goes,
/// so that one check covers every device of a counted fleet. This is the one check both
/// `pluribusctl` (before deploy) and the agents (on every fleet record they read) apply.
pub fn reserved_subject(pattern: &str) -> Option<&'static str> {
    let tokens: Vec<Vec<char>> = pattern.split('.').map(|t| t.chars().collect()).collect();
    let first = tokens.first()?;
    if first.first() == Some(&'$') {
        return Some("NATS system subjects ($KV, $JS, $SYS, ...)");
    }
    if could_match(first, &"_INBOX".chars().collect::<Vec<_>>(), true) {
        return Some("reply inboxes (_INBOX...)");
    }
    let is = |i: usize, word: &str| {
        tokens
            .get(i)
            .is_some_and(|t| could_match(t, &word.chars().collect::<Vec<_>>(), false))
    };
    if (is(0, "pluribus") && is(1, "v1")) || (is(1, "pluribus") && is(2, "v1")) {
        return Some("Pluribus's own control subjects (pluribus.v1.…, in any namespace)");
    }
    None
}

/// True when some rendering of `pat` (where [`DIGITS`] is one or more digits) equals
/// `word`, or with `prefix`, starts with it.
fn could_match(pat: &[char], word: &[char], prefix: bool) -> bool {
    match (pat.first(), word.first()) {
        (_, None) => prefix || pat.is_empty(),
        (None, Some(_)) => false,
        (Some(&DIGITS), Some(w)) => {
            w.is_ascii_digit()
                && (could_match(&pat[1..], &word[1..], prefix)
                    || could_match(pat, &word[1..], prefix))
        }
        (Some(p), Some(w)) => p == w && could_match(&pat[1..], &word[1..], prefix),
    }
}

/// The lease key of one shard.
pub fn lease_key(fleet: &str, shard: u32) -> String {
    format!("{fleet}.{shard}")
}

/// Splits a lease key back into fleet and shard (`None` for a liveness key).
pub fn parse_lease_key(key: &str) -> Option<(&str, u32)> {
    if key.starts_with(LIVENESS_PREFIX) {
        return None;
    }
    let (fleet, shard) = key.rsplit_once('.')?;
    Some((fleet, shard.parse().ok()?))
}

/// What begins an agent's epoch record in the leases bucket. Fleet names cannot begin
/// with `_`, so it never meets a lease key.
const LIVENESS_PREFIX: &str = "_live.";

/// The key of an agent's epoch record in the leases bucket: written once per epoch (after
/// its liveness key in the live bucket was made), deleted once that key is gone; the
/// agent's shard leases are valid while it stands.
pub fn liveness_key(agent_id: &str) -> String {
    format!("{LIVENESS_PREFIX}{agent_id}")
}

/// The agent id of a liveness key (`None` for any other key).
pub fn parse_liveness_key(key: &str) -> Option<&str> {
    key.strip_prefix(LIVENESS_PREFIX)
        .filter(|id| !id.is_empty())
}

/// Keys of the scenarios bucket: a detached run's record is `run.<id>`, its lease
/// `lease.<id>`.
const SCENARIO_RUN_PREFIX: &str = "run.";
const SCENARIO_LEASE_PREFIX: &str = "lease.";

/// The key filter of every run record in the scenarios bucket.
pub const SCENARIO_RUNS: &str = "run.>";

/// The key filter of every run lease in the scenarios bucket.
pub const SCENARIO_LEASES: &str = "lease.>";

/// The key of detached run `id`'s record in the scenarios bucket.
pub fn scenario_run_key(id: &str) -> String {
    format!("{SCENARIO_RUN_PREFIX}{id}")
}

/// The key of detached run `id`'s lease in the scenarios bucket.
pub fn scenario_lease_key(id: &str) -> String {
    format!("{SCENARIO_LEASE_PREFIX}{id}")
}

/// The run id of a run-record key (`None` for any other key).
pub fn parse_scenario_run_key(key: &str) -> Option<&str> {
    key.strip_prefix(SCENARIO_RUN_PREFIX)
        .filter(|id| !id.is_empty())
}

/// The run id of a run-lease key (`None` for any other key).
pub fn parse_scenario_lease_key(key: &str) -> Option<&str> {
    key.strip_prefix(SCENARIO_LEASE_PREFIX)
        .filter(|id| !id.is_empty())
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
    fn control_plane_subjects_are_reserved() {
        for bad in [
            "$KV.pluribus_leases.victim.0",
            "$JS.API.STREAM.DELETE.x",
            "$SYS.REQ.SERVER.PING",
            "_INBOX.abc",
            "_INBOX_viewer.x",
            "pluribus.v1.agents.cmd",
            "pluribus.v1.work",
            "ci1.pluribus.v1.work",
            "x.pluribus.v1",
        ] {
            assert!(reserved_subject(bad).is_some(), "{bad}");
        }
        for ok in [
            "pluribus.telemetry.f.d",
            "telemetry.pluribus.x.v1",
            "a.b.pluribus.v1",
            "INBOX.x",
            "t.$x",
        ] {
            assert_eq!(reserved_subject(ok), None, "{ok}");
        }
    }

    #[test]
    fn index_digits_are_matched_conservatively() {
        let p = |s: &str| s.replace('#', &DIGITS.to_string());
        // `v{index}` renders v1 for device 1.
        assert!(reserved_subject(&p("pluribus.v#.work")).is_some());
        assert!(reserved_subject(&p("_INBOX#.x")).is_some());
        assert!(reserved_subject(&p("pluribus.x#.work")).is_none());
        assert!(reserved_subject(&p("f-#.pluribus.v1")).is_some());
        assert!(reserved_subject(&p("pluribus.telemetry.f.f-#")).is_none());
    }

    #[test]
    fn lease_keys_round_trip() {
        assert_eq!(parse_lease_key(&lease_key("f-1", 12)), Some(("f-1", 12)));
        assert_eq!(parse_lease_key("nodot"), None);
        let live = liveness_key("0b3e-42");
        assert_eq!(parse_lease_key(&live), None);
        assert_eq!(parse_liveness_key(&live), Some("0b3e-42"));
        assert_eq!(parse_liveness_key("f-1.12"), None);
    }
}
