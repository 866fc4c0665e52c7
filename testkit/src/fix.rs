//! A real FIX 4.4 acceptor built on QuickFIX (the `quickfix2` Python binding, installed by
//! deploy/install-deps.sh) on a free port. It answers NewOrderSingle and OrderCancelRequest
//! with ExecutionReports and logs every logon, logout and message as JSON lines
//! (`fix/acceptor.py` says what).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::ports::{find_in_path, free_port};
use crate::process::{kill_and_wait, read_lossy, tail};
use crate::server::Restart;

const SCRIPT: &str = include_str!("../fix/acceptor.py");
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// `$PLURIBUS_PYTHON`, or `python3` on `PATH`.
fn python() -> PathBuf {
    match std::env::var_os("PLURIBUS_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => find_in_path("python3", &["/usr/bin", "/usr/local/bin"]).unwrap_or_else(|| {
            panic!("python3 not found on PATH (or set PLURIBUS_PYTHON): run deploy/install-deps.sh")
        }),
    }
}

/// A QuickFIX acceptor on 127.0.0.1, CompID `GATEWAY`, with one session per client
/// SenderCompID given. SIGKILLed on drop.
pub struct FixAcceptor {
    dir: TempDir,
    port: u16,
    clients: Vec<String>,
    password: Option<String>,
    child: Option<Child>,
}

impl FixAcceptor {
    /// The acceptor's CompID (the clients' TargetCompID).
    pub const COMP_ID: &'static str = "GATEWAY";

    /// Starts an acceptor that knows `clients` (their SenderCompIDs) and waits until it
    /// listens; panics with its log tail otherwise.
    pub fn start(clients: &[String]) -> FixAcceptor {
        Self::start_with(clients, None)
    }

    /// Like [`start`](Self::start); with `password`, a Logon without that Password (554)
    /// is refused with a Logout whose Text is "wrong password".
    pub fn start_with(clients: &[String], password: Option<&str>) -> FixAcceptor {
        let dir = tempfile::Builder::new()
            .prefix("pluribus-fix-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        let script = dir.path().join("acceptor.py");
        std::fs::write(&script, SCRIPT)
            .unwrap_or_else(|e| panic!("cannot write the acceptor: {e}"));
        let mut a = FixAcceptor {
            dir,
            port: 0,
            clients: clients.to_vec(),
            password: password.map(str::to_string),
            child: None,
        };
        for attempt in 1..=5 {
            a.port = free_port();
            match a.try_spawn() {
                Ok(()) => return a,
                Err(true) if attempt < 5 => continue,
                Err(_) => break,
            }
        }
        a.fail("did not start")
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address for `--fix-host`, `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every event logged so far (all runs), one JSON object each.
    pub fn events(&self) -> Vec<serde_json::Value> {
        read_lossy(&self.events_path())
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The acceptor's stdout/stderr and QuickFIX's own event logs, for failure messages.
    pub fn log(&self) -> String {
        let mut s = read_lossy(&self.dir.path().join("acceptor.log"));
        s.push_str(&tail(&read_lossy(&self.events_path()), 30));
        s
    }

    /// SIGTERM, wait up to 5 s, then SIGKILL. Idempotent.
    pub fn stop(&mut self) {
        self.stop_server();
    }

    /// Starts it again on the same port; retries while the port is not yet reusable.
    pub fn start_again(&mut self) {
        self.start_server_again();
    }

    fn events_path(&self) -> PathBuf {
        self.dir.path().join("events.jsonl")
    }

    fn readies(&self) -> usize {
        self.events().iter().filter(|e| e["ev"] == "ready").count()
    }

    /// Spawns the acceptor and waits for its `ready` event. `Err(true)` if it exited (port
    /// taken?), `Err(false)` if it never got ready.
    fn try_spawn(&mut self) -> Result<(), bool> {
        let before = self.readies();
        let log_path = self.dir.path().join("acceptor.log");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log_path.display()));
        let err_log = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot dup log file handle: {e}"));
        let port = self.port.to_string();
        let clients = self.clients.join(",");
        let events = self.events_path();
        let script = self.dir.path().join("acceptor.py");
        let mut args: Vec<&std::ffi::OsStr> = vec![
            script.as_os_str(),
            "--port".as_ref(),
            port.as_ref(),
            "--comp-id".as_ref(),
            Self::COMP_ID.as_ref(),
            "--clients".as_ref(),
            clients.as_ref(),
            "--log".as_ref(),
            events.as_os_str(),
        ];
        if let Some(p) = &self.password {
            args.push("--password".as_ref());
            args.push(p.as_ref());
        }
        let bin = python();
        let mut child = Command::new(&bin)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", bin.display()));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return Err(true);
            }
            if self.readies() > before {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                kill_and_wait(&mut child);
                return Err(false);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "the QuickFIX acceptor (port {}) {what} within {READY_TIMEOUT:?} (is quickfix2 installed? run deploy/install-deps.sh); log tail:\n{}",
            self.port,
            tail(&self.log(), 40)
        )
    }

    /// The temp dir (events.jsonl, acceptor.log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Restart for FixAcceptor {
    fn child(&mut self) -> &mut Option<Child> {
        &mut self.child
    }

    fn try_spawn(&mut self) -> Result<(), bool> {
        FixAcceptor::try_spawn(self)
    }

    fn fail(&self, what: &str) -> ! {
        FixAcceptor::fail(self, what)
    }
}

impl Drop for FixAcceptor {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_wait(&mut child);
        }
    }
}
