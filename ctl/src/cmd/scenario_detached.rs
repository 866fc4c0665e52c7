//! `scenario run --detach`, `list`, `status`, `logs`, `cancel`: detached runs, stored in
//! the scenarios bucket and executed by an agent (`pluribus_client::scenario::detached`).

use std::time::Duration;

use anyhow::{anyhow, Result};
use pluribus_client::output::{print_json, Table};
use pluribus_client::scenario::detached::{RunRecord, RunState, Runs};
use pluribus_client::scenario::{Exit, COULD_NOT_RUN_EXIT};
use serde::Serialize;

use super::scenario_args::RunArgs;
use super::Global;

async fn open(g: &Global) -> Result<Runs> {
    let ctx = g.open().await.map_err(|e| Exit {
        code: COULD_NOT_RUN_EXIT,
        message: format!("cannot reach the cluster: {e:#}"),
    })?;
    Runs::open(&ctx).await
}

#[derive(Serialize)]
struct Submitted<'a> {
    run: &'a str,
    scenario: &'a str,
}

/// `scenario run --detach`.
pub async fn submit(g: &Global, args: RunArgs) -> Result<()> {
    let scenario = args.file.load()?;
    let runs = open(g).await?;
    let name = scenario.name.clone();
    let id = runs.submit(scenario, args.keep).await?;
    if g.json {
        return print_json(&Submitted {
            run: &id,
            scenario: &name,
        });
    }
    println!("scenario {name}: detached run {id}: an agent runs it; follow it with `pluribusctl scenario logs {id} --follow`");
    Ok(())
}

fn verdict(r: &RunRecord) -> String {
    r.outcome
        .as_ref()
        .and_then(|o| o["verdict"].as_str())
        .unwrap_or("-")
        .to_string()
}

fn state(s: RunState) -> &'static str {
    match s {
        RunState::Pending => "pending",
        RunState::Running => "running",
        RunState::Done => "done",
    }
}

#[derive(Serialize)]
struct Row<'a> {
    run: &'a str,
    scenario: &'a str,
    state: RunState,
    step: usize,
    steps: usize,
    holder: Option<&'a str>,
    verdict: Option<String>,
    created_ms: u64,
}

/// `scenario list`.
pub async fn list(g: &Global) -> Result<()> {
    let runs = open(g).await?.list().await?;
    let rows: Vec<Row<'_>> = runs
        .iter()
        .map(|r| Row {
            run: &r.id,
            scenario: &r.scenario.name,
            state: r.state,
            step: r.progress.step,
            steps: r.scenario.steps.len(),
            holder: r.holder.as_deref(),
            verdict: r.outcome.as_ref().map(|_| verdict(r)),
            created_ms: r.created_ms,
        })
        .collect();
    if g.json {
        return print_json(&rows);
    }
    let mut t = Table::new(&["RUN", "SCENARIO", "STATE", "STEP", "AGENT", "VERDICT"]);
    for r in &runs {
        t.row(vec![
            r.id.clone(),
            r.scenario.name.clone(),
            state(r.state).into(),
            format!("{}/{}", r.progress.step, r.scenario.steps.len()),
            r.holder.clone().unwrap_or_else(|| "-".into()),
            verdict(r),
        ]);
    }
    print!("{}", t.render());
    Ok(())
}

/// `scenario status RUN`.
pub async fn status(g: &Global, id: &str) -> Result<()> {
    let (r, _) = open(g)
        .await?
        .get(id)
        .await?
        .ok_or_else(|| anyhow!("no scenario run {id}: see `pluribusctl scenario list`"))?;
    if g.json {
        return print_json(&r);
    }
    println!(
        "run {} of scenario {}: {}, step {}/{}{}",
        r.id,
        r.scenario.name,
        state(r.state),
        r.progress.step,
        r.scenario.steps.len(),
        r.holder
            .as_deref()
            .map(|h| format!(", on agent {h}"))
            .unwrap_or_default()
    );
    if r.takeovers > 1 {
        println!("resumed by another agent {} time(s)", r.takeovers - 1);
    }
    let mut t = Table::new(&["CHECK", "VALUE", "THRESHOLD", "RESULT"]);
    for c in &r.progress.checks {
        t.row(vec![
            c.name.clone(),
            c.shown.clone(),
            c.threshold.clone(),
            if c.passed {
                "pass".into()
            } else {
                "FAIL".into()
            },
        ]);
    }
    if !r.progress.checks.is_empty() {
        print!("{}", t.render());
    }
    if let Some(o) = &r.outcome {
        println!(
            "verdict: {}{}",
            verdict(&r),
            o["reason"]
                .as_str()
                .map(|x| format!(": {x}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// `scenario logs RUN [--follow]`.
pub async fn logs(g: &Global, id: &str, follow: bool) -> Result<()> {
    let runs = open(g).await?;
    // Lines of the run printed so far (the record keeps the last ones).
    let mut printed = 0u64;
    loop {
        let (r, _) = runs
            .get(id)
            .await?
            .ok_or_else(|| anyhow!("no scenario run {id}: see `pluribusctl scenario list`"))?;
        let first = r.log_count.saturating_sub(r.log.len() as u64);
        for (i, l) in r.log.iter().enumerate() {
            if first + i as u64 >= printed {
                println!("{l}");
            }
        }
        printed = r.log_count;
        if !follow || r.state == RunState::Done {
            if follow {
                return match verdict(&r).as_str() {
                    "passed" => Ok(()),
                    "failed" => Err(Exit {
                        code: 3,
                        message: String::new(),
                    }
                    .into()),
                    "cancelled" => Err(Exit {
                        code: 130,
                        message: String::new(),
                    }
                    .into()),
                    _ => Err(Exit {
                        code: COULD_NOT_RUN_EXIT,
                        message: String::new(),
                    }
                    .into()),
                };
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `scenario cancel RUN`: waits until the agent has cleaned up (60 s at most).
pub async fn cancel(g: &Global, id: &str) -> Result<()> {
    let runs = open(g).await?;
    let r = runs.cancel(id).await?;
    if r.state != RunState::Done {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let done = runs
                .get(id)
                .await?
                .is_some_and(|(r, _)| r.state == RunState::Done);
            if done {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                eprintln!(
                    "run {id}: cancel asked; no agent has ended it within 60s (is one alive?)"
                );
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    println!("run {id}: cancelled and cleaned up");
    Ok(())
}
