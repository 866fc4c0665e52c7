//! The "Scenarios" section: detached runs (`scenario run --detach`) read from the scenarios
//! bucket, each with its current step and its checks. Records come from the bus: a
//! malformed one is skipped with a warning, and at most [`MAX_RUNS`] (the most recent) are
//! kept, each with at most [`MAX_CHECKS`] checks and bounded texts.

use std::collections::BTreeMap;

use pluribus_client::scenario::detached::{RunRecord, RunState, MAX_RECORD};
use serde::Serialize;

use crate::feed::Change;

/// Most runs kept (and shown): the most recently created.
pub const MAX_RUNS: usize = 50;
/// Most checks kept per run.
pub const MAX_CHECKS: usize = 100;
/// Longest text kept (names, values, step descriptions), in characters.
const MAX_TEXT: usize = 200;

/// One check of a run, as `scenario status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckView {
    /// Its name.
    pub name: String,
    /// The value as shown.
    pub value: String,
    /// The threshold as shown.
    pub threshold: String,
    /// Whether it passed.
    pub passed: bool,
}

/// One detached run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunView {
    /// The run's id.
    pub id: String,
    /// The scenario's name.
    pub name: String,
    /// pending, running or done.
    pub state: RunState,
    /// passed, failed, cancelled, error... once done.
    pub verdict: Option<String>,
    /// Why it ended so, when the outcome says.
    pub reason: Option<String>,
    /// The current (next) top-level step, from 0 (equal to `steps` once every step ran).
    pub step: usize,
    /// Top-level steps in all.
    pub steps: usize,
    /// The current step in a few words (empty once every step ran).
    pub step_text: String,
    /// The agent executing it.
    pub holder: Option<String>,
    /// Created (Unix ms).
    pub created_ms: u64,
    /// Last written (Unix ms).
    pub updated_ms: u64,
    /// Its checks so far (the first [`MAX_CHECKS`]).
    pub checks: Vec<CheckView>,
    /// Checks left out (beyond [`MAX_CHECKS`]).
    pub checks_left_out: usize,
}

/// What the page's Scenarios section shows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Scenarios {
    /// The runs, most recent first.
    pub runs: Vec<RunView>,
    /// Why the list is empty or incomplete (the bucket cannot be read), if it is.
    pub note: Option<String>,
}

/// The runs the dashboard follows.
#[derive(Debug, Default)]
pub struct Board {
    runs: BTreeMap<String, RunView>,
    /// Why the bucket cannot be followed.
    pub note: Option<String>,
}

fn cut(s: &str) -> String {
    if s.chars().count() <= MAX_TEXT {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(MAX_TEXT).collect();
        t.push('…');
        t
    }
}

/// The view of a stored record, or why it is unreadable.
pub fn decode(bytes: &[u8]) -> Result<RunView, String> {
    if bytes.len() > MAX_RECORD {
        return Err(format!(
            "a run record of {} bytes is larger than {MAX_RECORD}",
            bytes.len()
        ));
    }
    let r: RunRecord =
        serde_json::from_slice(bytes).map_err(|e| format!("unreadable run record: {e}"))?;
    if r.v != 1 {
        return Err(format!(
            "run record of version {} (this build reads 1)",
            r.v
        ));
    }
    let outcome_text = |k: &str| {
        r.outcome
            .as_ref()
            .and_then(|o| o.get(k))
            .and_then(|v| v.as_str())
            .map(cut)
    };
    let checks = &r.progress.checks;
    Ok(RunView {
        id: cut(&r.id),
        name: cut(&r.scenario.name),
        state: r.state,
        verdict: outcome_text("verdict"),
        reason: outcome_text("reason"),
        step: r.progress.step,
        steps: r.scenario.steps.len(),
        step_text: r
            .scenario
            .steps
            .get(r.progress.step)
            .map(|s| cut(&s.describe()))
            .unwrap_or_default(),
        holder: r.holder.as_deref().map(cut),
        created_ms: r.created_ms,
        updated_ms: r.updated_ms,
        checks: checks
            .iter()
            .take(MAX_CHECKS)
            .map(|c| CheckView {
                name: cut(&c.name),
                value: cut(&c.shown),
                threshold: cut(&c.threshold),
                passed: c.passed,
            })
            .collect(),
        checks_left_out: checks.len().saturating_sub(MAX_CHECKS),
    })
}

impl Board {
    /// Applies one change of the bucket's `run.>` keys.
    pub fn apply(&mut self, c: Change) {
        let Some(id) = pluribus_common::subjects::parse_scenario_run_key(&c.key) else {
            return;
        };
        if !c.live {
            self.runs.remove(id);
            return;
        }
        match decode(&c.value) {
            Ok(v) => {
                self.runs.insert(id.to_string(), v);
                while self.runs.len() > MAX_RUNS {
                    let oldest = self
                        .runs
                        .iter()
                        .min_by_key(|(k, r)| (r.created_ms, k.as_str()))
                        .map(|(k, _)| k.clone());
                    match oldest {
                        Some(k) => self.runs.remove(&k),
                        None => break,
                    };
                }
            }
            Err(e) => tracing::warn!(key = %c.key, error = %e, "ignoring a scenario run record"),
        }
    }

    /// The section's content: most recent first.
    pub fn view(&self) -> Scenarios {
        let mut runs: Vec<RunView> = self.runs.values().cloned().collect();
        runs.sort_by(|a, b| (b.created_ms, &b.id).cmp(&(a.created_ms, &a.id)));
        Scenarios {
            runs,
            note: self.note.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(key: &str, value: &str) -> Change {
        Change {
            key: key.into(),
            value: bytes::Bytes::from(value.to_string()),
            live: true,
            expires_ms: None,
            stored_ms: None,
        }
    }

    fn record(id: &str, created: u64) -> String {
        serde_json::json!({
            "v": 1, "id": id, "keep": false, "state": "running", "cancel": false,
            "created_ms": created, "updated_ms": created, "log": [],
            "scenario": {"name": format!("s-{id}"),
                         "steps": [{"wait": "1s"}, {"expect": {"checks": ["agents_alive >= 1"]}}]},
            "progress": {"step": 1, "started_ms": created, "deployed": [], "drained": [], "steps": [],
                         "checks": [{"name": "agents_alive >= 1", "check": "agents_alive >= 1", "step": 1,
                                     "value": 2.0, "shown": "2", "threshold": ">= 1", "passed": true,
                                     "lower_is_better": false, "at_ms": created}]}
        })
        .to_string()
    }

    #[test]
    fn runs_are_read_bounded_and_malformed_ones_skipped() {
        let mut b = Board::default();
        let one = record("a", 1);
        match decode(one.as_bytes()) {
            Ok(v) => {
                assert_eq!((v.name.as_str(), v.step, v.steps), ("s-a", 1, 2));
                assert_eq!(v.step_text, "expect 1 checks");
                assert_eq!(v.checks[0].value, "2");
                assert!(v.checks[0].passed);
            }
            Err(e) => panic!("{e}"),
        }
        b.apply(change("run.junk", "{not json"));
        b.apply(change("lease.a", "{}"));
        assert!(b.view().runs.is_empty());
        for i in 0..(MAX_RUNS as u64 + 5) {
            b.apply(change(
                &format!("run.r{i}"),
                &record(&format!("r{i}"), 100 + i),
            ));
        }
        let v = b.view();
        assert_eq!(v.runs.len(), MAX_RUNS);
        assert_eq!(v.runs[0].id, format!("r{}", MAX_RUNS + 4));
        assert!(v.runs.iter().all(|r| r.id != "r0"));
        b.apply(Change {
            key: format!("run.r{}", MAX_RUNS + 4),
            value: Default::default(),
            live: false,
            expires_ms: None,
            stored_ms: None,
        });
        assert_eq!(b.view().runs.len(), MAX_RUNS - 1);
    }
}
