//! Detached runs: `scenario run --detach` stores the scenario in the scenarios bucket
//! (`run.<id>`), and one agent executes it: the one that creates `lease.<id>` (create-only,
//! with a TTL, renewed with a revision check, as shards are leased). After each step the
//! executor stores the run's [`Progress`]; if it dies, its lease expires and another agent
//! resumes the run at its current step. The outcome is stored in the record at the end.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use async_nats::jetstream::kv::{self, Operation, UpdateErrorKind};
use bytes::Bytes;
use futures::StreamExt;
use pluribus_common::kv::{open_scenarios, ttl_put, KvError};
use pluribus_common::subjects::{
    parse_scenario_lease_key, parse_scenario_run_key, scenario_lease_key as lease_key,
    scenario_run_key as run_key, SCENARIO_LEASES, SCENARIO_RUNS,
};
use pluribus_common::time::now_ms;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::file::Scenario;
use super::open_runs::OpenRuns;
use super::outcome::{Note, Progress, RunOptions};
use super::runner::resume;
use crate::Ctx;

/// How long a run's lease lives without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often agents try to take the open runs nobody holds.
const SCAN: Duration = Duration::from_secs(2);
/// How often an agent watches the runs anew: a watch of a bucket that vanished (JetStream
/// wiped and its buckets made again) waits forever without an error.
const REWATCH: Duration = Duration::from_secs(60);
/// The most log lines a record keeps (the last ones).
pub const MAX_LOG: usize = 300;
/// The largest record read from the bucket.
pub const MAX_RECORD: usize = 4 * 1024 * 1024;

/// Where a detached run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Waiting for an agent.
    Pending,
    /// An agent executes it.
    Running,
    /// Ended; `outcome` holds the verdict and the report.
    Done,
}

/// A detached run, as stored under `run.<id>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// Protocol version.
    pub v: u32,
    /// The run's id.
    pub id: String,
    /// The scenario (variables replaced, fleets inline).
    pub scenario: Scenario,
    /// `--keep`.
    pub keep: bool,
    /// Where it stands.
    pub state: RunState,
    /// Its progress.
    pub progress: Progress,
    /// Cancel asked (`scenario cancel`): the executor stops and cleans up.
    pub cancel: bool,
    /// The agent executing it (name (id)), and how many agents took it so far.
    #[serde(default)]
    pub holder: Option<String>,
    /// How many times an agent took the run (more than 1: resumed after a failover).
    #[serde(default)]
    pub takeovers: u32,
    /// Created (Unix ms).
    pub created_ms: u64,
    /// Last written (Unix ms).
    pub updated_ms: u64,
    /// The last log lines (steps, checks, cleanup).
    pub log: Vec<String>,
    /// Lines logged in all (`log` holds the last ones: line `i` of `log` is line
    /// `log_count - log.len() + i` of the run).
    #[serde(default)]
    pub log_count: u64,
    /// The outcome (the `--report` document), once done.
    #[serde(default)]
    pub outcome: Option<serde_json::Value>,
}

/// The lease of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunLease {
    /// The agent's id.
    pub agent_id: String,
    /// Its name.
    pub agent_name: String,
}

/// The scenarios bucket.
#[derive(Clone, Debug)]
pub struct Runs {
    kv: kv::Store,
    js: async_nats::jetstream::Context,
    bucket: String,
}

impl Runs {
    /// Opens the bucket (creating it if missing).
    pub async fn open(ctx: &Ctx) -> Result<Self> {
        let kv = open_scenarios(&ctx.conn.js, &ctx.conn.ns, ctx.conn.kv_replicas)
            .await
            .map_err(anyhow::Error::msg)?;
        Ok(Self {
            kv,
            js: ctx.conn.js.clone(),
            bucket: ctx.conn.ns.scenarios_bucket(),
        })
    }

    /// Stores a new run; returns its id.
    pub async fn submit(&self, scenario: Scenario, keep: bool) -> Result<String> {
        let id = format!(
            "{}-{}",
            scenario
                .name
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .take(40)
                .collect::<String>(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let now = now_ms();
        let rec = RunRecord {
            v: 1,
            id: id.clone(),
            scenario,
            keep,
            state: RunState::Pending,
            progress: Progress::default(),
            cancel: false,
            holder: None,
            takeovers: 0,
            created_ms: now,
            updated_ms: now,
            log: Vec::new(),
            log_count: 0,
            outcome: None,
        };
        let bytes = serde_json::to_vec(&rec)?;
        if bytes.len() > MAX_RECORD {
            bail!(
                "the scenario is too large to run detached ({} bytes; at most {MAX_RECORD})",
                bytes.len()
            );
        }
        self.kv
            .create(run_key(&id), bytes.into())
            .await
            .context("cannot store the run in the scenarios bucket")?;
        Ok(id)
    }

    /// A run and its revision.
    pub async fn get(&self, id: &str) -> Result<Option<(RunRecord, u64)>> {
        let Some(e) = self
            .kv
            .entry(run_key(id))
            .await
            .context("cannot read the scenarios bucket")?
        else {
            return Ok(None);
        };
        if e.operation != Operation::Put {
            return Ok(None);
        }
        Ok(Some((decode(&e.value)?, e.revision)))
    }

    /// Every run, oldest first (unreadable ones are skipped with a warning).
    pub async fn list(&self) -> Result<Vec<RunRecord>> {
        let mut keys = self
            .kv
            .keys()
            .await
            .context("cannot list the scenarios bucket")?;
        let mut out = Vec::new();
        while let Some(k) = keys.next().await {
            let Ok(k) = k else { continue };
            let Some(id) = parse_scenario_run_key(&k) else {
                continue;
            };
            match self.get(id).await {
                Ok(Some((r, _))) => out.push(r),
                Ok(None) => {}
                Err(e) => tracing::warn!(run = id, error = %e, "skipping a run record"),
            }
        }
        out.sort_by_key(|r| r.created_ms);
        Ok(out)
    }

    /// Changes run `id` with `f` (compare and set).
    pub async fn update(&self, id: &str, mut f: impl FnMut(&mut RunRecord)) -> Result<RunRecord> {
        for _ in 0..10 {
            let (mut rec, rev) = self.get(id).await?.ok_or_else(|| no_run(id))?;
            f(&mut rec);
            rec.updated_ms = now_ms();
            match self
                .kv
                .update(run_key(id), serde_json::to_vec(&rec)?.into(), rev)
                .await
            {
                Ok(_) => return Ok(rec),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(e).context("cannot write the run"),
            }
        }
        bail!("run {id} keeps changing under us: try again")
    }

    /// Asks the run to stop (its executor cleans up).
    pub async fn cancel(&self, id: &str) -> Result<RunRecord> {
        self.update(id, |r| r.cancel = true).await
    }

    /// The agent holding run `id`'s lease, if any.
    pub async fn holder(&self, id: &str) -> Result<Option<RunLease>> {
        match self
            .kv
            .entry(lease_key(id))
            .await
            .context("cannot read a run's lease")?
        {
            Some(e) if e.operation == Operation::Put => Ok(serde_json::from_slice(&e.value).ok()),
            _ => Ok(None),
        }
    }

    async fn lease(&self, id: &str, lease: &RunLease, expected: u64) -> Result<u64, KvError> {
        let value =
            Bytes::from(serde_json::to_vec(lease).map_err(|e| KvError::Other(e.to_string()))?);
        ttl_put(
            &self.js,
            &self.bucket,
            &lease_key(id),
            value,
            expected,
            Some(LEASE_TTL),
        )
        .await
    }

    /// Creates run `id`'s lease (also over a delete or expiry marker).
    async fn claim(&self, id: &str, lease: &RunLease) -> Result<u64, KvError> {
        match self.lease(id, lease, 0).await {
            Err(KvError::Conflict) => {}
            other => return other,
        }
        match self
            .kv
            .entry(lease_key(id))
            .await
            .map_err(|e| KvError::Other(e.to_string()))?
        {
            Some(e) if e.operation != Operation::Put => self.lease(id, lease, e.revision).await,
            _ => Err(KvError::Exists),
        }
    }
}

fn no_run(id: &str) -> anyhow::Error {
    anyhow!("no scenario run {id}: see `pluribusctl scenario list`")
}

fn decode(bytes: &[u8]) -> Result<RunRecord> {
    if bytes.len() > MAX_RECORD {
        bail!(
            "a run record of {} bytes is larger than {MAX_RECORD}",
            bytes.len()
        );
    }
    let rec: RunRecord = serde_json::from_slice(bytes).context("unreadable run record")?;
    if rec.v != 1 {
        bail!("run record of version {} (this build reads 1)", rec.v);
    }
    Ok(rec)
}

/// What the executor writes to the record while the run goes.
enum Write {
    Line(String),
    Progress(Progress),
}

/// Agent side: looks for runs no agent holds, takes them (one lease each) and executes
/// them, until `token` is cancelled. An agent whose credential does not cover the scenarios
/// bucket says so once (and tries again every 30 s).
pub async fn serve(ctx: Ctx, agent_id: String, agent_name: String, token: CancellationToken) {
    // The bucket may not be there yet (a cluster electing its JetStream leader), or this
    // credential may not reach it: try again now and then, saying so once.
    let mut said = false;
    let runs = loop {
        match Runs::open(&ctx).await {
            Ok(r) => break r,
            Err(e) if !said => {
                said = true;
                tracing::warn!(error = %format!("{e:#}"), "not executing detached scenario runs for now (trying again every 30 s)");
            }
            Err(e) => {
                tracing::debug!(error = %format!("{e:#}"), "scenarios bucket still out of reach")
            }
        }
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
    };
    let lease = RunLease {
        agent_id,
        agent_name,
    };
    let mut held: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    // The runs not done yet and their leases, as a watch of the bucket sees them: at rest
    // (no open run) an agent makes no JetStream request at all, where listing the bucket
    // every scan cost one, and it tries to take only the runs nobody holds.
    let mut open = OpenRuns::default();
    let mut watch: Option<kv::Watch> = None;
    let mut watched_at = tokio::time::Instant::now();
    let mut scan = tokio::time::interval(SCAN);
    scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Not watching (first pass, NATS was away) or watching for long: watch again; a
        // failure waits for the next scan.
        if watch.is_none() || watched_at.elapsed() >= REWATCH {
            match runs
                .kv
                .watch_many_with_history([SCENARIO_RUNS, SCENARIO_LEASES])
                .await
            {
                Ok(w) => {
                    open.clear();
                    watch = Some(w);
                    watched_at = tokio::time::Instant::now();
                }
                Err(e) => tracing::debug!(error = %e, "cannot watch scenario runs"),
            }
        }
        let next = async {
            match watch.as_mut() {
                Some(w) => w.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = token.cancelled() => break,
            e = next => match e {
                Some(Ok(e)) => follow(&mut open, &e),
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "the watch of scenario runs broke; watching again");
                    watch = None;
                }
                None => watch = None,
            },
            _ = scan.tick() => {
                held.retain(|_, h| !h.is_finished());
                let free = open.claimable(|id| held.contains_key(id));
                for id in &free {
                    match runs.claim(id, &lease).await {
                        Ok(rev) => {
                            tracing::info!(run = %id, "executing a detached scenario run");
                            let (ctx, runs, lease, token) =
                                (ctx.clone(), runs.clone(), lease.clone(), token.clone());
                            let id = id.clone();
                            held.insert(id.clone(), tokio::spawn(async move {
                                if let Err(e) = execute(&ctx, &runs, &id, &lease, rev, token).await {
                                    tracing::warn!(run = %id, error = %format!("{e:#}"), "detached scenario run stopped");
                                }
                            }));
                        }
                        Err(KvError::Exists | KvError::Conflict) => {}
                        Err(e) => tracing::debug!(run = %id, error = %e, "cannot claim a run"),
                    }
                }
            }
        }
    }
    // The agent stops: its runs stop without cleanup; the leases (released here) let
    // another agent resume them.
    for (_, h) in held {
        h.abort();
    }
}

/// Keeps `open` (the runs not done, and the leased ones) up to date with one entry of the
/// runs watch. A record that cannot be read is left out (another client may have written it).
fn follow(open: &mut OpenRuns, e: &kv::Entry) {
    if let Some(id) = parse_scenario_lease_key(&e.key) {
        open.lease(id, e.operation == Operation::Put);
        return;
    }
    let Some(id) = parse_scenario_run_key(&e.key) else {
        return;
    };
    let not_done = e.operation == Operation::Put
        && match decode(&e.value) {
            Ok(r) => r.state != RunState::Done && r.id == id,
            Err(err) => {
                tracing::warn!(run = id, error = %format!("{err:#}"), "skipping a run record");
                false
            }
        };
    open.run(id, not_done);
}

/// Executes run `id` while holding its lease (revision `rev`).
async fn execute(
    ctx: &Ctx,
    runs: &Runs,
    id: &str,
    lease: &RunLease,
    mut rev: u64,
    stop: CancellationToken,
) -> Result<()> {
    let who = format!("{} ({})", lease.agent_name, lease.agent_id);
    let rec = runs
        .update(id, |r| {
            r.state = RunState::Running;
            r.holder = Some(who.clone());
            r.takeovers += 1;
            let line = if r.takeovers > 1 {
                format!(
                    "agent {who} resumes the run at step {}",
                    r.progress.step + 1
                )
            } else {
                format!("agent {who} runs it")
            };
            push_log(r, line);
        })
        .await?;
    let cancel = CancellationToken::new();
    let (tx, mut rx) = mpsc::unbounded_channel::<Write>();
    let line_tx = tx.clone();
    let opts = RunOptions {
        keep: rec.keep,
        cancel: cancel.clone(),
        observer: Some(Arc::new(move |n: &Note| {
            let line = match n {
                Note::Step { index, of, text } => format!("[{}/{of}] {text}", index + 1),
                Note::Check(c) => format!(
                    "{} {}: {} ({})",
                    if c.passed { "pass" } else { "FAIL" },
                    c.name,
                    c.shown,
                    c.threshold
                ),
                Note::Line(l) => l.clone(),
            };
            let _ = line_tx.send(Write::Line(line));
        })),
        on_progress: Some(Arc::new(move |p: &Progress| {
            let _ = tx.send(Write::Progress(p.clone()));
        })),
    };
    let scenario = rec.scenario.clone();
    let progress = rec.progress.clone();
    let run = resume(ctx, &scenario, opts, progress);
    tokio::pin!(run);
    let mut renew = tokio::time::interval(LEASE_TTL / 3);
    renew.tick().await;
    let mut lease_lost = false;
    let outcome = loop {
        tokio::select! {
            o = &mut run => break o,
            _ = stop.cancelled() => return Ok(()),
            Some(w) = rx.recv() => {
                let mut batch = vec![w];
                while let Ok(w) = rx.try_recv() {
                    batch.push(w);
                }
                runs.update(id, |r| {
                    for w in &batch {
                        match w {
                            Write::Line(l) => push_log(r, l.clone()),
                            Write::Progress(p) => r.progress = p.clone(),
                        }
                    }
                    if r.cancel {
                        cancel.cancel();
                    }
                }).await?;
            }
            _ = renew.tick() => {
                match runs.lease(id, lease, rev).await {
                    Ok(r) => rev = r,
                    Err(e) => {
                        // Another agent may hold it now: stop at once, without cleanup.
                        tracing::warn!(run = id, error = %e, "lost the lease of a scenario run");
                        lease_lost = true;
                        break Err(anyhow!("lost the run's lease"));
                    }
                }
                if let Ok(Some((r, _))) = runs.get(id).await {
                    if r.cancel {
                        cancel.cancel();
                    }
                }
            }
        }
    };
    if lease_lost {
        return Ok(());
    }
    let mut rest = Vec::new();
    while let Ok(w) = rx.try_recv() {
        rest.push(w);
    }
    let outcome = outcome.map(|o| serde_json::to_value(&o).unwrap_or_default());
    runs.update(id, |r| {
        for w in &rest {
            match w {
                Write::Line(l) => push_log(r, l.clone()),
                Write::Progress(p) => r.progress = p.clone(),
            }
        }
        r.state = RunState::Done;
        match &outcome {
            Ok(o) => {
                push_log(r, format!("verdict: {}", o["verdict"].as_str().unwrap_or("?")));
                r.outcome = Some(o.clone());
            }
            Err(e) => {
                push_log(r, format!("could not run: {e:#}"));
                r.outcome = Some(serde_json::json!({"scenario": r.scenario.name, "verdict": "error", "reason": format!("{e:#}")}));
            }
        }
    })
    .await?;
    let _ = runs
        .kv
        .delete_expect_revision(lease_key(id), Some(rev))
        .await;
    Ok(())
}

fn push_log(r: &mut RunRecord, line: String) {
    r.log.push(line);
    r.log_count += 1;
    if r.log.len() > MAX_LOG {
        let extra = r.log.len() - MAX_LOG;
        r.log.drain(..extra);
    }
}
