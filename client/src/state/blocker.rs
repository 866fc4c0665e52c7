//! Why the pending devices of a fleet do not run: no agent, none that fits, none with
//! room, or every agent refused it (and what they said).

use std::collections::BTreeMap;

use pluribus_common::messages::Heartbeat;
use pluribus_common::spec::FleetSpec;

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
pub(super) fn refusal(fleet: &str, live: &[&Heartbeat], pending: u64) -> Option<String> {
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
