//! What a scenario run gives back and shows while it runs: each check's and step's result,
//! the verdict and its exit status, the progress a detached run stores, the live view's
//! notes, and the options of a run.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::measure::Snapshot;
use crate::probe::summary::Summary;

/// One check's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Its name (the check's text unless named).
    pub name: String,
    /// The check as written.
    pub check: String,
    /// The top-level step it belongs to (from 0).
    pub step: usize,
    /// The value compared (latencies in ms; None: not measured).
    pub value: Option<f64>,
    /// The value as shown.
    pub shown: String,
    /// The threshold as shown.
    pub threshold: String,
    /// Whether it passed.
    pub passed: bool,
    /// Lower values are better (for the comparison with a baseline).
    pub lower_is_better: bool,
    /// When it was judged (Unix ms).
    pub at_ms: u64,
}

/// One step's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    /// The top-level index (from 0).
    pub index: usize,
    /// The step's kind.
    pub kind: String,
    /// In words.
    pub text: String,
    /// Start (Unix ms).
    pub started_ms: u64,
    /// End (Unix ms).
    pub ended_ms: u64,
    /// What went wrong, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A run's progress: enough to resume it at its current step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The next top-level step to run.
    pub step: usize,
    /// When the run started (Unix ms).
    pub started_ms: u64,
    /// Fleets the run deployed (deleted by the cleanup).
    pub deployed: Vec<String>,
    /// Agents (ids) the run drained (taking work again at the cleanup).
    pub drained: Vec<String>,
    /// The `kill_agent` step whose kill was sent: a run resumed by another agent (after
    /// killing the one it ran on) does not send it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_sent: Option<usize>,
    /// Steps done.
    pub steps: Vec<StepResult>,
    /// Checks so far.
    pub checks: Vec<CheckResult>,
    /// Why the run stopped early, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every step ran and every check passed.
    Passed,
    /// A check failed.
    Failed,
    /// A step could not be carried out (e.g. no agent to run a fleet).
    Error,
    /// Cancelled (Ctrl-C) before the end.
    Cancelled,
}

impl Verdict {
    /// The exit status `pluribusctl scenario run` ends with.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Passed => 0,
            Self::Failed => super::CHECKS_FAILED_EXIT,
            Self::Error => super::COULD_NOT_RUN_EXIT,
            Self::Cancelled => super::CANCELLED_EXIT,
        }
    }
}

/// What a run gives back.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The scenario's name.
    pub scenario: String,
    /// Where it was read from.
    pub origin: String,
    /// The verdict.
    pub verdict: Verdict,
    /// What stopped the run (a step's error, an aborting check, a cancel).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Start and end (Unix ms).
    pub started_ms: u64,
    /// End (Unix ms).
    pub ended_ms: u64,
    /// The variables' values.
    pub variables: BTreeMap<String, String>,
    /// Every step done.
    pub steps: Vec<StepResult>,
    /// Every check.
    pub checks: Vec<CheckResult>,
    /// The scenario's fleets' figures over the whole run, at the end (before the cleanup).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub figures: Option<Snapshot>,
    /// Events seen during the run, by kind.
    pub events: BTreeMap<String, u64>,
    /// Each probe window's figures.
    pub probes: BTreeMap<String, Summary>,
    /// What the cleanup did.
    pub cleanup: Vec<String>,
}

impl Outcome {
    /// Checks that failed.
    pub fn failed(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|c| !c.passed)
    }
}

/// Something the live view shows.
#[derive(Debug, Clone)]
pub enum Note {
    /// A top-level step starts.
    Step {
        /// Its index (from 0).
        index: usize,
        /// Of how many.
        of: usize,
        /// In words.
        text: String,
    },
    /// A check was judged.
    Check(CheckResult),
    /// Something worth a line (cleanup, a nested step).
    Line(String),
}

/// Receives [`Note`]s.
pub type Observer = Arc<dyn Fn(&Note) + Send + Sync>;

/// Receives the run's [`Progress`] after each top-level step.
pub type ProgressHook = Arc<dyn Fn(&Progress) + Send + Sync>;

/// How to run.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Leave what was deployed (no cleanup).
    pub keep: bool,
    /// Cancelling it stops the run (then the cleanup runs).
    pub cancel: CancellationToken,
    /// The live view.
    pub observer: Option<Observer>,
    /// Called with the progress after each top-level step (a detached run stores it).
    pub on_progress: Option<ProgressHook>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("keep", &self.keep)
            .finish()
    }
}
