//! A real mosquitto MQTT broker on a free port, configured in a temp dir.

use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::ports::{find_in_path, free_port};
use crate::process::{kill_and_wait, read_lossy, tail};
use crate::server::Restart;

const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The mosquitto binary: `$PLURIBUS_MOSQUITTO`, or `mosquitto` on `PATH` or in /usr/sbin.
fn broker_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os("PLURIBUS_MOSQUITTO") {
        Some(p) => PathBuf::from(p),
        None => find_in_path("mosquitto", &["/usr/sbin", "/usr/local/sbin"]).unwrap_or_else(|| {
            panic!("mosquitto not found on PATH or in /usr/sbin (or set PLURIBUS_MOSQUITTO): run deploy/install-deps.sh")
        }),
    })
}

/// A real mosquitto broker listening on 127.0.0.1 on a free port, anonymous access allowed
/// (unless the extra config says otherwise). SIGKILLed on drop.
pub struct Mosquitto {
    dir: TempDir,
    port: u16,
    extra: String,
    child: Option<Child>,
}

impl Mosquitto {
    /// Starts a broker with `listener PORT 127.0.0.1` and `allow_anonymous true`; waits until a
    /// TCP connection succeeds (up to 10 s), panics with the log tail otherwise.
    pub fn start() -> Mosquitto {
        Self::start_with_config("")
    }

    /// Like [`start`](Self::start), with `extra` config lines appended (e.g. `password_file`,
    /// a second TLS `listener` with its `certfile`/`keyfile`). `listener PORT 127.0.0.1` is
    /// still written first; `allow_anonymous true` is left out if `extra` mentions
    /// `allow_anonymous`. The config is `dir()/mosquitto.conf`.
    pub fn start_with_config(extra: &str) -> Mosquitto {
        let dir = tempfile::Builder::new()
            .prefix("pluribus-mosquitto-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        let mut broker = Mosquitto {
            dir,
            port: 0,
            extra: extra.to_string(),
            child: None,
        };
        for attempt in 1..=5 {
            broker.port = free_port();
            match broker.try_spawn() {
                Ok(()) => return broker,
                // Port stolen between free_port() and the bind: try another one.
                Err(true) if attempt < 5 => continue,
                Err(_) => break,
            }
        }
        broker.fail("did not start")
    }

    /// The MQTT port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker URL, `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The temp dir holding `mosquitto.conf` and `mosquitto.log`; free for test files
    /// (password files, certificates) that a later [`start_again`](Self::start_again) reads.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// SIGTERM, wait up to 5 s, then SIGKILL. Idempotent.
    pub fn stop(&mut self) {
        self.stop_server();
    }

    /// Starts the broker again on the same port with the same config and waits until it
    /// accepts connections; retries for a while if the port is not yet reusable.
    /// Does nothing if it is running.
    pub fn start_again(&mut self) {
        self.start_server_again();
    }

    /// [`stop`](Self::stop) then [`start_again`](Self::start_again).
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// The broker's log so far (all runs, appended; includes its stderr).
    pub fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    fn write_config(&self) -> PathBuf {
        let mut conf = format!("listener {} 127.0.0.1\n", self.port);
        if !self.extra.contains("allow_anonymous") {
            conf.push_str("allow_anonymous true\n");
        }
        conf.push_str(&format!(
            "log_dest file {}\nlog_type all\npersistence false\n",
            self.log_path().display()
        ));
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // Otherwise mosquitto drops to user `mosquitto`, which cannot read our temp dir.
            conf.push_str("user root\n");
        }
        conf.push_str(&self.extra);
        conf.push('\n');
        let path = self.dir.path().join("mosquitto.conf");
        std::fs::write(&path, conf)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// Spawns the broker with the current port and waits for it to accept connections.
    /// `Err(true)` if the process exited (port taken?), `Err(false)` if it never got ready.
    fn try_spawn(&mut self) -> Result<(), bool> {
        let conf = self.write_config();
        let log_path = self.log_path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log_path.display()));
        let err_log = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot dup log file handle: {e}"));
        let bin = broker_binary();
        let mut child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", bin.display()));
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return Err(true);
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
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
            "mosquitto (port {}) {what} within {READY_TIMEOUT:?}; log tail:\n{}",
            self.port,
            tail(&self.log(), 40)
        )
    }
}

impl Restart for Mosquitto {
    fn child(&mut self) -> &mut Option<Child> {
        &mut self.child
    }

    fn try_spawn(&mut self) -> Result<(), bool> {
        Mosquitto::try_spawn(self)
    }

    fn fail(&self, what: &str) -> ! {
        Mosquitto::fail(self, what)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_wait(&mut child);
        }
    }
}
