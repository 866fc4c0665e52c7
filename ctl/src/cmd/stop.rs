//! `stop`: stop one device, deployed alone or as part of a fleet.

use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use async_nats::jetstream::kv::UpdateErrorKind;
use pluribus_common::record::{FleetRecord, RecordKind};
use pluribus_common::wire::encode;
use serde::Serialize;

use super::delete_fleet::delete;
use super::{no_fleet, Ctx, Global};
use crate::apply::read_record;
use crate::output::{duration, print_json};
use crate::state::load_fleets;
use crate::wait::{self, Step};

/// Stop one device.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The device id.
    #[arg(value_name = "DEVICE_ID")]
    pub device_id: String,
    /// Look for the device only in this fleet.
    #[arg(long, value_name = "F")]
    pub fleet: Option<String>,
    /// Return once the stop is recorded; do not wait for the agent to stop the device.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for the agent to stop the device.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Serialize)]
struct Output<'a> {
    device_id: &'a str,
    fleet: &'a str,
    /// The device's index in its fleet (none for a single device).
    index: Option<u64>,
    /// The device was deployed alone, and its record was deleted.
    deleted: bool,
    /// It was stopped already.
    already_stopped: bool,
}

/// The fleets among `records` that have a device `id`, with its index.
fn find<'a>(records: impl IntoIterator<Item = &'a FleetRecord>, id: &str) -> Vec<(String, u64)> {
    records
        .into_iter()
        .filter_map(|r| r.index_of(id).map(|i| (r.name().to_string(), i)))
        .collect()
}

/// What [`stop_device`] did.
#[derive(Debug, Clone)]
pub enum Stopped {
    /// A device deployed alone: its record was deleted.
    Deleted(super::delete_fleet::Deleted),
    /// A device of a fleet: marked stopped in the fleet's record.
    Marked {
        /// The fleet's record after.
        record: Box<FleetRecord>,
        /// The device's index in it.
        index: u64,
        /// It was stopped already.
        already: bool,
    },
}

/// Stops device `id` (looked for in `fleet`, or in every fleet): deletes a device deployed
/// alone, or marks a fleet's device stopped. Waits only for a single device's deletion,
/// and only unless `no_wait` (shared by `stop` and the dashboard).
pub async fn stop_device(
    ctx: &Ctx,
    id: &str,
    fleet: Option<&str>,
    no_wait: bool,
    timeout: Duration,
) -> Result<Stopped> {
    if fleet.is_none_or(|f| f == id) {
        if let Some((r, _)) = read_record(&ctx.buckets.fleets, id).await? {
            if r.kind == RecordKind::Device {
                return Ok(Stopped::Deleted(delete(ctx, id, no_wait, timeout).await?));
            }
        }
    }
    let found = match fleet {
        Some(f) => {
            let (r, _) = read_record(&ctx.buckets.fleets, f)
                .await?
                .ok_or_else(|| no_fleet(f))?;
            find([&r], id)
        }
        None => find(load_fleets(ctx).await?.values(), id),
    };
    let (fleet, index) = match found.as_slice() {
        [] => match fleet {
            Some(f) => bail!("no device {id} in fleet {f}: see `pluribusctl status {f}`"),
            None => bail!("no device {id} in any fleet: see `pluribusctl status`"),
        },
        [one] => one.clone(),
        many => bail!(
            "device {id} is in several fleets ({}): choose one with --fleet",
            many.iter()
                .map(|(f, _)| f.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let (record, already) = mark_stopped(ctx, &fleet, index).await?;
    Ok(Stopped::Marked {
        record: Box::new(record),
        index,
        already,
    })
}

/// Runs `stop`.
pub async fn run(g: &Global, args: Args) -> Result<()> {
    let ctx = g.open().await?;
    let id = args.device_id.as_str();
    let (record, index, already) =
        match stop_device(&ctx, id, args.fleet.as_deref(), args.no_wait, args.timeout).await? {
            Stopped::Deleted(done) => {
                if g.json {
                    return print_json(&Output {
                        device_id: id,
                        fleet: id,
                        index: None,
                        deleted: true,
                        already_stopped: false,
                    });
                }
                println!("{}", done.sentence());
                return Ok(());
            }
            Stopped::Marked {
                record,
                index,
                already,
            } => (record, index, already),
        };
    let fleet = record.name().to_string();
    if !already && !args.no_wait {
        wait_stopped(&ctx, &record, index, args.timeout).await?;
    }
    if g.json {
        return print_json(&Output {
            device_id: id,
            fleet: &fleet,
            index: Some(index),
            deleted: false,
            already_stopped: already,
        });
    }
    if already {
        println!("device {id} of fleet {fleet} is stopped already");
    } else {
        println!(
            "device {id} of fleet {fleet} stopped ({} of {} devices of {fleet} remain)",
            record.desired(),
            record.count()
        );
    }
    Ok(())
}

/// Adds `index` to the fleet's stopped devices. Returns the record and whether it was
/// stopped already.
async fn mark_stopped(ctx: &Ctx, fleet: &str, index: u64) -> Result<(FleetRecord, bool)> {
    for _ in 0..5 {
        let (mut record, revision) = read_record(&ctx.buckets.fleets, fleet)
            .await?
            .ok_or_else(|| no_fleet(fleet))?;
        if !record.stopped.insert(index) {
            return Ok((record, true));
        }
        match ctx
            .buckets
            .fleets
            .update(fleet, encode(&record), revision)
            .await
        {
            Ok(_) => return Ok((record, false)),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot write fleet {fleet} to the fleets bucket"))
            }
        }
    }
    bail!("fleet {fleet} keeps changing under us (someone else is writing it): try again")
}

/// Waits until the lease of the device's shard reports the smaller count (agents rewrite it
/// when they renew), or the shard is not held.
async fn wait_stopped(
    ctx: &Ctx,
    record: &FleetRecord,
    index: u64,
    timeout: Duration,
) -> Result<()> {
    let name = record.name();
    let size = u64::from(record.spec.shard_size.max(1));
    let shard = u32::try_from(index / size).unwrap_or(u32::MAX);
    let want = record.shard_desired(shard);
    let holds = |w: &wait::LeaseWatch| {
        w.fleet(name)
            .get(&shard)
            .filter(|l| l.devices > want)
            .map(|l| l.agent_name.clone())
    };
    wait::leases_until(
        ctx,
        &format!("{name}.*"),
        timeout,
        |w| match holds(w) {
            None => Step::Done,
            Some(agent) => Step::Wait(format!("stopping device {index} of {name} on agent {agent}")),
        },
        |w| {
            anyhow!(
                "timed out after {}: agent {} still reports the device running: see `pluribusctl status {name}`",
                duration(timeout),
                holds(w).unwrap_or_default()
            )
        },
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::START_DELAY;
    use pluribus_common::spec::FleetSpec;

    #[test]
    fn devices_are_found_by_id() {
        let a = FleetRecord::new(
            RecordKind::Fleet,
            FleetSpec::counted("a", 10),
            0,
            START_DELAY,
        );
        let b = FleetRecord::new(
            RecordKind::Fleet,
            FleetSpec::counted("b", 10),
            0,
            START_DELAY,
        );
        assert_eq!(find([&a, &b], "b-00003"), vec![("b".to_string(), 3)]);
        assert!(find([&a, &b], "c-00003").is_empty());
        assert!(find([&a, &b], "b-00010").is_empty());
    }
}
