//! `rebalance`: ask every agent to release the shards above its fair share now.

use std::time::Duration;

use anyhow::{bail, Result};
use pluribus_common::messages::AgentOp;
use serde::Serialize;

use super::Global;
use crate::bus::request_all;
use crate::output::{print_json, Table};

/// How long to collect answers.
const COLLECT: Duration = Duration::from_secs(2);

#[derive(Serialize)]
struct Row {
    agent_id: Option<String>,
    agent_name: Option<String>,
    released: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct Output {
    agents: Vec<Row>,
    released: u32,
}

/// Runs `rebalance`.
pub async fn run(g: &Global) -> Result<()> {
    let conn = g.connect().await?;
    let answers = request_all(&conn, AgentOp::Rebalance, COLLECT).await?;
    if answers.is_empty() {
        bail!("no agent answered: is any running? see `pluribusctl agents`");
    }
    let mut rows: Vec<Row> = answers
        .into_iter()
        .map(|a| match a {
            Ok(a) => Row {
                agent_id: Some(a.heartbeat.id),
                agent_name: Some(a.heartbeat.name),
                released: a.released,
                error: None,
            },
            Err(e) => Row {
                agent_id: None,
                agent_name: None,
                released: 0,
                error: Some(e),
            },
        })
        .collect();
    rows.sort_by(|a, b| a.agent_name.cmp(&b.agent_name));
    let out = Output {
        released: rows.iter().map(|r| r.released).sum(),
        agents: rows,
    };
    if g.json {
        return print_json(&out);
    }
    let mut t = Table::new(&["AGENT", "ID", "RELEASED"]);
    for r in &out.agents {
        t.row(vec![
            r.agent_name.clone().unwrap_or_else(|| "?".into()),
            r.agent_id.clone().unwrap_or_else(|| "?".into()),
            match &r.error {
                Some(e) => format!("error: {e}"),
                None => r.released.to_string(),
            },
        ]);
    }
    print!("{}", t.render());
    println!(
        "{} shards released by {} agents; the agents with room take them",
        out.released,
        out.agents.len()
    );
    Ok(())
}
