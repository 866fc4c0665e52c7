//! `set-load`: change a running fleet's load shape. Devices keep running; their schedules
//! follow the new shape from now, `seq` carrying on.

use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use async_nats::jetstream::kv::UpdateErrorKind;
use pluribus_common::load::LoadSpec;
use pluribus_common::time::now_ms;
use pluribus_common::wire::encode;
use serde::Serialize;

use super::load_flags::LoadFlags;
use super::{no_fleet, Ctx, Global};
use crate::apply::read_record;
use crate::output::print_json;

/// `set-load` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The fleet.
    #[arg(value_name = "FLEET")]
    pub fleet: String,
    /// The new load.
    #[command(flatten)]
    pub load: LoadFlags,
    /// Remove the load shape: every device at its own interval.
    #[arg(long, conflicts_with_all = ["rate", "ramp", "stairs", "wave", "bursts", "stages", "max_device_rate"])]
    pub clear: bool,
}

#[derive(Serialize)]
struct Output<'a> {
    fleet: &'a str,
    load: Option<String>,
}

/// Records `load` (None: clear it) as fleet `name`'s load shape, the schedule restarting
/// now; returns the new load's description at this moment (shared by `set-load` and the
/// dashboard).
pub async fn set_load(ctx: &Ctx, name: &str, load: Option<LoadSpec>) -> Result<Option<String>> {
    for _ in 0..5 {
        let (record, revision) = read_record(&ctx.buckets.fleets, name)
            .await?
            .ok_or_else(|| no_fleet(name))?;
        let mut next = record.clone();
        // The schedule restarts now with seq above anything sent so far (computed from the
        // old load, so before the spec changes).
        next.restart_schedule(now_ms(), Duration::ZERO);
        next.spec.load = load.clone();
        next.spec
            .validate()
            .map_err(|e| anyhow::anyhow!("bad load: {e}"))?;
        match ctx
            .buckets
            .fleets
            .update(name, encode(&next), revision)
            .await
        {
            Ok(_) => {
                let now = now_ms();
                return Ok(next.spec.load.as_ref().map(|l| {
                    l.describe(
                        next.load_elapsed(now),
                        next.count(),
                        next.spec.seed.unwrap_or(0),
                    )
                }));
            }
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot write fleet {name} to the fleets bucket"))
            }
        }
    }
    bail!("fleet {name} keeps changing under us (someone else is writing it): try again")
}

/// The load `args` ask for (None: `--clear`).
pub fn requested(load: &LoadFlags, clear: bool) -> Result<Option<LoadSpec>> {
    let spec = load.spec().map_err(|e| anyhow::anyhow!("bad load: {e}"))?;
    if spec.is_none() && !clear {
        bail!("give a load (e.g. --rate 5000/s, --ramp 1000/60s) or --clear");
    }
    Ok(spec)
}

/// Runs `set-load`.
pub async fn run(g: &Global, args: Args) -> Result<()> {
    let name = args.fleet.as_str();
    let load = requested(&args.load, args.clear)?;
    let ctx = g.open().await?;
    let describe = set_load(&ctx, name, load).await?;
    if g.json {
        return print_json(&Output {
            fleet: name,
            load: describe,
        });
    }
    match describe {
        Some(d) => println!("load of {name} set: {d} now"),
        None => println!("load of {name} cleared: every device at its own interval"),
    }
    Ok(())
}
