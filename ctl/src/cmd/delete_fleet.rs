//! `delete-fleet`: delete a fleet (or single device) and wait for its devices to stop.

use std::time::Duration;

use anyhow::{Context as _, Result};
use pluribus_common::messages::EventKind;
use pluribus_common::record::RecordKind;
use serde::Serialize;

use super::{no_fleet, Ctx, Global};
use crate::apply::{read_record, what};
use crate::bus;
use crate::output::{plural, print_json};
use crate::state;
use crate::wait;

/// Delete a fleet.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The fleet (or single device) to delete.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Return once the fleet is deleted; do not wait for its devices to stop.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for the devices to stop.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// What a delete did.
#[derive(Debug, Clone, Serialize)]
pub struct Deleted {
    /// The fleet.
    pub fleet: String,
    /// Fleet or single device.
    pub kind: RecordKind,
    /// Devices that ran when it was deleted.
    pub devices_stopped: u64,
    /// Whether the devices were waited for.
    pub waited: bool,
}

impl Deleted {
    /// The sentence for humans.
    pub fn sentence(&self) -> String {
        format!(
            "{} deleted ({} stopped{})",
            what(self.kind, &self.fleet),
            plural(self.devices_stopped, "device"),
            if self.waited {
                ""
            } else {
                "; not waiting for the agents"
            }
        )
    }
}

/// Deletes `name`, announces it and (unless `no_wait`) waits until its leases are gone.
pub async fn delete(ctx: &Ctx, name: &str, no_wait: bool, timeout: Duration) -> Result<Deleted> {
    let (record, _) = read_record(&ctx.buckets.fleets, name)
        .await?
        .ok_or_else(|| no_fleet(name))?;
    let running: u64 = state::load_leases(ctx, &format!("{name}.*"))
        .await?
        .get(name)
        .map_or(0, |l| l.values().map(|l| l.devices).sum());
    ctx.buckets
        .fleets
        .delete(name)
        .await
        .with_context(|| format!("cannot delete {name} from the fleets bucket"))?;
    bus::publish_event(
        &ctx.conn,
        EventKind::FleetDeleted {
            fleet: name.to_string(),
            reason: "deleted by user".into(),
        },
    )
    .await?;
    if !no_wait {
        wait::until_gone(ctx, name, timeout).await?;
    }
    Ok(Deleted {
        fleet: name.to_string(),
        kind: record.kind,
        devices_stopped: running,
        waited: !no_wait,
    })
}

/// Runs `delete-fleet`.
pub async fn run(g: &Global, args: Args) -> Result<()> {
    let ctx = g.open().await?;
    let done = delete(&ctx, &args.name, args.no_wait, args.timeout).await?;
    if g.json {
        return print_json(&done);
    }
    println!("{}", done.sentence());
    Ok(())
}
