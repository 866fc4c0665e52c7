//! `agents`: the agents list.

use anyhow::Result;
use pluribus_common::time::now_ms;
use serde::Serialize;

use super::Global;
use crate::output::{agents_table, print_json};
use crate::state::{load_agents, AgentRow};

#[derive(Serialize)]
struct Output {
    agents: Vec<AgentRow>,
}

/// Runs `agents`.
pub async fn run(g: &Global) -> Result<()> {
    let ctx = g.open().await?;
    let agents = load_agents(&ctx).await?;
    let now = now_ms();
    let out = Output {
        agents: agents.iter().map(|h| AgentRow::new(h, now)).collect(),
    };
    if g.json {
        return print_json(&out);
    }
    print!("{}", agents_table(&out.agents));
    Ok(())
}
