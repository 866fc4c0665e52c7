//! The page's controls: scale, set-load, stop, delete and drain, run with the same code
//! as the commands of the same names (without waiting for the agents: the page shows them
//! follow).

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use clap::Parser;
use serde::Deserialize;

use crate::cmd::load_flags::LoadFlags;
use crate::cmd::Ctx;
use crate::cmd::{delete_fleet, drain, scale, set_load, stop};
use crate::output::plural;

/// One control action, as the page posts it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Control {
    /// `pluribusctl scale FLEET --count N`.
    Scale {
        /// The fleet.
        fleet: String,
        /// The new size.
        count: u64,
    },
    /// `pluribusctl set-load FLEET <flags>`: the flags as typed, e.g. `--rate 500/s`.
    SetLoad {
        /// The fleet.
        fleet: String,
        /// The load flags (`--clear` to clear).
        flags: String,
    },
    /// `pluribusctl stop DEVICE`.
    Stop {
        /// The device id.
        device: String,
    },
    /// `pluribusctl delete-fleet NAME --no-wait`.
    Delete {
        /// The fleet or single device.
        fleet: String,
    },
    /// `pluribusctl drain AGENT [--undo] --no-wait`.
    Drain {
        /// The agent's id or name.
        agent: String,
        /// Let it take work again.
        #[serde(default)]
        undo: bool,
    },
}

/// `set-load`'s flags, parsed as the command line parses them.
#[derive(Debug, Parser)]
#[command(name = "set-load", no_binary_name = true)]
struct LoadLine {
    #[command(flatten)]
    load: LoadFlags,
    /// Remove the load shape.
    #[arg(long)]
    clear: bool,
}

/// Parses set-load flags typed in the page.
fn load_flags(text: &str) -> Result<LoadLine> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let line = LoadLine::try_parse_from(words).map_err(|e| {
        let msg = e.to_string();
        anyhow!(
            "bad load flags: {}",
            msg.lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ")
        )
    })?;
    set_load::check(&line.load, line.clear)?;
    Ok(line)
}

/// Runs `c`; returns what happened, as a sentence.
pub async fn run(ctx: &Ctx, c: Control) -> Result<String> {
    Ok(match c {
        Control::Scale { fleet, count } => {
            let s = scale::scale(ctx, &fleet, count).await?;
            let (from, to) = s.sizes();
            match s.problem {
                _ if from == to => format!("fleet {fleet} has {to} devices already"),
                Some(p) => format!("fleet {fleet} scaled from {from} to {to} devices, but {p}"),
                None => format!("fleet {fleet} scaled from {from} to {to} devices"),
            }
        }
        Control::SetLoad { fleet, flags } => {
            let line = load_flags(&flags)?;
            set_load::set_load(ctx, &fleet, &line.load, line.clear)
                .await?
                .sentence(&fleet)
        }
        Control::Stop { device } => {
            match stop::stop_device(ctx, &device, None, true, Duration::ZERO).await? {
                stop::Stopped::Deleted(d) => d.sentence(),
                stop::Stopped::Marked { already: true, .. } => {
                    format!("device {device} is stopped already")
                }
                stop::Stopped::Marked { record, .. } => format!(
                    "device {device} of fleet {} stopped ({} of {} remain)",
                    record.name(),
                    record.desired(),
                    record.count()
                ),
            }
        }
        Control::Delete { fleet } => delete_fleet::delete(ctx, &fleet, true, Duration::ZERO)
            .await?
            .sentence(),
        Control::Drain { agent, undo } => {
            let (h, answer) = drain::drain(ctx, &agent, undo).await?;
            if undo {
                format!("agent {} takes work again", h.name)
            } else {
                format!(
                    "agent {} is draining ({} to hand off)",
                    h.name,
                    plural(answer.heartbeat.devices, "device")
                )
            }
        }
    })
}

/// Refuses a control when the dashboard is read-only.
pub fn allowed(access: &super::access::Access) -> Result<()> {
    if access.read_only {
        bail!(
            "{}",
            access
                .why
                .clone()
                .unwrap_or_else(|| "the dashboard is read-only".into())
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_decode_from_the_page() {
        let c: Control =
            serde_json::from_str(r#"{"action":"scale","fleet":"f","count":3}"#).unwrap();
        assert_eq!(
            c,
            Control::Scale {
                fleet: "f".into(),
                count: 3
            }
        );
        let c: Control = serde_json::from_str(r#"{"action":"drain","agent":"a"}"#).unwrap();
        assert_eq!(
            c,
            Control::Drain {
                agent: "a".into(),
                undo: false
            }
        );
        assert!(serde_json::from_str::<Control>(r#"{"action":"scale","fleet":"f"}"#).is_err());
        assert!(serde_json::from_str::<Control>(r#"{"action":"explode"}"#).is_err());
    }

    #[test]
    fn load_flags_parse_as_on_the_command_line() {
        let l = load_flags("--rate 500/s").unwrap();
        assert_eq!(l.load.rate, Some(500.0));
        assert!(load_flags("--clear").unwrap().clear);
        let e = load_flags("--rate fast").unwrap_err().to_string();
        assert!(e.contains("bad load flags") && e.contains("--rate"), "{e}");
        assert!(load_flags("").unwrap_err().to_string().contains("--clear"));
    }
}
