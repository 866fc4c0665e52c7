//! Test-only harness for Pluribus integration tests: a real `nats-server` (JetStream) and a real
//! `mosquitto` on free ports, workspace binaries run as child processes, and polling helpers.
//! Everything it starts is killed when the handle is dropped. Failures panic with a clear
//! message (log tails, captured output), which is what a test wants.
//!
//! External tools: `nats-server` >= 2.11 (`$PLURIBUS_NATS_SERVER` or `PATH`) and `mosquitto`
//! (`$PLURIBUS_MOSQUITTO`, `PATH` or /usr/sbin), and for the FIX acceptor `python3` with the
//! `quickfix2` package; `deploy/install-deps.sh` installs them.
#![warn(missing_docs)]
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod agent;
pub mod docs;
mod fix;
mod mosquitto;
mod nats;
mod ports;
mod process;
mod server;

use std::future::Future;
use std::time::Duration;

pub use agent::{spawn_agent, spawn_agent_at};
pub use fix::FixAcceptor;
pub use mosquitto::Mosquitto;
pub use nats::{nats_server_binary, NatsCluster, NatsServer};
pub use ports::{bin_path, free_port};
pub use process::{run, Output, Proc};

/// Polls `check` every 200 ms until it returns `true`.
/// Panics with "timed out after {timeout:?} waiting for {what}" if that does not happen
/// within `timeout` (`check` is always evaluated at least once, and once more at the deadline).
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep((deadline - now).min(Duration::from_millis(200))).await;
    }
}
