//! `profiles`: the built-in device profiles, to use with `--profile NAME` or to start a
//! file of your own from (`profiles show NAME > my.yaml`).

use anyhow::{anyhow, Result};
use pluribus_common::profile::{builtin, builtin_profile};
use serde::Serialize;

use super::Global;
use crate::output::{print_json, Table};

/// `profiles` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do (default: list the built-in profiles).
    #[command(subcommand)]
    pub action: Option<Action>,
}

/// `profiles` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Print one built-in profile (YAML; JSON with --json).
    Show {
        /// Profile name, e.g. smart-meter.
        name: String,
    },
}

#[derive(Serialize)]
struct Row {
    name: String,
    description: String,
    interval: String,
}

fn unknown(name: &str) -> anyhow::Error {
    let names: Vec<&str> = builtin().iter().map(|(n, _)| *n).collect();
    anyhow!(
        "no built-in profile named {name}: choose one of {}",
        names.join(", ")
    )
}

/// Runs `profiles`.
pub fn run(g: &Global, args: Args) -> Result<()> {
    match args.action {
        None => {
            let mut rows = Vec::new();
            for (name, _) in builtin() {
                let p = builtin_profile(name).ok_or_else(|| unknown(name))?;
                rows.push(Row {
                    name: p.name.clone(),
                    description: p.description.clone().unwrap_or_default(),
                    interval: p
                        .interval
                        .map(|d| humantime::format_duration(d).to_string())
                        .unwrap_or_else(|| "1s".into()),
                });
            }
            if g.json {
                return print_json(&serde_json::json!({ "profiles": rows }));
            }
            let mut t = Table::new(&["NAME", "INTERVAL", "DESCRIPTION"]);
            for r in &rows {
                t.row(vec![
                    r.name.clone(),
                    r.interval.clone(),
                    r.description.clone(),
                ]);
            }
            print!("{}", t.render());
            println!("\nUse one with `pluribusctl deploy-fleet NAME --count N --profile <profile>`; start your own with `pluribusctl profiles show <profile> > my.yaml`.");
            Ok(())
        }
        Some(Action::Show { name }) => {
            let (_, text) = builtin()
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| unknown(&name))?;
            if g.json {
                let p = builtin_profile(&name).ok_or_else(|| unknown(&name))?;
                return print_json(&p);
            }
            print!("{text}");
            Ok(())
        }
    }
}
