//! `status`: agents and fleets, with what runs where and why devices are pending.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use super::{no_fleet, Global};
use crate::connections::{self, Connections};
use crate::output::{agents_table, print_json, shares_fit, until, wrap, Table, WIDTH};
use crate::state::{AgentRow, FleetStatus, State};

/// Show agents and fleets.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show only this fleet (or single device).
    #[arg(value_name = "FLEET")]
    pub fleet: Option<String>,
    /// Whole agent ids and no line width limit (default: 8-character ids, lines within
    /// 100 columns).
    #[arg(long, short = 'w')]
    pub wide: bool,
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
    let out = Output {
        agents: AgentRow::all(&st),
        fleets: records.into_iter().map(|r| st.fleet_status(r)).collect(),
        connections: connections::merge(&st.live_agents(), args.fleet.as_deref()),
    };
    if g.json {
        return print_json(&out);
    }
    let width = if args.wide { usize::MAX } else { WIDTH };
    print!("AGENTS\n{}", agents_table(&out.agents, args.wide));
    print!("{}", saturation_notes(&out.agents, width));
    print!("\nFLEETS\n");
    print!("{}", fleets_table(&out.fleets, st.now_ms, width));
    let conns = connections::table(&out.connections, width, true);
    if !conns.is_empty() {
        print!("\nCONNECTIONS\n{conns}");
    }
    Ok(())
}

/// One note per live saturated agent, naming its fleets, wrapped to `width`.
fn saturation_notes(agents: &[AgentRow], width: usize) -> String {
    agents
        .iter()
        .filter(|a| a.alive && a.saturated)
        .map(|a| {
            let text = format!(
                "agent {} cannot keep up with fleet {}: the generator is the bottleneck, not the system under test (add agents or lower the load)",
                a.name,
                a.saturated_fleets.join(", ")
            );
            wrap("SATURATED: ", &text, width)
        })
        .collect()
}

/// The fleets table, then each fleet's load shape and reason on lines of their own (wrapped
/// to `width`): they are sentences, too long for a column.
fn fleets_table(fleets: &[FleetStatus], now_ms: u64, width: usize) -> String {
    if fleets.is_empty() {
        return "no fleets: deploy one with `pluribusctl deploy-fleet NAME --count N`\n".into();
    }
    let mut t = Table::new(&[
        "NAME", "KIND", "DESIRED", "ASSIGNED", "ACTIVE", "PENDING", "GEN", "SHARDS", "EXPIRES",
        "AGENTS",
    ]);
    let mut notes = String::new();
    let mut shares = Vec::new();
    for f in fleets {
        shares.push(&f.agents);
        t.row(vec![
            f.name.clone(),
            match f.kind {
                pluribus_common::record::RecordKind::Fleet => "fleet".into(),
                pluribus_common::record::RecordKind::Device => "device".into(),
            },
            f.desired.to_string(),
            f.assigned.to_string(),
            f.active.to_string(),
            f.pending.to_string(),
            f.generation.to_string(),
            format!("{}/{}", f.shards_held, f.shards_total),
            f.expires_ms.map_or("-".into(), |at| until(now_ms, at)),
        ]);
        if let Some(load) = &f.load {
            notes.push_str(&wrap(&format!("{}: load: ", f.name), load, width));
        }
        if let Some(reason) = &f.reason {
            notes.push_str(&wrap(&format!("{}: ", f.name), reason, width));
        }
    }
    // AGENTS comes last and gets what room is left: where the other columns end shows
    // with a one-character stand-in.
    let mut probe = t.clone();
    probe.push_column(&vec!["x".to_string(); fleets.len()]);
    let start = probe
        .render()
        .lines()
        .map(|l| l.chars().count().saturating_sub(1))
        .max()
        .unwrap_or(0);
    let room = width.saturating_sub(start).max("AGENTS".len());
    let cells: Vec<String> = shares.iter().map(|s| shares_fit(s, room)).collect();
    t.push_column(&cells);
    t.render() + &notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturated_agents_get_a_note() {
        let mut h = crate::state::fixtures::hb("a", 1, None);
        h.saturated = true;
        let c = pluribus_common::messages::FleetCounters {
            saturated: true,
            ..Default::default()
        };
        h.fleets.insert("heavy".into(), c);
        let rows = [AgentRow::new(&h, h.ts_ms)];
        let notes = saturation_notes(&rows, WIDTH);
        assert!(
            notes.starts_with("SATURATED: agent n-a cannot keep up with fleet heavy"),
            "{notes}"
        );
        assert_eq!(rows[0].saturated_fleets, ["heavy"]);
        let calm = [AgentRow::new(
            &crate::state::fixtures::hb("b", 1, None),
            100_000,
        )];
        assert_eq!(saturation_notes(&calm, WIDTH), "");
    }
}
