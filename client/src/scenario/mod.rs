//! Scenarios: a test of an IoT platform written as steps with checks, run against a
//! Pluribus cluster, judged with a verdict and reported for people and CI.
//!
//! - [`file`]: the file (YAML, TOML or JSON) and [`vars`] (`${VAR:-default}`);
//! - [`validate`]: what the steps must make sense of before anything runs;
//! - [`steps`]: the steps; [`check`]: checks and thresholds;
//! - [`runner`]: runs the steps, judges the checks, cleans up ([`run`]);
//! - [`measure`]: what checks are judged on; [`ops`]: what steps do to the cluster;
//! - [`report`]: the summary table, JSON, JUnit and the comparison with a baseline.
//!
//! From Rust:
//!
//! ```no_run
//! # async fn f(ctx: &pluribus_client::Ctx) -> anyhow::Result<()> {
//! use pluribus_client::scenario::{run, RunOptions, Scenario, Vars, Verdict};
//! let s = Scenario::from_file("soak.yaml".as_ref(), &Vars::default())?;
//! let outcome = run(ctx, &s, RunOptions::default()).await?;
//! assert_eq!(outcome.verdict, Verdict::Passed);
//! # Ok(()) }
//! ```

pub mod check;
pub mod detached;
pub mod file;
pub mod measure;
mod open_runs;
pub mod ops;
pub mod outcome;
pub mod report;
pub mod runner;
pub mod steps;
pub mod validate;
pub mod vars;

pub use check::Check;
pub use file::{Cleanup, Scenario};
pub use outcome::{CheckResult, Note, Observer, Outcome, Progress, RunOptions, Verdict};
pub use runner::{resume, run};
pub use steps::Step;
pub use vars::Vars;

/// Exit status of `scenario run` when a check failed (the same as `probe`'s).
pub const CHECKS_FAILED_EXIT: u8 = crate::probe::checks::CHECKS_FAILED_EXIT;
/// Exit status when the scenario could not run: a bad file, the cluster unreachable, a step
/// that could not be carried out.
pub const COULD_NOT_RUN_EXIT: u8 = 2;
/// Exit status when the run was cancelled (Ctrl-C), after its cleanup.
pub const CANCELLED_EXIT: u8 = 130;

/// An error that ends `pluribusctl scenario` with a given exit status.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    /// The exit status.
    pub code: u8,
    /// What to print (empty: nothing more).
    pub message: String,
}
