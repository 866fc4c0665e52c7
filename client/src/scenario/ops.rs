//! What the steps do to the cluster: the same writes as the matching `pluribusctl`
//! commands (compare-and-set on the fleet record, then the event), in the client library so
//! that the agent can run scenarios too.

use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use async_nats::jetstream::kv::UpdateErrorKind;
use futures::StreamExt;
use pluribus_common::load::LoadSpec;
use pluribus_common::messages::{AgentOp, EventKind, Heartbeat};
use pluribus_common::record::FleetRecord;
use pluribus_common::spec::network::plan::RuntimeRule;
use pluribus_common::spec::network::{Cohort, NetRule, MAX_RULES};
use pluribus_common::spec::Template;
use pluribus_common::time::now_ms;
use pluribus_common::wire::encode;

use crate::apply::{agents_problem, read_record, START_DELAY};
use crate::state::{live, load_agents, load_leases};
use crate::{bus, no_fleet, wait, Ctx};

/// How long an agent has to answer a drain.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Changes fleet `name`'s record with `f` (compare and set, a few tries).
pub async fn update(
    ctx: &Ctx,
    name: &str,
    mut f: impl FnMut(&mut FleetRecord) -> Result<()>,
) -> Result<FleetRecord> {
    for _ in 0..5 {
        let (record, revision) = read_record(&ctx.buckets.fleets, name)
            .await?
            .ok_or_else(|| no_fleet(name))?;
        let mut next = record.clone();
        f(&mut next)?;
        match ctx
            .buckets
            .fleets
            .update(name, encode(&next), revision)
            .await
        {
            Ok(_) => return Ok(next),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot write fleet {name} to the fleets bucket"))
            }
        }
    }
    bail!("fleet {name} keeps changing under us (someone else is writing it): try again")
}

/// Resizes a fleet, announces it and offers the new shards (as `pluribusctl scale`).
pub async fn scale(ctx: &Ctx, name: &str, count: u64) -> Result<()> {
    let mut from = 0;
    let record = update(ctx, name, |r| {
        from = r.count();
        if r.spec.count.is_none() {
            bail!("fleet {name} lists its devices: only counted fleets scale");
        }
        if from != count {
            r.scale(count, now_ms(), START_DELAY);
        }
        Ok(())
    })
    .await?;
    if from == count {
        return Ok(());
    }
    bus::publish_event(
        &ctx.conn,
        EventKind::FleetScaled {
            fleet: name.to_string(),
            from,
            to: count,
        },
    )
    .await?;
    if count > from {
        if let Some(p) =
            agents_problem(ctx, &record, &format!("the new size of fleet {name}")).await?
        {
            bail!(p);
        }
        let size = u64::from(record.spec.shard_size.max(1));
        let first = u32::try_from(from / size).unwrap_or(u32::MAX);
        bus::offer_shards(&ctx.conn, name, first..record.shard_count()).await?;
    }
    Ok(())
}

/// Sets (or clears) a fleet's load; the schedule restarts now, `seq` carrying on.
pub async fn set_load(ctx: &Ctx, name: &str, load: Option<&LoadSpec>) -> Result<()> {
    update(ctx, name, |r| {
        r.restart_schedule(now_ms(), Duration::ZERO);
        r.spec.load = load.cloned();
        r.spec.validate().map_err(|e| anyhow!("bad load: {e}"))
    })
    .await
    .map(drop)
}

/// Marks one device of a fleet stopped.
pub async fn stop(ctx: &Ctx, fleet: &str, device: &str) -> Result<()> {
    update(ctx, fleet, |r| {
        let index = r
            .index_of(device)
            .ok_or_else(|| anyhow!("no device {device} in fleet {fleet}"))?;
        r.stopped.insert(index);
        Ok(())
    })
    .await
    .map(drop)
}

/// Deletes a fleet and waits until its devices stopped. A fleet that is not there is fine.
pub async fn delete(ctx: &Ctx, name: &str, timeout: Duration) -> Result<bool> {
    if read_record(&ctx.buckets.fleets, name).await?.is_none() {
        return Ok(false);
    }
    ctx.buckets
        .fleets
        .delete(name)
        .await
        .with_context(|| format!("cannot delete {name} from the fleets bucket"))?;
    bus::publish_event(
        &ctx.conn,
        EventKind::FleetDeleted {
            fleet: name.to_string(),
            reason: "deleted by a scenario".into(),
        },
    )
    .await?;
    wait::until_gone(ctx, name, timeout).await?;
    Ok(true)
}

/// Adds a runtime network rule (its `for` becomes its end), or clears the rules (of a
/// cohort), as `pluribusctl network set|clear`.
pub async fn network(
    ctx: &Ctx,
    fleet: &str,
    set: Option<&NetRule>,
    clear_cohort: Option<&Cohort>,
) -> Result<()> {
    let now = now_ms();
    let record = update(ctx, fleet, |r| {
        r.network.retain(|x| x.until_ms.is_none_or(|u| u > now));
        match set {
            Some(rule) => {
                if r.network.len() >= MAX_RULES {
                    bail!("fleet {fleet} has {MAX_RULES} runtime rules already: clear some first");
                }
                let mut rule = rule.clone();
                let until_ms = rule.duration.take().map(|d| now + d.as_millis() as u64);
                r.network.push(RuntimeRule {
                    rule,
                    since_ms: now,
                    until_ms,
                });
            }
            None => r
                .network
                .retain(|x| clear_cohort.is_some_and(|c| x.rule.cohort.as_ref() != Some(c))),
        }
        Ok(())
    })
    .await?;
    bus::publish_event(
        &ctx.conn,
        EventKind::NetworkChanged {
            fleet: fleet.to_string(),
            change: if set.is_some() {
                "set by a scenario".into()
            } else {
                "cleared by a scenario".into()
            },
            rules: record.network.len() as u64,
        },
    )
    .await
}

/// The agent a drain step names: a name or id, or `holder-of:FLEET` (the live agent
/// holding most of the fleet's devices).
pub async fn resolve_agent(ctx: &Ctx, want: &str) -> Result<Heartbeat> {
    let agents = load_agents(ctx).await?;
    let now = now_ms();
    let alive = live(&agents, now);
    if let Some(fleet) = want.strip_prefix("holder-of:") {
        let leases = load_leases(ctx, &format!("{fleet}.*")).await?;
        let mut by_agent = std::collections::BTreeMap::<&str, u64>::new();
        for l in leases.get(fleet).into_iter().flat_map(|m| m.values()) {
            *by_agent.entry(l.agent_id.as_str()).or_default() += l.devices;
        }
        let best = by_agent
            .iter()
            .max_by_key(|(id, n)| (**n, std::cmp::Reverse(**id)))
            .map(|(id, _)| *id)
            .ok_or_else(|| anyhow!("no agent holds fleet {fleet}"))?;
        return alive
            .iter()
            .find(|h| h.id == best)
            .map(|h| (*h).clone())
            .ok_or_else(|| anyhow!("the agent holding fleet {fleet} ({best}) is not alive"));
    }
    let found: Vec<&&Heartbeat> = alive
        .iter()
        .filter(|h| h.id == want || h.name == want)
        .collect();
    match found.as_slice() {
        [one] => Ok((**one).clone()),
        [] => bail!("no live agent named {want}: see `pluribusctl agents`"),
        _ => bail!("several live agents are named {want}: give its id"),
    }
}

/// Asks an agent to drain (or to take work again); returns its id.
pub async fn drain(ctx: &Ctx, want: &str, undo: bool) -> Result<String> {
    let agent = resolve_agent(ctx, want).await?;
    let who = format!("{} ({})", agent.name, agent.id);
    bus::request_agent(
        &ctx.conn,
        &agent.id,
        &who,
        AgentOp::Drain { undo },
        ANSWER_TIMEOUT,
    )
    .await?;
    Ok(agent.id)
}

/// Ends an agent's process as a crash would; returns its id.
pub async fn kill_agent(ctx: &Ctx, want: &str) -> Result<String> {
    let agent = resolve_agent(ctx, want).await?;
    let who = format!("{} ({})", agent.name, agent.id);
    bus::request_agent(&ctx.conn, &agent.id, &who, AgentOp::Kill, ANSWER_TIMEOUT).await?;
    Ok(agent.id)
}

/// Asks an agent by id to take work again (cleanup of a drain).
pub async fn undrain_id(ctx: &Ctx, id: &str) -> Result<()> {
    bus::request_agent(
        &ctx.conn,
        id,
        id,
        AgentOp::Drain { undo: true },
        ANSWER_TIMEOUT,
    )
    .await
    .map(drop)
}

/// How many commands were sent, and how many were answered (without an error) in time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replies {
    /// Commands sent.
    pub sent: u64,
    /// Answered with a result.
    pub ok: u64,
    /// Answered with an error.
    pub errors: u64,
}

/// The most devices one command step addresses.
pub const MAX_COMMANDED: u64 = 100_000;

/// Sends `payload` to one device, a cohort or every running device of a fleet, and
/// collects the replies that arrive within `within`.
pub async fn command(
    ctx: &Ctx,
    fleet: &str,
    device: Option<&str>,
    cohort: Option<&Cohort>,
    payload: &serde_json::Value,
    within: Duration,
) -> Result<Replies> {
    let (record, _) = read_record(&ctx.buckets.fleets, fleet)
        .await?
        .ok_or_else(|| no_fleet(fleet))?;
    let ids: Vec<String> = match device {
        Some(d) => vec![d.to_string()],
        None => {
            let template = record
                .spec
                .id_template
                .as_deref()
                .and_then(|t| Template::parse("id_template", t, false).ok());
            let seed = record.spec.seed.unwrap_or(0);
            (0..record.desired().min(MAX_COMMANDED))
                .filter(|i| !record.stopped.contains(i))
                .map(|i| (i, record.resolve(i, template.as_ref()).device_id))
                .filter(|(i, id)| cohort.is_none_or(|c| c.contains(seed, *i, id)))
                .map(|(_, id)| id)
                .collect()
        }
    };
    let conn = &ctx.conn;
    let inbox = conn.client.new_inbox();
    let mut sub = conn
        .client
        .subscribe(format!("{inbox}.*"))
        .await
        .context("cannot subscribe to a reply inbox")?;
    let body = bytes::Bytes::from(serde_json::to_vec(payload)?);
    for (n, id) in ids.iter().enumerate() {
        conn.client
            .publish_with_reply(
                conn.ns.device_cmd(fleet, id),
                format!("{inbox}.{n}"),
                body.clone(),
            )
            .await
            .with_context(|| format!("cannot send the command to {id}"))?;
    }
    conn.client
        .flush()
        .await
        .context("cannot flush the commands to NATS")?;
    let mut r = Replies {
        sent: ids.len() as u64,
        ..Default::default()
    };
    let mut seen = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + within;
    while (seen.len() as u64) < r.sent {
        let Ok(Some(m)) = tokio::time::timeout_at(deadline, sub.next()).await else {
            break;
        };
        if !seen.insert(m.subject.to_string()) {
            continue;
        }
        let answer: serde_json::Value = serde_json::from_slice(&m.payload).unwrap_or_default();
        if answer.get("error").is_some() || m.status.is_some() {
            r.errors += 1;
        } else {
            r.ok += 1;
        }
    }
    let _ = sub.unsubscribe().await;
    Ok(r)
}
