//! Child processes with their output captured in files: [`Proc`] (long-running) and [`run`]
//! (run to completion).

use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How often child processes are polled while waiting for them.
const POLL: Duration = Duration::from_millis(20);

/// Sends `signal` to a child that has not been reaped yet (so its pid cannot have been reused).
pub(crate) fn signal(child: &Child, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our unreaped child.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Waits up to `timeout` for the child to exit; `None` if it is still running then.
pub(crate) fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(e) => panic!("waiting for child {}: {e}", child.id()),
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// SIGKILLs the child and reaps it.
pub(crate) fn kill_and_wait(child: &mut Child) -> ExitStatus {
    if let Ok(Some(status)) = child.try_wait() {
        return status;
    }
    signal(child, libc::SIGKILL);
    child
        .wait()
        .unwrap_or_else(|e| panic!("waiting for killed child {}: {e}", child.id()))
}

/// SIGTERM, wait up to `timeout`, then SIGKILL. Returns the status and whether SIGKILL was needed.
pub(crate) fn terminate_child(child: &mut Child, timeout: Duration) -> (ExitStatus, bool) {
    if let Ok(Some(status)) = child.try_wait() {
        return (status, false);
    }
    signal(child, libc::SIGTERM);
    match wait_timeout(child, timeout) {
        Some(status) => (status, false),
        None => (kill_and_wait(child), true),
    }
}

/// Reads a file as (lossy) UTF-8; empty if it does not exist.
pub(crate) fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `n` lines of `text`.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn create_file(path: &Path) -> File {
    File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()))
}

fn spawn_to_files(
    program: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    out: &Path,
    err: &Path,
) -> Child {
    Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(create_file(out))
        .stderr(create_file(err))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {} {args:?}: {e}", program.display()))
}

/// A child process whose stdout and stderr go to files in a private temp dir.
/// Stdin is null. It is SIGKILLed (and reaped) on drop.
pub struct Proc {
    child: Child,
    status: Option<ExitStatus>,
    name: String,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    _dir: TempDir,
}

impl Proc {
    /// Spawns `program` with `args` and extra environment variables `envs` (added to the
    /// inherited environment). Panics if it cannot be spawned.
    pub fn spawn(program: &Path, args: &[&str], envs: &[(&str, &str)]) -> Proc {
        let dir = tempfile::Builder::new()
            .prefix("pluribus-proc-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        let stdout_path = dir.path().join("stdout");
        let stderr_path = dir.path().join("stderr");
        let child = spawn_to_files(program, args, envs, &stdout_path, &stderr_path);
        Proc {
            child,
            status: None,
            name: program.display().to_string(),
            stdout_path,
            stderr_path,
            _dir: dir,
        }
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Freezes the process (SIGSTOP), as a paused VM or a stalled host would.
    pub fn freeze(&self) {
        if self.status.is_none() {
            signal(&self.child, libc::SIGSTOP);
        }
    }

    /// Lets a frozen process run again (SIGCONT).
    pub fn thaw(&self) {
        if self.status.is_none() {
            signal(&self.child, libc::SIGCONT);
        }
    }

    /// SIGKILLs the process and waits for it. Idempotent.
    pub fn kill(&mut self) {
        if self.status.is_none() {
            self.status = Some(kill_and_wait(&mut self.child));
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit; SIGKILLs it after that.
    /// Returns its exit code, or `None` if it had to be SIGKILLed or died by a signal.
    /// If the process had already exited, returns the code it exited with.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        if let Some(status) = self.status {
            return status.code();
        }
        let (status, killed) = terminate_child(&mut self.child, timeout);
        self.status = Some(status);
        if killed {
            None
        } else {
            status.code()
        }
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        if self.status.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.status = Some(status);
                false
            }
            Ok(None) => true,
            Err(e) => panic!("waiting for {} (pid {}): {e}", self.name, self.pid()),
        }
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout_path)
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            self.status = Some(kill_and_wait(&mut self.child));
        }
    }
}

/// The result of [`run`].
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code; `128 + signal number` if the process died by a signal.
    pub code: i32,
    /// Everything written to stdout (lossy UTF-8).
    pub stdout: String,
    /// Everything written to stderr (lossy UTF-8).
    pub stderr: String,
}

impl Output {
    /// Parses stdout as one JSON value; panics showing stdout and stderr if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}); exit code {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                self.code, self.stdout, self.stderr
            )
        })
    }

    /// Panics showing stdout and stderr unless the exit code is 0; returns `self` for chaining.
    pub fn ok(&self) -> &Self {
        if self.code != 0 {
            panic!(
                "expected exit code 0, got {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                self.code, self.stdout, self.stderr
            );
        }
        self
    }
}

/// Runs `program` to completion with null stdin, capturing stdout and stderr.
/// Kills it and panics (showing the output so far) if it runs longer than `timeout`.
///
/// This blocks the calling thread; from async tests, the multi-thread runtime keeps other
/// tasks running (or wrap it in `tokio::task::spawn_blocking`).
pub fn run(program: &Path, args: &[&str], envs: &[(&str, &str)], timeout: Duration) -> Output {
    let dir = tempfile::Builder::new()
        .prefix("pluribus-run-")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
    let out = dir.path().join("stdout");
    let err = dir.path().join("stderr");
    let mut child = spawn_to_files(program, args, envs, &out, &err);
    let Some(status) = wait_timeout(&mut child, timeout) else {
        kill_and_wait(&mut child);
        panic!(
            "{} {args:?} did not finish within {timeout:?}; killed it\n--- stdout ---\n{}\n--- stderr ---\n{}",
            program.display(),
            read_lossy(&out),
            read_lossy(&err)
        );
    };
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Output {
        code,
        stdout: read_lossy(&out),
        stderr: read_lossy(&err),
    }
}
