//! The deploy logic shared by `deploy` and `deploy-fleet`: record the spec (create, keep or
//! replace), announce it, offer its shards and wait for the agents to run it.

use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use pluribus_common::messages::EventKind;
use pluribus_common::record::{FleetRecord, RecordKind};
use pluribus_common::spec::FleetSpec;
use pluribus_common::time::now_ms;
use pluribus_common::wire::{decode, encode};

use crate::bus;
use crate::state::{self, LeaseMap};
use crate::wait;
use crate::Ctx;

/// Devices start their schedules this long after they are recorded, so that agents have
/// time to claim them and every device sends seq 0.
pub const START_DELAY: Duration = Duration::from_secs(2);

/// What to deploy, and how.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    /// Fleet or single device.
    pub kind: RecordKind,
    /// The validated spec.
    pub spec: FleetSpec,
    /// Replace a different spec of the same name.
    pub replace: bool,
    /// Do not wait for the devices to run.
    pub no_wait: bool,
    /// How long to wait.
    pub timeout: Duration,
}

/// The outcome of a deploy.
#[derive(Debug, Clone)]
pub struct Deployed {
    /// The record as it stands.
    pub record: FleetRecord,
    /// The same spec was deployed already; nothing was written.
    pub unchanged: bool,
    /// The fleet's live leases at the end.
    pub leases: LeaseMap,
}

/// "fleet NAME" or "device NAME".
pub fn what(kind: RecordKind, name: &str) -> String {
    match kind {
        RecordKind::Fleet => format!("fleet {name}"),
        RecordKind::Device => format!("device {name}"),
    }
}

/// What to do about an existing record.
#[derive(Debug, Clone, PartialEq)]
enum Decision {
    /// Same spec and kind: nothing to write.
    Unchanged,
    /// Write this record instead.
    Replace(Box<FleetRecord>),
    /// Refuse, saying this.
    Conflict(String),
}

/// Decides what a deploy of `req` does to the `current` record.
fn decide(current: &FleetRecord, req: &DeployRequest, now_ms: u64) -> Decision {
    let name = &req.spec.name;
    if current.kind == req.kind && current.same_spec(&req.spec) {
        return Decision::Unchanged;
    }
    if !req.replace {
        return Decision::Conflict(match (current.kind, req.kind) {
            (RecordKind::Fleet, RecordKind::Fleet) => format!(
                "fleet {name} exists with a different spec: use --replace to replace it, or `pluribusctl scale {name} --count N` to resize it"
            ),
            (RecordKind::Device, RecordKind::Device) => format!(
                "device {name} exists with a different spec: use --replace to replace it"
            ),
            (RecordKind::Device, RecordKind::Fleet) => format!(
                "{name} is deployed already as a single device: use --replace to replace it with this fleet, or choose another name"
            ),
            (RecordKind::Fleet, RecordKind::Device) => format!(
                "{name} is deployed already as a fleet: use --replace to replace it with this device, or choose another device id"
            ),
        });
    }
    let mut next = current.clone();
    // The new spec may have another interval: start the schedule again, seq carrying on
    // above what the old schedule can have sent (so this comes before the spec changes).
    next.restart_schedule(now_ms, START_DELAY);
    next.kind = req.kind;
    next.spec = req.spec.clone();
    next.stopped.clear();
    next.generation += 1;
    Decision::Replace(Box::new(next))
}

/// Records the spec: creates it, keeps it, or replaces it. Returns the record and whether
/// it was unchanged.
async fn write_record(fleets: &kv::Store, req: &DeployRequest) -> Result<(FleetRecord, bool)> {
    let name = req.spec.name.as_str();
    let cannot = || format!("cannot write {} to the fleets bucket", what(req.kind, name));
    for _ in 0..5 {
        let now = now_ms();
        let entry = fleets
            .entry(name)
            .await
            .with_context(|| format!("cannot read {name} from the fleets bucket"))?;
        match entry {
            Some(e) if e.operation == Operation::Put => {
                let current: FleetRecord = decode(&e.value).with_context(|| {
                    format!("the record of {name} in the fleets bucket is unreadable")
                })?;
                match decide(&current, req, now) {
                    Decision::Unchanged => return Ok((current, true)),
                    Decision::Conflict(msg) => bail!(msg),
                    Decision::Replace(next) => {
                        match fleets.update(name, encode(&next), e.revision).await {
                            Ok(_) => return Ok((*next, false)),
                            Err(err) if err.kind() == UpdateErrorKind::WrongLastRevision => {}
                            Err(err) => return Err(err).with_context(cannot),
                        }
                    }
                }
            }
            _ => {
                let record = FleetRecord::new(req.kind, req.spec.clone(), now, START_DELAY);
                match fleets.create(name, encode(&record)).await {
                    Ok(_) => return Ok((record, false)),
                    Err(err) if err.kind() == CreateErrorKind::AlreadyExists => {}
                    Err(err) => return Err(err).with_context(cannot),
                }
            }
        }
    }
    bail!("{name} keeps changing under us (someone else is writing it): try again")
}

/// Deploys: a–f of the deploy logic (record, announce, check agents, offer, wait).
pub async fn deploy(ctx: &Ctx, req: DeployRequest) -> Result<Deployed> {
    let (record, unchanged) = write_record(&ctx.buckets.fleets, &req).await?;
    let name = record.name().to_string();
    let what = what(record.kind, &name);
    if !unchanged {
        bus::publish_event(
            &ctx.conn,
            EventKind::FleetCreated {
                fleet: name.clone(),
                devices: record.desired(),
            },
        )
        .await?;
    }
    if !req.no_wait {
        await_first_agent(ctx, AGENT_GRACE.min(req.timeout)).await?;
    }
    if let Some(problem) = agents_problem(ctx, &record, &what).await? {
        if req.no_wait {
            eprintln!("warning: {problem}");
            return finish_no_wait(ctx, record, unchanged).await;
        }
        bail!(problem);
    }
    bus::offer_shards(&ctx.conn, &name, 0..record.shard_count()).await?;
    if req.no_wait {
        return finish_no_wait(ctx, record, unchanged).await;
    }
    let leases = wait::until_running(ctx, &record, req.timeout).await?;
    Ok(Deployed {
        record,
        unchanged,
        leases,
    })
}

async fn finish_no_wait(ctx: &Ctx, record: FleetRecord, unchanged: bool) -> Result<Deployed> {
    let mut leases = state::load_leases(ctx, &format!("{}.*", record.name())).await?;
    Ok(Deployed {
        leases: leases.remove(record.name()).unwrap_or_default(),
        record,
        unchanged,
    })
}

/// How long a deploy waits for a first live agent before calling the cluster empty: agents
/// started a moment ago (by a script, the demo) heartbeat once they can take work.
const AGENT_GRACE: Duration = Duration::from_secs(10);

/// Waits up to `grace` while no agent is alive at all (a cluster with live agents, or one
/// still empty after `grace`, returns at once or then; the caller reports it).
async fn await_first_agent(ctx: &Ctx, grace: Duration) -> Result<()> {
    let until = tokio::time::Instant::now() + grace;
    let mut said = false;
    loop {
        let agents = state::load_agents(ctx).await?;
        if !state::live(&agents, now_ms()).is_empty() || tokio::time::Instant::now() >= until {
            return Ok(());
        }
        if !said {
            eprintln!(
                "no agent is alive yet: waiting up to {} for one",
                crate::output::duration(grace)
            );
            said = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Why no live agent can run `record`, if so.
pub async fn agents_problem(ctx: &Ctx, record: &FleetRecord, what: &str) -> Result<Option<String>> {
    let agents = state::load_agents(ctx).await?;
    let live = state::live(&agents, now_ms());
    if live.is_empty() {
        return Ok(Some(format!(
            "{what} is recorded, but no agent is alive to run it: start one with `{}`",
            ctx.agent_command()
        )));
    }
    Ok(state::fit_problem(&record.spec, &live).map(|why| {
        format!("{what} is recorded, but {why}: start an agent that can run it, or deploy a spec they can run with --replace")
    }))
}

/// Re-reads a record for commands that change it (scale, stop): the record and its revision.
pub async fn read_record(fleets: &kv::Store, name: &str) -> Result<Option<(FleetRecord, u64)>> {
    let entry = fleets
        .entry(name)
        .await
        .with_context(|| format!("cannot read {name} from the fleets bucket"))?;
    match entry {
        Some(e) if e.operation == Operation::Put => {
            let r: FleetRecord = decode(&e.value).map_err(|err| {
                anyhow!("the record of {name} in the fleets bucket is unreadable: {err}")
            })?;
            Ok(Some((r, e.revision)))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(spec: FleetSpec, replace: bool) -> DeployRequest {
        DeployRequest {
            kind: RecordKind::Fleet,
            spec,
            replace,
            no_wait: true,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn the_same_spec_is_unchanged() {
        let spec = FleetSpec::counted("f", 10);
        let cur = FleetRecord::new(RecordKind::Fleet, spec.clone(), 1_000, START_DELAY);
        assert_eq!(decide(&cur, &req(spec, false), 5_000), Decision::Unchanged);
    }

    #[test]
    fn a_different_spec_needs_replace() {
        let cur = FleetRecord::new(
            RecordKind::Fleet,
            FleetSpec::counted("f", 10),
            1_000,
            START_DELAY,
        );
        let Decision::Conflict(msg) = decide(&cur, &req(FleetSpec::counted("f", 20), false), 0)
        else {
            unreachable!("expected a conflict")
        };
        assert!(msg.contains("use --replace"), "{msg}");
        assert!(msg.contains("pluribusctl scale f --count N"), "{msg}");

        let mut dev = req(FleetSpec::counted("f", 10), false);
        dev.kind = RecordKind::Device;
        assert!(matches!(decide(&cur, &dev, 0), Decision::Conflict(m) if m.contains("as a fleet")));
    }

    #[test]
    fn replace_restarts_the_schedule_with_seq_above_and_bumps_the_generation() {
        let mut cur = FleetRecord::new(
            RecordKind::Fleet,
            FleetSpec::counted("f", 10),
            1_000,
            START_DELAY,
        );
        cur.stopped.insert(3);
        let mut spec = FleetSpec::counted("f", 20);
        spec.device.interval = Duration::from_millis(500);
        let Decision::Replace(next) = decide(&cur, &req(spec.clone(), true), 50_000) else {
            unreachable!("expected a replace")
        };
        assert_eq!(next.generation, 2);
        assert_eq!(next.created_ms, 1_000);
        assert_eq!(next.spec, spec);
        // Every device starts again at 52 s, above seq 49 (1 s slots since 3 s).
        assert_eq!(next.epoch_for(0).epoch_ms, 52_000);
        assert_eq!(next.epoch_for(15).epoch_ms, 52_000);
        assert!(next.epoch_for(0).seq_base >= 49);
        assert!(next.stopped.is_empty());
    }
}
