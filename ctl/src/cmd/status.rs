//! `status`: agents and fleets, with what runs where and why devices are pending.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use super::{no_fleet, Global};
use crate::connections::{self, Connections};
use crate::output::{agents_table, dash_if_empty, print_json, shares_text, until, Table};
use crate::state::{AgentRow, FleetStatus, State};

/// Show agents and fleets.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show only this fleet (or single device).
    #[arg(value_name = "FLEET")]
    pub fleet: Option<String>,
}

#[derive(Serialize)]
struct Output {
    agents: Vec<AgentRow>,
    fleets: Vec<FleetStatus>,
    /// Per fleet whose devices hold connections (MQTT) or get responses (HTTP): connected,
    /// connecting, failures by reason, ... from the live agents' heartbeats.
    connections: BTreeMap<String, Connections>,
}

/// Runs `status`.
pub async fn run(g: &Global, args: Args) -> Result<()> {
    let ctx = g.open().await?;
    let st = State::load(&ctx).await?;
    let records: Vec<_> = match &args.fleet {
        Some(name) => vec![st.fleets.get(name).ok_or_else(|| no_fleet(name))?],
        None => st.fleets.values().collect(),
    };
    let mut out = Output {
        agents: st
            .agents
            .iter()
            .map(|h| AgentRow::new(h, st.now_ms))
            .collect(),
        fleets: records.into_iter().map(|r| st.fleet_status(r)).collect(),
        connections: connections::merge(&st.live_agents(), args.fleet.as_deref()),
    };
    // Devices per live agent from the leases, which change at once, rather than from
    // heartbeats, which lag by up to one beat after a claim (all fleets only).
    if args.fleet.is_none() {
        for a in out.agents.iter_mut().filter(|a| a.alive) {
            a.devices = out
                .fleets
                .iter()
                .flat_map(|f| f.agents.iter())
                .filter(|s| s.agent_id == a.id)
                .map(|s| s.devices)
                .sum();
        }
    }
    if g.json {
        return print_json(&out);
    }
    print!("AGENTS\n{}", agents_table(&out.agents));
    print!("{}", saturation_notes(&out.agents));
    print!("\nFLEETS\n");
    print!("{}", fleets_table(&out.fleets, st.now_ms));
    let conns = connections::table(&out.connections);
    if !conns.is_empty() {
        print!("\nCONNECTIONS\n{conns}");
    }
    Ok(())
}

/// One line per live saturated agent, naming its fleets.
fn saturation_notes(agents: &[AgentRow]) -> String {
    agents
        .iter()
        .filter(|a| a.alive && a.saturated)
        .map(|a| {
            format!(
                "SATURATED: agent {} cannot keep up with fleet {}: the generator is the bottleneck, not the system under test (add agents or lower the load)\n",
                a.name,
                a.saturated_fleets.join(", ")
            )
        })
        .collect()
}

/// The fleets table.
fn fleets_table(fleets: &[FleetStatus], now_ms: u64) -> String {
    if fleets.is_empty() {
        return "no fleets: deploy one with `pluribusctl deploy-fleet NAME --count N`\n".into();
    }
    let mut t = Table::new(&[
        "NAME", "KIND", "DESIRED", "RUNNING", "PENDING", "GEN", "SHARDS", "AGENTS", "EXPIRES",
        "LOAD", "REASON",
    ]);
    for f in fleets {
        t.row(vec![
            f.name.clone(),
            match f.kind {
                pluribus_common::record::RecordKind::Fleet => "fleet".into(),
                pluribus_common::record::RecordKind::Device => "device".into(),
            },
            f.desired.to_string(),
            f.running.to_string(),
            f.pending.to_string(),
            f.generation.to_string(),
            format!("{}/{}", f.shards_held, f.shards_total),
            shares_text(&f.agents),
            f.expires_ms.map_or("-".into(), |at| until(now_ms, at)),
            dash_if_empty(f.load.clone().unwrap_or_default()),
            dash_if_empty(f.reason.clone().unwrap_or_default()),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturated_agents_get_a_note() {
        let mut h = crate::state::tests::hb("a", 1, None);
        h.saturated = true;
        let c = pluribus_common::messages::FleetCounters {
            saturated: true,
            ..Default::default()
        };
        h.fleets.insert("heavy".into(), c);
        let rows = [AgentRow::new(&h, h.ts_ms)];
        let notes = saturation_notes(&rows);
        assert!(
            notes.starts_with("SATURATED: agent n-a cannot keep up with fleet heavy"),
            "{notes}"
        );
        assert_eq!(rows[0].saturated_fleets, ["heavy"]);
        let calm = [AgentRow::new(
            &crate::state::tests::hb("b", 1, None),
            100_000,
        )];
        assert_eq!(saturation_notes(&calm), "");
    }
}
