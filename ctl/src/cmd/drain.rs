//! `drain`: make an agent hand off its work and take none (or take work again).

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use pluribus_common::messages::{AgentAnswer, AgentOp, Heartbeat, LeaseRecord};
use pluribus_common::time::now_ms;
use serde::Serialize;

use super::{Ctx, Global};
use crate::bus::request_agent;
use crate::output::{duration, plural, print_json};
use crate::state::load_agents;
use crate::wait::{self, LeaseWatch, Step};

/// How long the agent has to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Drain an agent.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The agent's id or name.
    #[arg(value_name = "AGENT")]
    pub agent: String,
    /// Let the agent take work again.
    #[arg(long)]
    pub undo: bool,
    /// Return once the agent has answered; do not wait for it to hand off its shards.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for the agent to hand off its shards.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Serialize)]
struct Output<'a> {
    agent_id: &'a str,
    agent_name: &'a str,
    draining: bool,
    /// Shards it still held when the command returned (None when not waited for).
    shards_left: Option<usize>,
}

/// The agent `want` names (an id, or a name), among the known agents.
fn resolve<'a>(agents: &'a [Heartbeat], want: &str, now_ms: u64) -> Result<&'a Heartbeat> {
    if let Some(h) = agents.iter().find(|h| h.id == want) {
        return Ok(h);
    }
    let named: Vec<&Heartbeat> = agents.iter().filter(|h| h.name == want).collect();
    let alive: Vec<&&Heartbeat> = named.iter().filter(|h| h.is_alive(now_ms)).collect();
    match (named.as_slice(), alive.as_slice()) {
        (_, [one]) => Ok(one),
        ([one], []) => Ok(one),
        ([], _) => {
            let known = agents
                .iter()
                .map(|h| {
                    format!(
                        "{} ({}{})",
                        h.name,
                        h.id,
                        if h.is_alive(now_ms) {
                            ""
                        } else {
                            ", not alive"
                        }
                    )
                })
                .collect::<Vec<_>>();
            if known.is_empty() {
                bail!("no agent {want}: no agents are known; start one with `pluribus-agent`")
            }
            bail!("no agent {want}: known agents: {}", known.join(", "))
        }
        (many, _) => bail!(
            "agent name {want} is ambiguous: give the id of one of {}",
            many.iter()
                .map(|h| format!(
                    "{} ({})",
                    h.id,
                    if h.is_alive(now_ms) {
                        "alive"
                    } else {
                        "not alive"
                    }
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The leases an agent holds, among those watched.
fn held_by<'a>(w: &'a LeaseWatch, agent_id: &str) -> Vec<&'a LeaseRecord> {
    w.all()
        .values()
        .flat_map(|m| m.values())
        .filter(|l| l.agent_id == agent_id)
        .collect()
}

/// Asks agent `want` (an id or a name) to drain, or with `undo` to take work again; returns
/// the agent's entry and its answer, without waiting for the hand-off (shared by `drain`
/// and the dashboard).
pub async fn drain(ctx: &Ctx, want: &str, undo: bool) -> Result<(Heartbeat, AgentAnswer)> {
    let agents = load_agents(ctx).await?;
    let agent = resolve(&agents, want, now_ms())?.clone();
    let who = format!("{} ({})", agent.name, agent.id);
    let answer = request_agent(
        &ctx.conn,
        &agent.id,
        &who,
        AgentOp::Drain { undo },
        ANSWER_TIMEOUT,
    )
    .await?;
    Ok((agent, answer))
}

/// Runs `drain`.
pub async fn run(g: &Global, args: Args) -> Result<()> {
    let ctx = g.open().await?;
    let (agent, answer) = drain(&ctx, &args.agent, args.undo).await?;
    let (id, name) = (agent.id.as_str(), agent.name.as_str());
    let who = format!("{name} ({id})");
    let mut left = None;
    if !args.undo && !args.no_wait {
        let watch = wait::leases_until(
            &ctx,
            ">",
            args.timeout,
            |w| {
                let held = held_by(w, id);
                if held.is_empty() {
                    return Step::Done;
                }
                Step::Wait(format!(
                    "draining {name}: {} ({}) to hand off",
                    plural(held.len() as u64, "shard"),
                    plural(held.iter().map(|l| l.devices).sum(), "device")
                ))
            },
            |w| {
                anyhow!(
                    "timed out after {}: agent {who} still holds {}: see `pluribusctl status`",
                    duration(args.timeout),
                    plural(held_by(w, id).len() as u64, "shard")
                )
            },
        )
        .await?;
        left = Some(held_by(&watch, id).len());
    }
    if g.json {
        return print_json(&Output {
            agent_id: id,
            agent_name: name,
            draining: answer.heartbeat.draining,
            shards_left: left,
        });
    }
    match (args.undo, left) {
        (true, _) => println!("agent {who} takes work again"),
        (false, Some(_)) => println!("agent {who} drained: it holds no shards"),
        (false, None) => println!(
            "agent {who} is draining ({} running); not waiting: see `pluribusctl agents`",
            plural(answer.heartbeat.devices, "device")
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::fixtures::hb;

    #[test]
    fn agents_resolve_by_id_or_name() {
        let a = hb("a", 0, None);
        let mut old_b = hb("b-old", 0, None);
        old_b.name = "n-b".into();
        old_b.ts_ms = 1;
        let mut b = hb("b", 0, None);
        b.name = "n-b".into();
        let agents = vec![a, old_b, b];
        let now = 100_500;
        assert_eq!(
            resolve(&agents, "a", now).map(|h| h.id.as_str()).ok(),
            Some("a")
        );
        assert_eq!(
            resolve(&agents, "n-a", now).map(|h| h.id.as_str()).ok(),
            Some("a")
        );
        // A restarted agent leaves a stale entry with its name: the live one wins.
        assert_eq!(
            resolve(&agents, "n-b", now).map(|h| h.id.as_str()).ok(),
            Some("b")
        );
        let e = resolve(&agents, "zzz", now).expect_err("unknown");
        assert!(e.to_string().contains("known agents: n-a (a)"), "{e}");
        let e = resolve(&agents, "n-b", 1_000_000).expect_err("all stale, two of them");
        assert!(e.to_string().contains("ambiguous"), "{e}");
        let e = resolve(&[], "x", now).expect_err("none");
        assert!(e.to_string().contains("no agents are known"), "{e}");
    }
}
