#![doc = include_str!("../README.md")]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod cmd;
mod dashboard;
mod spark;

// The client library's modules, named as the commands use them (`crate::state`, ...).
use pluribus_client::{
    apply, beats, bus, connections, denied, feed, figures, output, probe, state, wait,
};

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = cmd::Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cmd::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `scenario`: its own exit statuses (its summary is printed already).
            if let Some(x) = e.downcast_ref::<pluribus_client::scenario::Exit>() {
                if !x.message.is_empty() {
                    eprintln!("error: {}", x.message);
                }
                return ExitCode::from(x.code);
            }
            eprintln!("error: {e:#}");
            if e.downcast_ref::<probe::checks::ChecksFailed>().is_some() {
                ExitCode::from(probe::checks::CHECKS_FAILED_EXIT)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// A closed stdout (`pluribusctl agents --json | head -c 20`) ends the program quietly, as
/// it ends `ls`: Rust ignores SIGPIPE, so a write to a closed pipe would fail with EPIPE and
/// `println!` would panic. The default action restores the Unix convention.
fn quiet_on_closed_stdout() {
    // SAFETY: resetting a signal's disposition to the default, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Logs to stderr; `warn` unless RUST_LOG says otherwise.
fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
