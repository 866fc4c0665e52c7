//! `pluribus-agent`: parses flags and runs the agent with the built-in types. Everything
//! else lives in the library (`runtime` wires logging, limits, NATS and signals).

use std::process::ExitCode;

use clap::Parser;
use pluribus_agent::cli::AgentArgs;
use pluribus_agent::{runtime, Registry};

#[tokio::main]
async fn main() -> ExitCode {
    let args = AgentArgs::parse();
    runtime::init_tracing(args.log_json);
    match runtime::run(args, Registry::builtin(), "pluribus-agent").await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
