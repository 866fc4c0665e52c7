//! Runs a scenario: its steps in order (parallel groups together, repeats again), checks
//! judged as they come, and the cleanup at the end, on failure and on cancel.
//!
//! The run's progress ([`Progress`]: the next top-level step, the fleets deployed, the
//! agents drained, the steps done and the checks so far) is a plain serializable record, so
//! that a run could be resumed at its current step from it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use futures::future::BoxFuture;
use futures::FutureExt;
use pluribus_common::record::RecordKind;
use pluribus_common::time::now_ms;
use tokio_util::sync::CancellationToken;

use super::check::{Check, Judged, Measured};
use super::file::Scenario;
use super::measure::{self, Beats, EventLog, ProbeWindow};
use super::ops;
use super::outcome::{CheckResult, Note, Outcome, Progress, RunOptions, StepResult, Verdict};
use super::steps::{CheckItem, Step};
use crate::apply::{self, DeployRequest};
use crate::probe::summary::Summary;
use crate::Ctx;

/// How long cleanup waits for a deleted fleet's devices to stop.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often `wait_for` looks again.
const POLL: Duration = Duration::from_millis(500);
/// How long a run waits, after storing that it sends a kill, before sending it (the store
/// is written by another task).
const KILL_SETTLE: Duration = Duration::from_secs(1);

/// Why the steps stopped.
enum Stop {
    /// A check with abort_on_fail failed.
    Abort(String),
    /// A step could not run.
    Error(anyhow::Error),
}

struct Run<'a> {
    ctx: &'a Ctx,
    sc: &'a Scenario,
    opts: &'a RunOptions,
    events: EventLog,
    start: Beats,
    probes: Mutex<BTreeMap<String, ProbeWindow>>,
    last_probe: Mutex<Option<String>>,
    progress: Mutex<Progress>,
}

/// Runs `scenario` on the cluster `ctx` is connected to.
pub async fn run(ctx: &Ctx, scenario: &Scenario, opts: RunOptions) -> Result<Outcome> {
    resume(ctx, scenario, opts, Progress::default()).await
}

/// Runs `scenario` from `progress` (a fresh one starts at the first step).
pub async fn resume(
    ctx: &Ctx,
    scenario: &Scenario,
    opts: RunOptions,
    mut progress: Progress,
) -> Result<Outcome> {
    let token = CancellationToken::new();
    let events = EventLog::follow(ctx, token.clone()).await?;
    if progress.started_ms == 0 {
        progress.started_ms = now_ms();
    }
    let r = Run {
        ctx,
        sc: scenario,
        opts: &opts,
        events,
        start: measure::beats(ctx).await?,
        probes: Mutex::new(BTreeMap::new()),
        last_probe: Mutex::new(None),
        progress: Mutex::new(progress),
    };
    // A resumed run opens its probe windows again (what they counted before is lost).
    for step in scenario
        .steps
        .iter()
        .take(r.with_progress(|p| p.step).unwrap_or(0))
    {
        if let Step::Probe(p) = step {
            if let Err(e) = r.exec(step, 0).await {
                r.note(Note::Line(format!(
                    "probe {} not opened again: {e:#}",
                    p.name
                )));
            }
        }
    }
    let stopped = r.steps().await;
    let (verdict, reason) = match stopped {
        Ok(None) => (None, None),
        Ok(Some(Stop::Abort(why))) => (Some(Verdict::Failed), Some(why)),
        Ok(Some(Stop::Error(e))) => (Some(Verdict::Error), Some(format!("{e:#}"))),
        Err(()) => (Some(Verdict::Cancelled), Some("cancelled".to_string())),
    };
    let fleets: Vec<String> = scenario.fleets.keys().cloned().collect();
    let figures = measure::snapshot(ctx, &fleets, &r.start, true).await.ok();
    let probes: BTreeMap<String, Summary> = {
        let windows = r.probes.lock().map(|p| p.clone()).unwrap_or_default();
        windows
            .iter()
            .filter_map(|(k, w)| {
                w.close();
                w.summary().map(|s| (k.clone(), s))
            })
            .collect()
    };
    let cleanup = r.cleanup().await;
    token.cancel();
    let progress = r.progress.lock().map(|p| p.clone()).unwrap_or_default();
    let verdict = verdict.unwrap_or(if progress.checks.iter().all(|c| c.passed) {
        Verdict::Passed
    } else {
        Verdict::Failed
    });
    Ok(Outcome {
        scenario: scenario.name.clone(),
        origin: scenario.origin.clone(),
        verdict,
        reason: reason.or(progress.stopped.clone()),
        started_ms: progress.started_ms,
        ended_ms: now_ms(),
        variables: scenario.variables.clone(),
        steps: progress.steps,
        checks: progress.checks,
        figures,
        events: r.events.counts(progress.started_ms),
        probes,
        cleanup,
    })
}

impl Run<'_> {
    fn note(&self, n: Note) {
        if let Some(o) = &self.opts.observer {
            o(&n);
        }
    }

    fn with_progress<T>(&self, f: impl FnOnce(&mut Progress) -> T) -> Option<T> {
        self.progress.lock().ok().map(|mut p| f(&mut p))
    }

    /// The top-level steps from the current one; Err on cancel.
    async fn steps(&self) -> Result<Option<Stop>, ()> {
        let total = self.sc.steps.len();
        loop {
            let Some(i) = self.with_progress(|p| p.step) else {
                return Ok(Some(Stop::Error(anyhow!(
                    "the run's progress is unreadable"
                ))));
            };
            let Some(step) = self.sc.steps.get(i) else {
                return Ok(None);
            };
            self.note(Note::Step {
                index: i,
                of: total,
                text: step.describe(),
            });
            let started_ms = now_ms();
            let result = tokio::select! {
                _ = self.opts.cancel.cancelled() => return Err(()),
                r = self.exec(step, i) => r,
            };
            let error = result.as_ref().err().map(|e| format!("{e:#}"));
            self.with_progress(|p| {
                p.steps.push(StepResult {
                    index: i,
                    kind: step.kind().to_string(),
                    text: step.describe(),
                    started_ms,
                    ended_ms: now_ms(),
                    error: error.clone(),
                });
                p.step = i + 1;
            });
            if let (Some(f), Some(p)) = (&self.opts.on_progress, self.with_progress(|p| p.clone()))
            {
                f(&p);
            }
            match result {
                Ok(None) => {}
                Ok(Some(why)) => {
                    self.with_progress(|p| p.stopped = Some(why.clone()));
                    return Ok(Some(Stop::Abort(why)));
                }
                Err(e) => {
                    let e = e.context(format!(
                        "{}: steps[{i}] ({})",
                        self.sc.at(i),
                        step.describe()
                    ));
                    return Ok(Some(Stop::Error(e)));
                }
            }
        }
    }

    /// Runs one step; Some(reason) when a check aborts the run.
    fn exec<'s>(&'s self, step: &'s Step, i: usize) -> BoxFuture<'s, Result<Option<String>>> {
        async move {
            match step {
                Step::Deploy(d) => {
                    let o = d.options();
                    let spec = self
                        .sc
                        .fleets
                        .get(&o.fleet)
                        .cloned()
                        .ok_or_else(|| anyhow!("no fleet {} in the scenario", o.fleet))?;
                    self.with_progress(|p| {
                        if !p.deployed.contains(&o.fleet) {
                            p.deployed.push(o.fleet.clone());
                        }
                    });
                    apply::deploy(
                        self.ctx,
                        DeployRequest {
                            kind: RecordKind::Fleet,
                            spec,
                            replace: o.replace,
                            no_wait: !o.wait,
                            timeout: o.timeout,
                        },
                    )
                    .await?;
                }
                Step::Scale(s) => ops::scale(self.ctx, &s.fleet, s.count).await?,
                Step::SetLoad(s) => ops::set_load(self.ctx, &s.fleet, s.load.as_ref()).await?,
                Step::Stop(s) => ops::stop(self.ctx, &s.fleet, &s.device).await?,
                Step::Delete(f) => {
                    ops::delete(self.ctx, f.name(), CLEANUP_TIMEOUT).await?;
                    self.with_progress(|p| p.deployed.retain(|x| x != f.name()));
                }
                Step::Network(n) => {
                    ops::network(self.ctx, &n.fleet, n.set.as_ref(), n.cohort.as_ref()).await?
                }
                Step::Command(c) => {
                    let r = ops::command(
                        self.ctx,
                        &c.fleet,
                        c.device.as_deref(),
                        c.cohort.as_ref(),
                        &c.payload,
                        c.within,
                    )
                    .await?;
                    self.note(Note::Line(format!(
                        "{} commands sent, {} answered, {} refused",
                        r.sent, r.ok, r.errors
                    )));
                    if let Some(check) = &c.expect {
                        let m = Measured {
                            value: Some(r.ok as f64),
                            base: Some(r.sent as f64),
                            ..Default::default()
                        };
                        let name = format!(
                            "{} within {}: {check}",
                            step.describe(),
                            humantime::format_duration(c.within)
                        );
                        self.record(i, name, check, check.judge(&m));
                    }
                }
                Step::Drain(d) => {
                    let id = ops::drain(self.ctx, &d.agent, d.undo).await?;
                    self.with_progress(|p| {
                        if d.undo {
                            p.drained.retain(|x| x != &id);
                        } else if !p.drained.contains(&id) {
                            p.drained.push(id.clone());
                        }
                    });
                }
                Step::KillAgent(k) => {
                    if self.with_progress(|p| p.kill_sent) == Some(Some(i)) {
                        return Ok(None);
                    }
                    let p = self.with_progress(|p| {
                        p.kill_sent = Some(i);
                        p.clone()
                    });
                    // A detached run may be killing the agent it runs on: its progress is
                    // stored before, so that the agent taking over does not kill again.
                    if let (Some(f), Some(p)) = (&self.opts.on_progress, p) {
                        f(&p);
                        tokio::time::sleep(KILL_SETTLE).await;
                    }
                    ops::kill_agent(self.ctx, &k.agent).await?;
                }
                Step::Wait(d) => tokio::time::sleep(*d).await,
                Step::WaitFor(w) => return self.wait_for(w, i, step).await,
                Step::Probe(p) => {
                    let w = ProbeWindow::open(self.ctx, p).await?;
                    if let Ok(mut m) = self.probes.lock() {
                        m.insert(p.name.clone(), w);
                    }
                    if let Ok(mut l) = self.last_probe.lock() {
                        *l = Some(p.name.clone());
                    }
                }
                Step::ProbeEnd(name) => {
                    if let Some(w) = self.probes.lock().ok().and_then(|m| m.get(name).cloned()) {
                        w.close();
                    }
                }
                Step::Expect(e) => return self.expect(e, i).await,
                Step::Parallel(steps) => {
                    let all =
                        futures::future::join_all(steps.iter().map(|s| self.exec(s, i))).await;
                    let mut abort = None;
                    for r in all {
                        if let Some(why) = r? {
                            abort.get_or_insert(why);
                        }
                    }
                    return Ok(abort);
                }
                Step::Repeat(r) => {
                    for round in 0..r.times {
                        for s in &r.steps {
                            self.note(Note::Line(format!(
                                "  round {}/{}: {}",
                                round + 1,
                                r.times,
                                s.describe()
                            )));
                            if let Some(why) = self.exec(s, i).await? {
                                return Ok(Some(why));
                            }
                        }
                    }
                }
            }
            Ok(None)
        }
        .boxed()
    }

    fn fleets(&self, only: Option<&str>) -> Vec<String> {
        match only {
            Some(f) => vec![f.to_string()],
            None => self.sc.fleets.keys().cloned().collect(),
        }
    }

    fn probe_summary(&self, name: Option<&str>) -> Option<Summary> {
        let name = match name {
            Some(n) => n.to_string(),
            None => self.last_probe.lock().ok()?.clone()?,
        };
        self.probes.lock().ok()?.get(&name)?.summary()
    }

    /// Records a check's result; returns whether it passed.
    fn record(&self, step: usize, name: String, check: &Check, j: Judged) -> bool {
        let r = CheckResult {
            name,
            check: check.text.clone(),
            step,
            value: j.value,
            shown: j.shown,
            threshold: j.limit,
            passed: j.passed,
            lower_is_better: check.op.lower_is_better(),
            at_ms: now_ms(),
        };
        self.note(Note::Check(r.clone()));
        self.with_progress(|p| p.checks.push(r));
        j.passed
    }

    async fn expect(&self, e: &super::steps::Expect, i: usize) -> Result<Option<String>> {
        let (start, since_ms) = match e.window {
            Some(w) => {
                let start = measure::beats(self.ctx).await?;
                let since = now_ms();
                tokio::time::sleep(w).await;
                (start, since)
            }
            None => (
                self.start.clone(),
                self.with_progress(|p| p.started_ms).unwrap_or(0),
            ),
        };
        let checks: Vec<(&Check, String, bool)> = e.checks.iter().map(CheckItem::parts).collect();
        let fleets = self.fleets(e.fleet.as_deref());
        let pct = measure::needs_percentiles(checks.iter().map(|c| c.0));
        let snap =
            measure::snapshot_with(self.ctx, &fleets, &start, pct, e.window.is_some()).await?;
        let probe = self.probe_summary(e.probe.as_deref());
        let mut abort = None;
        for (check, name, aborts) in checks {
            let m = measure::measure(check, &snap, &self.events, since_ms, probe.as_ref());
            let passed = self.record(i, name.clone(), check, check.judge(&m));
            if !passed && (aborts || e.abort_on_fail) {
                abort.get_or_insert(format!("check '{name}' failed (abort_on_fail)"));
            }
        }
        Ok(abort)
    }

    async fn wait_for(
        &self,
        w: &super::steps::WaitFor,
        i: usize,
        step: &Step,
    ) -> Result<Option<String>> {
        let o = w.options();
        let fleets = self.fleets(o.fleet.as_deref());
        let began = Instant::now();
        let since_ms = self.with_progress(|p| p.started_ms).unwrap_or(0);
        let pct = measure::needs_percentiles([&o.condition]);
        let name = step.describe();
        loop {
            let snap = measure::snapshot(self.ctx, &fleets, &self.start, pct).await?;
            let probe = self.probe_summary(None);
            let j = o.condition.judge(&measure::measure(
                &o.condition,
                &snap,
                &self.events,
                since_ms,
                probe.as_ref(),
            ));
            let took = began.elapsed();
            let threshold = format!("within {}", humantime::format_duration(o.timeout));
            if j.passed || took >= o.timeout {
                let r = CheckResult {
                    name: name.clone(),
                    check: o.condition.text.clone(),
                    step: i,
                    value: Some(took.as_secs_f64()),
                    shown: if j.passed {
                        format!("after {:.1}s ({})", took.as_secs_f64(), j.shown)
                    } else {
                        format!("not after {:.1}s (last: {})", took.as_secs_f64(), j.shown)
                    },
                    threshold,
                    passed: j.passed,
                    lower_is_better: true,
                    at_ms: now_ms(),
                };
                self.note(Note::Check(r.clone()));
                self.with_progress(|p| p.checks.push(r));
                return Ok((!j.passed && o.abort_on_fail)
                    .then(|| format!("'{name}' timed out (abort_on_fail)")));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Deletes what the run deployed and lets drained agents take work again (unless
    /// `keep`); returns what it did, in words.
    async fn cleanup(&self) -> Vec<String> {
        let mut done = Vec::new();
        if self.opts.keep || !self.sc.cleanup.delete {
            let why = if self.opts.keep {
                "--keep"
            } else {
                "cleanup.delete: false"
            };
            done.push(format!("kept what the run deployed ({why})"));
            return done;
        }
        let (deployed, drained) = self
            .with_progress(|p| {
                (
                    std::mem::take(&mut p.deployed),
                    std::mem::take(&mut p.drained),
                )
            })
            .unwrap_or_default();
        for id in drained {
            let line = match ops::undrain_id(self.ctx, &id).await {
                Ok(()) => format!("agent {id} takes work again"),
                Err(e) => format!("agent {id}: cannot undo its drain: {e:#}"),
            };
            self.note(Note::Line(format!("cleanup: {line}")));
            done.push(line);
        }
        for f in deployed {
            let line = match ops::delete(self.ctx, &f, CLEANUP_TIMEOUT).await {
                Ok(true) => format!("fleet {f} deleted"),
                Ok(false) => format!("fleet {f} was gone already"),
                Err(e) => format!("fleet {f}: cannot delete it: {e:#}: delete it with `pluribusctl delete-fleet {f}`"),
            };
            self.note(Note::Line(format!("cleanup: {line}")));
            done.push(line);
        }
        done
    }
}
