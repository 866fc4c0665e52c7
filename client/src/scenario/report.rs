//! A run's outcome for people and machines: the summary table, the JSON report, JUnit XML
//! (one test case per check) and the comparison with an earlier report (`--baseline`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use serde::Deserialize;

use super::outcome::{Outcome, Verdict};
use crate::output::Table;

/// The summary table: every check, its value, threshold and verdict.
pub fn table(o: &Outcome) -> String {
    let mut t = Table::new(&["CHECK", "VALUE", "THRESHOLD", "RESULT"]);
    for c in &o.checks {
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
    let failed = o.failed().count();
    let mut out = if o.checks.is_empty() {
        "no checks\n".to_string()
    } else {
        t.render()
    };
    let verdict = match o.verdict {
        Verdict::Passed => format!(
            "scenario {}: passed ({} checks)",
            o.scenario,
            o.checks.len()
        ),
        Verdict::Failed => format!(
            "scenario {}: FAILED ({failed} of {} checks failed)",
            o.scenario,
            o.checks.len()
        ),
        Verdict::Error => format!("scenario {}: could not run", o.scenario),
        Verdict::Cancelled => format!("scenario {}: cancelled", o.scenario),
    };
    out.push_str(&verdict);
    if let Some(r) = &o.reason {
        out.push_str(&format!(": {r}"));
    }
    out.push('\n');
    out
}

/// Writes the JSON report.
pub fn write_json(o: &Outcome, path: &Path) -> Result<()> {
    let text = serde_json::to_string_pretty(o)?;
    std::fs::write(path, text + "\n")
        .with_context(|| format!("cannot write the report to {}", path.display()))
}

/// The JUnit XML of a run: one test suite (the scenario), one test case per check; a step
/// that could not run is a test case in error.
pub fn junit(o: &Outcome) -> Result<String> {
    let mut report = Report::new(format!("pluribus scenario {}", o.scenario));
    let mut suite = TestSuite::new(o.scenario.clone());
    for c in &o.checks {
        let status = if c.passed {
            TestCaseStatus::success()
        } else {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(format!(
                "{}: {} (threshold {})",
                c.check, c.shown, c.threshold
            ));
            s.set_type("threshold");
            s
        };
        let mut tc = TestCase::new(c.name.clone(), status);
        tc.set_classname(format!("{}.step{}", o.scenario, c.step));
        tc.set_system_out(format!("value: {}\nthreshold: {}\n", c.shown, c.threshold));
        suite.add_test_case(tc);
    }
    if o.verdict == Verdict::Error || o.verdict == Verdict::Cancelled {
        let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
        s.set_message(
            o.reason
                .clone()
                .unwrap_or_else(|| "the scenario did not finish".into()),
        );
        let mut tc = TestCase::new("scenario ran to the end", s);
        tc.set_classname(o.scenario.clone());
        suite.add_test_case(tc);
    }
    suite.set_time(Duration::from_millis(
        o.ended_ms.saturating_sub(o.started_ms),
    ));
    report.add_test_suite(suite);
    report.to_string().context("cannot write the JUnit XML")
}

/// Writes the JUnit XML.
pub fn write_junit(o: &Outcome, path: &Path) -> Result<()> {
    std::fs::write(path, junit(o)?)
        .with_context(|| format!("cannot write the JUnit file {}", path.display()))
}

/// The checks of an earlier report (`--report`), as much as a comparison needs.
#[derive(Debug, Deserialize)]
pub struct Baseline {
    /// Its checks.
    pub checks: Vec<BaselineCheck>,
}

/// A check of an earlier report.
#[derive(Debug, Deserialize)]
pub struct BaselineCheck {
    /// Name.
    pub name: String,
    /// Value.
    pub value: Option<f64>,
    /// Shown.
    pub shown: String,
    /// Passed.
    pub passed: bool,
    /// Lower is better.
    #[serde(default)]
    pub lower_is_better: bool,
}

/// Reads an earlier report.
pub fn read_baseline(path: &Path) -> Result<Baseline> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the baseline {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!("{} is not a scenario report: give a file written by `pluribusctl scenario run --report`", path.display())
    })
}

/// What got better or worse since `old`, one line per check; checks with the same value,
/// or in one report only, are said too.
pub fn compare(old: &Baseline, new: &Outcome) -> String {
    let before: BTreeMap<&str, &BaselineCheck> =
        old.checks.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut out = String::new();
    for c in &new.checks {
        let Some(b) = before.get(c.name.as_str()) else {
            out.push_str(&format!("new       {}: {}\n", c.name, c.shown));
            continue;
        };
        let word = match (b.value, c.value) {
            _ if b.passed && !c.passed => "WORSE",
            _ if !b.passed && c.passed => "better",
            (Some(x), Some(y)) if (x - y).abs() <= f64::EPSILON * x.abs().max(1.0) => "same",
            (Some(x), Some(y)) if (y < x) == c.lower_is_better => "better",
            (Some(_), Some(_)) => "WORSE",
            _ => "same",
        };
        let pass = |p: bool| if p { "pass" } else { "FAIL" };
        out.push_str(&format!(
            "{word:<9} {}: {} ({}) -> {} ({})\n",
            c.name,
            b.shown,
            pass(b.passed),
            c.shown,
            pass(c.passed)
        ));
    }
    let now: std::collections::BTreeSet<&str> =
        new.checks.iter().map(|c| c.name.as_str()).collect();
    for b in &old.checks {
        if !now.contains(b.name.as_str()) {
            out.push_str(&format!("gone      {}: was {}\n", b.name, b.shown));
        }
    }
    out
}
