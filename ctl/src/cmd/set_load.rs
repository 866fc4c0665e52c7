//! `set-load`: change a running fleet's load shape. Devices keep running; their schedules
//! follow the new shape from now, `seq` carrying on. Only what the flags name changes: the
//! rest of the old load is kept, and the command says what it kept or replaced.

use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use async_nats::jetstream::kv::UpdateErrorKind;
use pluribus_common::time::now_ms;
use pluribus_common::wire::encode;
use serde::Serialize;

use super::load_flags::{LoadFlags, Merged};
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
    /// What of the old load was kept or replaced, in words.
    notes: Vec<String>,
}

/// What `set_load` recorded.
#[derive(Debug)]
pub struct LoadSet {
    /// The new load at this moment, in words (None: cleared).
    pub describe: Option<String>,
    /// What of the old load was kept or replaced.
    pub notes: Vec<String>,
}

impl LoadSet {
    /// One sentence (and the notes) for fleet `name`.
    pub fn sentence(&self, name: &str) -> String {
        let mut s = match &self.describe {
            Some(d) => format!("load of {name} set: {d} now"),
            None => format!("load of {name} cleared: every device at its own interval"),
        };
        for n in &self.notes {
            s.push_str("; ");
            s.push_str(n);
        }
        s
    }
}

/// Checks the flags before any I/O: a load, or `--clear`.
pub fn check(load: &LoadFlags, clear: bool) -> Result<()> {
    let spec = load.spec().map_err(|e| anyhow::anyhow!("bad load: {e}"))?;
    if spec.is_none() && !clear {
        bail!("give a load (e.g. --rate 5000/s, --ramp 1000/60s) or --clear");
    }
    Ok(())
}

/// Changes fleet `name`'s load as the flags say (or clears it), the schedule restarting
/// now (shared by `set-load` and the dashboard).
pub async fn set_load(ctx: &Ctx, name: &str, flags: &LoadFlags, clear: bool) -> Result<LoadSet> {
    check(flags, clear)?;
    for _ in 0..5 {
        let (record, revision) = read_record(&ctx.buckets.fleets, name)
            .await?
            .ok_or_else(|| no_fleet(name))?;
        let mut next = record.clone();
        let now = now_ms();
        let merged = if clear {
            Merged {
                load: None,
                notes: Vec::new(),
            }
        } else {
            flags
                .merge(
                    record.spec.load.as_ref(),
                    record.load_elapsed(now),
                    record.count(),
                    record.spec.seed.unwrap_or(0),
                )
                .map_err(|e| anyhow::anyhow!("bad load: {e}"))?
        };
        // The schedule restarts now with seq above anything sent so far (computed from the
        // old load, so before the spec changes).
        next.restart_schedule(now, Duration::ZERO);
        next.spec.load = merged.load;
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
                let describe = next.spec.load.as_ref().map(|l| {
                    l.describe(
                        next.load_elapsed(now),
                        next.count(),
                        next.spec.seed.unwrap_or(0),
                    )
                });
                return Ok(LoadSet {
                    describe,
                    notes: merged.notes,
                });
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

/// Runs `set-load`.
pub async fn run(g: &Global, args: Args) -> Result<()> {
    let name = args.fleet.as_str();
    check(&args.load, args.clear)?;
    let ctx = g.open().await?;
    let set = set_load(&ctx, name, &args.load, args.clear).await?;
    if g.json {
        return print_json(&Output {
            fleet: name,
            load: set.describe,
            notes: set.notes,
        });
    }
    match &set.describe {
        Some(d) => println!("load of {name} set: {d} now"),
        None => println!("load of {name} cleared: every device at its own interval"),
    }
    for note in &set.notes {
        println!("  {note}");
    }
    Ok(())
}
