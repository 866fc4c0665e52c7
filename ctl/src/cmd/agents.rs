//! `agents`: the agents list.

use anyhow::Result;
use serde::Serialize;

use super::Global;
use crate::output::{agents_table, print_json};
use crate::state::{AgentRow, State};

/// List the agents.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Whole agent ids (default: their first 8 characters).
    #[arg(long, short = 'w')]
    pub wide: bool,
}

#[derive(Serialize)]
struct Output {
    agents: Vec<AgentRow>,
}

/// Runs `agents`.
pub async fn run(g: &Global, args: Args) -> Result<()> {
    let ctx = g.open().await?;
    // The leases too: each agent's assigned devices, as in `status`.
    let st = State::load(&ctx).await?;
    let out = Output {
        agents: AgentRow::all(&st),
    };
    if g.json {
        return print_json(&out);
    }
    print!("{}", agents_table(&out.agents, args.wide));
    Ok(())
}
