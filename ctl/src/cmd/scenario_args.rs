//! The flags of `scenario` and its verbs, apart from what they do (`scenario.rs` runs a file
//! here, `scenario_detached.rs` stores it for an agent), so that both can read them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use pluribus_client::scenario::{Exit, Scenario, Vars, COULD_NOT_RUN_EXIT};

/// Check or run a scenario.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status of `scenario run`: 0 every check passed; 3 a check failed; 2 the scenario could not run (bad file, NATS unreachable, a step that could not be carried out); 130 cancelled (Ctrl-C), after the cleanup. `scenario check`: 0 valid, 2 not."
)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub verb: Verb,
}

/// `scenario` verbs.
#[derive(Debug, clap::Subcommand)]
pub enum Verb {
    /// Validate a scenario file without touching the cluster.
    Check(FileArgs),
    /// Run a scenario: its steps, a live view on stderr, a summary table of its checks,
    /// and the cleanup (at the end, on failure and on Ctrl-C). --detach: an agent runs it.
    Run(RunArgs),
    /// List detached runs.
    List,
    /// A detached run's progress and checks so far; its verdict and report once done.
    Status(RunId),
    /// A detached run's log (steps, checks, cleanup); --follow until it ends.
    Logs(LogsArgs),
    /// Cancel a detached run: its agent stops it and runs the cleanup.
    Cancel(RunId),
}

/// A detached run.
#[derive(Debug, clap::Args)]
pub struct RunId {
    /// The run's id (`scenario list`).
    #[arg(value_name = "RUN")]
    pub run: String,
}

/// `scenario logs` flags.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The run.
    #[command(flatten)]
    pub id: RunId,
    /// Keep printing new lines until the run ends (then exit with its verdict's status).
    #[arg(long)]
    pub follow: bool,
}

/// The file and its variables.
#[derive(Debug, clap::Args)]
pub struct FileArgs {
    /// The scenario file (.yaml, .yml, .toml or .json).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Give a variable a value (wins over the environment and the file), e.g. --set DEVICES=50.
    #[arg(long = "set", value_name = "VAR=VALUE", value_parser = Vars::parse_set)]
    pub set: Vec<(String, String)>,
}

impl FileArgs {
    pub(super) fn load(&self) -> Result<Scenario> {
        let vars = Vars::with_env(self.set.iter().cloned().collect::<BTreeMap<_, _>>());
        Scenario::from_file(&self.file, &vars).map_err(|e| {
            Exit {
                code: COULD_NOT_RUN_EXIT,
                message: format!("bad scenario: {e}"),
            }
            .into()
        })
    }
}

/// `scenario run` flags.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 every check passed; 3 a check failed; 2 the scenario could not run (bad file or --set, NATS unreachable, a step that could not be carried out); 130 cancelled with Ctrl-C or SIGTERM, after the cleanup. With --detach: 0 once the run is stored (`scenario logs RUN --follow` exits with the verdict's status)."
)]
pub struct RunArgs {
    /// The file and its variables.
    #[command(flatten)]
    pub file: FileArgs,
    /// Leave what the run deployed (no cleanup).
    #[arg(long)]
    pub keep: bool,
    /// Write JUnit XML (one test case per check) to this file.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write the JSON report (every step, check and the figures) to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Compare with an earlier report (--report) and print what got better or worse.
    #[arg(long, value_name = "OLD.json")]
    pub baseline: Option<PathBuf>,
    /// Store the run in NATS for an agent to execute (it survives this command and the
    /// agent: another agent resumes it at its current step); prints the run's id.
    #[arg(long, conflicts_with_all = ["junit", "report", "baseline"])]
    pub detach: bool,
}
