//! `scenario`: check or run a scenario file (steps with checks; see ctl/README.md,
//! "Scenarios"). The engine is `pluribus_client::scenario`; this is the command line.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use pluribus_client::output::{plural, print_json, Progress};
use pluribus_client::scenario::{
    measure, report, run as run_scenario, Exit, Note, Observer, RunOptions, Verdict,
    COULD_NOT_RUN_EXIT,
};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::Global;

use super::scenario_args::{Args, FileArgs, RunArgs, Verb};

#[derive(Serialize)]
struct Checked<'a> {
    scenario: &'a str,
    valid: bool,
    fleets: Vec<&'a str>,
    steps: usize,
    variables: &'a BTreeMap<String, String>,
}

/// Runs `scenario`.
pub async fn run(g: &Global, args: Args) -> Result<()> {
    match args.verb {
        Verb::Check(f) => check(g, &f),
        Verb::Run(r) if r.detach => super::scenario_detached::submit(g, r).await,
        Verb::Run(r) => run_file(g, r).await,
        Verb::List => super::scenario_detached::list(g).await,
        Verb::Status(r) => super::scenario_detached::status(g, &r.run).await,
        Verb::Logs(l) => super::scenario_detached::logs(g, &l.id.run, l.follow).await,
        Verb::Cancel(r) => super::scenario_detached::cancel(g, &r.run).await,
    }
}

fn check(g: &Global, f: &FileArgs) -> Result<()> {
    let s = f.load()?;
    let out = Checked {
        scenario: &s.name,
        valid: true,
        fleets: s.fleets.keys().map(String::as_str).collect(),
        steps: s.steps.len(),
        variables: &s.variables,
    };
    if g.json {
        return print_json(&out);
    }
    let vars: Vec<String> = s
        .variables
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!(
        "scenario {}: valid: {} ({}), {}{}",
        s.name,
        plural(out.fleets.len() as u64, "fleet"),
        out.fleets.join(", "),
        plural(out.steps as u64, "step"),
        if vars.is_empty() {
            String::new()
        } else {
            format!("; variables {}", vars.join(" "))
        }
    );
    Ok(())
}

/// The live view: a line per step and per check, and a line of key figures every few
/// seconds (rewritten in place on a terminal).
fn live_view(progress: Arc<Mutex<Progress>>, counts: Arc<Mutex<(u64, u64)>>) -> Observer {
    Arc::new(move |n: &Note| {
        let line = match n {
            Note::Step { index, of, text } => format!("[{}/{of}] {text}", index + 1),
            Note::Check(c) => {
                if let Ok(mut k) = counts.lock() {
                    if c.passed {
                        k.0 += 1;
                    } else {
                        k.1 += 1;
                    }
                }
                format!(
                    "      {} {}: {} ({})",
                    if c.passed { "pass" } else { "FAIL" },
                    c.name,
                    c.shown,
                    c.threshold
                )
            }
            Note::Line(l) => format!("      {l}"),
        };
        if let Ok(mut p) = progress.lock() {
            p.finish();
        }
        eprintln!("{line}");
    })
}

async fn run_file(g: &Global, args: RunArgs) -> Result<()> {
    let scenario = args.file.load()?;
    let baseline = match &args.baseline {
        Some(p) => Some(report::read_baseline(p).map_err(|e| Exit {
            code: COULD_NOT_RUN_EXIT,
            message: format!("{e:#}"),
        })?),
        None => None,
    };
    let ctx = g.open().await.map_err(|e| Exit {
        code: COULD_NOT_RUN_EXIT,
        message: format!("cannot reach the cluster: {e:#}"),
    })?;
    let cancel = CancellationToken::new();
    let progress = Arc::new(Mutex::new(Progress::new()));
    let counts = Arc::new(Mutex::new((0u64, 0u64)));
    let opts = RunOptions {
        keep: args.keep,
        cancel: cancel.clone(),
        observer: Some(live_view(progress.clone(), counts.clone())),
        on_progress: None,
    };
    eprintln!(
        "scenario {}: {} from {}",
        scenario.name,
        plural(scenario.steps.len() as u64, "step"),
        scenario.origin
    );
    // Ctrl-C and SIGTERM cancel the run; its cleanup still runs.
    let signals = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let term = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term => {}
            }
            eprintln!("scenario: cancelled: cleaning up");
            cancel.cancel();
        })
    };
    // Key figures of the scenario's fleets, every 2 s.
    let figures = {
        let (ctx, progress, counts) = (ctx.clone(), progress.clone(), counts.clone());
        let fleets: Vec<String> = scenario.fleets.keys().cloned().collect();
        tokio::spawn(async move {
            let start = measure::beats(&ctx).await.unwrap_or_default();
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tick.tick().await;
                let Ok(s) = measure::snapshot(&ctx, &fleets, &start, false).await else {
                    continue;
                };
                let (passed, failed) = counts.lock().map(|k| *k).unwrap_or_default();
                let line = format!(
                    "      figures: {}/{} active, {} connected, {}/{} msg/s, {} errors, {} alive; checks {passed} passed, {failed} failed",
                    s.active,
                    s.desired,
                    s.connected,
                    s.rate,
                    s.scheduled,
                    s.errors,
                    plural(s.agents_alive, "agent"),
                );
                if let Ok(mut p) = progress.lock() {
                    p.show(&line);
                }
            }
        })
    };
    let outcome = run_scenario(&ctx, &scenario, opts).await;
    figures.abort();
    signals.abort();
    if let Ok(mut p) = progress.lock() {
        p.finish();
    }
    let outcome = outcome.map_err(|e| Exit {
        code: COULD_NOT_RUN_EXIT,
        message: format!("{e:#}"),
    })?;
    if let Some(p) = &args.report {
        report::write_json(&outcome, p)?;
    }
    if let Some(p) = &args.junit {
        report::write_junit(&outcome, p)?;
    }
    if g.json {
        print_json(&outcome)?;
    } else {
        print!("{}", report::table(&outcome));
    }
    if let Some(b) = &baseline {
        let text = report::compare(b, &outcome);
        if g.json {
            eprint!("compared with the baseline:\n{text}");
        } else {
            print!("compared with the baseline:\n{text}");
        }
    }
    match outcome.verdict {
        Verdict::Passed => Ok(()),
        v => Err(Exit {
            code: v.exit_code(),
            message: String::new(),
        }
        .into()),
    }
}
