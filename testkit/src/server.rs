//! What the harness's servers on a port of their own (mosquitto, the FIX acceptor) share:
//! stopping them and starting them again on the same port, as a test of reconnects does.

use std::process::Child;
use std::time::{Duration, Instant};

use crate::process::terminate_child;

/// How long a server gets to exit on SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a restart retries while the port is not yet reusable.
const REBIND_TIMEOUT: Duration = Duration::from_secs(10);

/// A server process the harness can stop and start again.
pub(crate) trait Restart {
    /// The running process, if any.
    fn child(&mut self) -> &mut Option<Child>;
    /// Spawns it on its port and waits until it is ready: `Err(true)` if the process exited
    /// (port not yet reusable?), `Err(false)` if it never got ready.
    fn try_spawn(&mut self) -> Result<(), bool>;
    /// Panics with what went wrong and the server's log.
    fn fail(&self, what: &str) -> !;

    /// SIGTERM, wait up to 5 s, then SIGKILL. Idempotent.
    fn stop_server(&mut self) {
        if let Some(mut child) = self.child().take() {
            terminate_child(&mut child, STOP_TIMEOUT);
        }
    }

    /// Starts it again on the same port; retries while the port is not yet reusable.
    /// Does nothing if it is running.
    fn start_server_again(&mut self) {
        if self.child().is_some() {
            return;
        }
        let deadline = Instant::now() + REBIND_TIMEOUT;
        loop {
            match self.try_spawn() {
                Ok(()) => return,
                Err(true) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(_) => self.fail("did not start again"),
            }
        }
    }
}
