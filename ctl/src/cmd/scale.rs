//! `scale`: grow or shrink a counted fleet.

use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use async_nats::jetstream::kv::UpdateErrorKind;
use pluribus_common::messages::EventKind;
use pluribus_common::record::{FleetRecord, RecordKind};
use pluribus_common::spec::MAX_FLEET_SIZE;
use pluribus_common::time::now_ms;
use pluribus_common::wire::encode;
use serde::Serialize;

use super::{no_fleet, Ctx, Global};
use crate::apply::{agents_problem, read_record, START_DELAY};
use crate::bus;
use crate::output::{duration, print_json, shares_text};
use crate::state::{self, running, LeaseMap, Share};
use crate::wait::{self, excess, shrunk, Step};

/// Grow or shrink a fleet.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The fleet.
    #[arg(value_name = "FLEET")]
    pub fleet: String,
    /// The new number of devices.
    #[arg(long, value_name = "N")]
    pub count: u64,
    /// Return once the new size is recorded; do not wait for the agents to follow.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for the agents to follow.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Serialize)]
struct Output<'a> {
    fleet: &'a str,
    from: u64,
    to: u64,
    desired: u64,
    /// Devices in shards held by agents (their leases).
    assigned: u64,
    /// Deprecated: the same as `assigned`; will be removed.
    running: u64,
    agents: Vec<Share>,
    unchanged: bool,
}

/// Why `record` cannot be scaled, if so.
fn refuse(record: &FleetRecord) -> Option<String> {
    let name = record.name();
    if record.kind == RecordKind::Device {
        return Some(format!("{name} is a single device: scale works on fleets"));
    }
    if record.spec.count.is_none() {
        return Some(format!(
            "fleet {name} lists its devices: edit its file and deploy it with --replace"
        ));
    }
    None
}

/// Records the new size; returns the record before and after (equal when unchanged).
async fn write(ctx: &Ctx, name: &str, count: u64) -> Result<(FleetRecord, FleetRecord)> {
    for _ in 0..5 {
        let (record, revision) = read_record(&ctx.buckets.fleets, name)
            .await?
            .ok_or_else(|| no_fleet(name))?;
        if let Some(why) = refuse(&record) {
            bail!(why);
        }
        if record.count() == count {
            return Ok((record.clone(), record));
        }
        let mut next = record.clone();
        next.scale(count, now_ms(), START_DELAY);
        match ctx
            .buckets
            .fleets
            .update(name, encode(&next), revision)
            .await
        {
            Ok(_) => return Ok((record, next)),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot write fleet {name} to the fleets bucket"))
            }
        }
    }
    bail!("fleet {name} keeps changing under us (someone else is writing it): try again")
}

/// What [`scale`] did.
#[derive(Debug, Clone)]
pub struct Scaled {
    /// The record before.
    pub before: FleetRecord,
    /// The record after (equal to `before` when the size did not change).
    pub record: FleetRecord,
    /// Why no agent can take the new devices (then no shard was offered), when growing.
    pub problem: Option<String>,
}

impl Scaled {
    /// The size before and after.
    pub fn sizes(&self) -> (u64, u64) {
        (self.before.count(), self.record.count())
    }
}

/// Records the new size of fleet `name`, announces it and offers the new shards; does not
/// wait for the agents (shared by `scale` and the dashboard).
pub async fn scale(ctx: &Ctx, name: &str, count: u64) -> Result<Scaled> {
    if count > MAX_FLEET_SIZE {
        bail!("bad spec: count: {count} is above the limit of {MAX_FLEET_SIZE} devices per fleet: split it into several fleets");
    }
    let (before, record) = write(ctx, name, count).await?;
    let (from, to) = (before.count(), record.count());
    if from != to {
        bus::publish_event(
            &ctx.conn,
            EventKind::FleetScaled {
                fleet: name.to_string(),
                from,
                to,
            },
        )
        .await?;
    }
    let mut problem = None;
    if to > from {
        problem = agents_problem(ctx, &record, &format!("the new size of fleet {name}")).await?;
        if problem.is_none() {
            let size = before.spec.shard_size.max(1);
            let first = u32::try_from(from / u64::from(size)).unwrap_or(u32::MAX);
            bus::offer_shards(&ctx.conn, name, first..record.shard_count()).await?;
        }
    }
    Ok(Scaled {
        before,
        record,
        problem,
    })
}

/// Runs `scale`.
pub async fn run(g: &Global, args: Args) -> Result<()> {
    let name = args.fleet.as_str();
    if args.count > MAX_FLEET_SIZE {
        bail!("bad spec: count: {} is above the limit of {MAX_FLEET_SIZE} devices per fleet: split it into several fleets", args.count);
    }
    let ctx = g.open().await?;
    let scaled = scale(&ctx, name, args.count).await?;
    let (from, to) = scaled.sizes();
    let unchanged = from == to;
    let Scaled {
        record, problem, ..
    } = scaled;
    let leases = if to > from {
        match problem {
            Some(p) if args.no_wait => {
                eprintln!("warning: {p}");
                snapshot(&ctx, name).await?
            }
            Some(p) => bail!(p),
            None if args.no_wait => snapshot(&ctx, name).await?,
            None => wait::until_running(&ctx, &record, args.timeout).await?,
        }
    } else if to < from && !args.no_wait {
        shrink_wait(&ctx, &record, args.timeout).await?
    } else {
        snapshot(&ctx, name).await?
    };
    let run = running(&record, &leases);
    let out = Output {
        fleet: name,
        from,
        to,
        desired: record.desired(),
        assigned: run.devices,
        running: run.devices,
        agents: run.agents,
        unchanged,
    };
    if g.json {
        return print_json(&out);
    }
    if unchanged {
        println!("fleet {name} has {to} devices already: nothing to do");
    } else if args.no_wait {
        println!(
            "fleet {name} scaled from {from} to {to} devices; not waiting: see `pluribusctl status {name}`"
        );
    } else {
        println!(
            "fleet {name} scaled from {from} to {to} devices: {}/{} assigned: {}",
            out.assigned,
            out.desired,
            shares_text(&out.agents)
        );
    }
    Ok(())
}

/// The fleet's live leases now.
async fn snapshot(ctx: &Ctx, name: &str) -> Result<LeaseMap> {
    Ok(state::load_leases(ctx, &format!("{name}.*"))
        .await?
        .remove(name)
        .unwrap_or_default())
}

/// Waits until the shards past the new end are released and the last one runs its share.
async fn shrink_wait(ctx: &Ctx, record: &FleetRecord, timeout: Duration) -> Result<LeaseMap> {
    let name = record.name();
    let watch = wait::leases_until(
        ctx,
        &format!("{name}.*"),
        timeout,
        |w| {
            let l = w.fleet(name);
            if shrunk(record, l) {
                Step::Done
            } else {
                Step::Wait(format!(
                    "scaling {name} down to {}: {} devices still to stop",
                    record.count(),
                    excess(record, l)
                ))
            }
        },
        |w| {
            anyhow!(
                "timed out after {}: {} devices of {name} above the new size still run: see `pluribusctl status {name}`",
                duration(timeout),
                excess(record, w.fleet(name))
            )
        },
    )
    .await?;
    Ok(watch.into_fleet(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pluribus_common::spec::FleetSpec;

    #[test]
    fn devices_and_listed_fleets_are_refused() {
        let counted = FleetRecord::new(
            RecordKind::Fleet,
            FleetSpec::counted("f", 3),
            0,
            START_DELAY,
        );
        assert_eq!(refuse(&counted), None);
        let mut dev = counted.clone();
        dev.kind = RecordKind::Device;
        assert_eq!(
            refuse(&dev).as_deref(),
            Some("f is a single device: scale works on fleets")
        );
        let mut listed = counted.clone();
        listed.spec.count = None;
        assert!(refuse(&listed).is_some_and(|m| m.contains("--replace")));
    }
}
