//! Free TCP ports and locations of workspace binaries / external tools.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Ports already handed out by this process, so two parallel tests never get the same one.
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Returns a TCP port on 127.0.0.1 that was free a moment ago (binds `127.0.0.1:0` and
/// releases it). A port is never returned twice by one test process.
///
/// There is an unavoidable race with other processes between this call and the bind of the
/// server that uses the port; the servers in this crate retry with fresh ports when that happens.
pub fn free_port() -> u16 {
    let mut seen = handed_out()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for _ in 0..1000 {
        let listener = TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0 to find a free port: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr of a bound listener: {e}"))
            .port();
        if seen.insert(port) {
            return port;
        }
    }
    panic!("could not find a free TCP port on 127.0.0.1 after 1000 tries");
}

/// True if something can listen on `127.0.0.1:port` right now.
pub(crate) fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Path of a binary of this workspace, e.g. `bin_path("pluribus-agent")`.
///
/// Uses the environment variable `CARGO_BIN_EXE_<name>` if it is set; otherwise derives it from
/// the running test executable (`target/debug/deps/xxx` -> `target/debug/<name>`).
/// Panics if the binary does not exist ("build it first: cargo build --workspace").
pub fn bin_path(name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(format!("CARGO_BIN_EXE_{name}")) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return p;
        }
        panic!(
            "CARGO_BIN_EXE_{name} points to {}, which does not exist: build it first: cargo build --workspace",
            p.display()
        );
    }
    let exe = std::env::current_exe()
        .unwrap_or_else(|e| panic!("cannot find the current test executable: {e}"));
    let mut dir = exe
        .parent()
        .unwrap_or_else(|| panic!("test executable {} has no parent dir", exe.display()))
        .to_path_buf();
    // target/debug/deps/xxx or target/debug/examples/xxx -> target/debug
    if matches!(
        dir.file_name().and_then(|n| n.to_str()),
        Some("deps" | "examples")
    ) {
        dir.pop();
    }
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        panic!(
            "binary {name} not found at {}: build it first: cargo build --workspace",
            path.display()
        );
    }
    path
}

/// Finds an executable called `name` in `PATH`, then in the given extra directories.
pub(crate) fn find_in_path(name: &str, extra_dirs: &[&str]) -> Option<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(extra_dirs.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
