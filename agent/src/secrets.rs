//! Secrets by reference (`env:VAR`, `file:PATH` in sink options), confined to what the
//! agent's operator allows: environment variables with a prefix (`PLURIBUS_SECRET_` by
//! default) and regular files under `--secrets-dir`. Whoever may write a fleet spec may
//! name any reference, and the value goes to a broker or URL the same spec names, so
//! anything else is refused, with the flag that would allow it. The agent's own NATS
//! credentials can never be referenced, whatever the flags say.
//!
//! Files are read by a task of their own (every [`REFRESH`], at most [`MAX_SECRET_BYTES`]
//! each, regular files only, symbolic links skipped), never in the control loop: a
//! `file:/dev/zero` cannot stall or exhaust an agent.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The default prefix of environment variables specs may reference.
pub const DEFAULT_ENV_PREFIX: &str = "PLURIBUS_SECRET_";
/// The largest secret file read.
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;
/// How often the secrets directory is read again (a new or changed file is seen by then).
pub const REFRESH: Duration = Duration::from_secs(2);
/// The deepest subdirectory of the secrets directory that is read.
const MAX_DEPTH: usize = 4;
/// The most files read from the secrets directory.
const MAX_FILES: usize = 10_000;

/// Environment variables that hold the agent's own NATS credentials.
pub const NATS_CREDENTIAL_VARS: &[&str] = &[
    "PLURIBUS_NATS_USER",
    "PLURIBUS_NATS_PASSWORD",
    "PLURIBUS_NATS_TOKEN",
    "PLURIBUS_NATS_NKEY",
    "PLURIBUS_NATS_CREDS",
    "PLURIBUS_NATS_KEY",
];

/// What specs may reference on this agent.
#[derive(Debug, Clone)]
pub struct SecretPolicy {
    /// `--secrets-dir`: files under it may be referenced (None: no files).
    pub dir: Option<PathBuf>,
    /// `--secrets-env-prefix`: variables with this prefix may be referenced ("" : none).
    pub env_prefix: String,
    /// Files never to be read, wherever they are (the agent's NATS credentials).
    pub forbidden_files: Vec<PathBuf>,
}

impl Default for SecretPolicy {
    fn default() -> Self {
        Self {
            dir: None,
            env_prefix: DEFAULT_ENV_PREFIX.into(),
            forbidden_files: Vec::new(),
        }
    }
}

/// Resolves references under a [`SecretPolicy`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Secrets {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    policy: SecretPolicy,
    /// The directory, resolved (symbolic links followed) once at start.
    root: Option<PathBuf>,
    forbidden: Vec<PathBuf>,
    /// Files under the directory by path relative to it: contents, or why not readable.
    files: RwLock<HashMap<PathBuf, Result<String, String>>>,
    /// The last read stopped at [`MAX_FILES`]: a file not found may be one not read.
    full: AtomicBool,
}

impl Secrets {
    /// Secrets under `policy`. A directory that does not exist is an error.
    pub fn new(policy: SecretPolicy) -> Result<Self, String> {
        let root = match &policy.dir {
            Some(d) => Some(std::fs::canonicalize(d).map_err(|e| {
                format!(
                    "--secrets-dir {}: {e}: give an existing directory",
                    d.display()
                )
            })?),
            None => None,
        };
        let forbidden = policy
            .forbidden_files
            .iter()
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .collect();
        let s = Self {
            inner: Arc::new(Inner {
                policy,
                root,
                forbidden,
                files: RwLock::new(HashMap::new()),
                full: AtomicBool::new(false),
            }),
        };
        s.refresh();
        Ok(s)
    }

    /// The value of `env:VAR` for `field`.
    pub fn env(&self, field: &str, var: &str) -> Result<String, String> {
        let prefix = &self.inner.policy.env_prefix;
        if NATS_CREDENTIAL_VARS.contains(&var) {
            return Err(format!(
                "{field}: env:{var} holds this agent's own NATS credentials, which a spec may never reference: put the secret in a variable of its own"
            ));
        }
        if prefix.is_empty() || !var.starts_with(prefix.as_str()) {
            return Err(format!(
                "{field}: env:{var} is not allowed on this agent: specs may reference variables starting with {} (pluribus-agent --secrets-env-prefix); export the secret as e.g. {}{}",
                if prefix.is_empty() { "(none)" } else { prefix },
                if prefix.is_empty() { DEFAULT_ENV_PREFIX } else { prefix },
                var.trim_start_matches("PLURIBUS_")
            ));
        }
        std::env::var(var).map_err(|_| {
            format!(
                "{field}: environment variable {var} is not set on this agent: export it before starting pluribus-agent"
            )
        })
    }

    /// The contents of `file:PATH` for `field` (a path under `--secrets-dir`, absolute or
    /// relative to it), without a trailing newline.
    pub fn file(&self, field: &str, path: &str) -> Result<String, String> {
        self.read(field, &format!("file:{path}"), path)
    }

    /// The contents of a TLS file (`ca`, `cert`, `key`) for `field`: like `file:`, a
    /// regular file under `--secrets-dir` (absolute or relative to it), size-capped and
    /// read off the control loop, since a spec's author chooses the path.
    pub fn tls_file(&self, field: &str, path: &str) -> Result<String, String> {
        self.read(field, path, path)
    }

    /// `path` under the secrets directory; errors show it as `shown`.
    fn read(&self, field: &str, shown: &str, path: &str) -> Result<String, String> {
        let Some(root) = &self.inner.root else {
            return Err(format!(
                "{field}: {shown} is not allowed on this agent: files a spec names are read from the agent's --secrets-dir only: start pluribus-agent with --secrets-dir DIR and put the file under DIR"
            ));
        };
        let given = Path::new(path);
        let dir = self.inner.policy.dir.as_deref().unwrap_or(root);
        let rel = if given.is_absolute() {
            given
                .strip_prefix(root)
                .or_else(|_| given.strip_prefix(dir))
                .ok()
        } else {
            Some(given)
        };
        let outside = || {
            format!(
                "{field}: {shown} is outside this agent's --secrets-dir {}: put the file there and reference it by its name",
                dir.display()
            )
        };
        let rel = rel.ok_or_else(outside)?;
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(outside());
        }
        match self.read_files().get(rel) {
            Some(Ok(s)) => Ok(s.clone()),
            Some(Err(why)) => Err(format!("{field}: {shown}: {why}")),
            None if self.inner.full.load(Ordering::Relaxed) => Err(format!(
                "{field}: {shown} was not read: this agent's --secrets-dir {} holds more than {MAX_FILES} files and only that many are read: give the agent a directory that holds its secrets only",
                dir.display()
            )),
            None => Err(format!(
                "{field}: {shown} does not exist under this agent's --secrets-dir {} (files there are read every {}s): create it",
                dir.display(),
                REFRESH.as_secs()
            )),
        }
    }

    fn read_files(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<PathBuf, Result<String, String>>> {
        self.inner.files.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the secrets directory again (blocking: call it off the async threads).
    pub fn refresh(&self) {
        let Some(root) = &self.inner.root else {
            return;
        };
        let mut files = HashMap::new();
        walk(root, Path::new(""), 0, &self.inner.forbidden, &mut files);
        self.inner
            .full
            .store(files.len() >= MAX_FILES, Ordering::Relaxed);
        *self.inner.files.write().unwrap_or_else(|p| p.into_inner()) = files;
    }

    /// Keeps the files current: a blocking read every [`REFRESH`] until `token` is cancelled.
    pub fn spawn_refresh(&self, token: CancellationToken, tracker: &TaskTracker) {
        if self.inner.root.is_none() {
            return;
        }
        let me = self.clone();
        tracker.spawn(async move {
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(REFRESH) => {}
                }
                let m = me.clone();
                let _ = tokio::task::spawn_blocking(move || m.refresh()).await;
            }
        });
    }
}

fn walk(
    root: &Path,
    rel: &Path,
    depth: usize,
    forbidden: &[PathBuf],
    out: &mut HashMap<PathBuf, Result<String, String>>,
) {
    let Ok(entries) = std::fs::read_dir(root.join(rel)) else {
        return;
    };
    for entry in entries.flatten() {
        if out.len() >= MAX_FILES {
            return;
        }
        let name = rel.join(entry.file_name());
        // Not followed: a link could lead out of the directory.
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if meta.is_dir() {
            if depth < MAX_DEPTH {
                walk(root, &name, depth + 1, forbidden, out);
            }
            continue;
        }
        let value = if meta.file_type().is_symlink() {
            Err("is a symbolic link: secrets must be regular files".to_string())
        } else if !meta.is_file() {
            Err("is not a regular file".to_string())
        } else if forbidden.iter().any(|f| f == &entry.path()) {
            Err(
                "holds this agent's own NATS credentials, which a spec may never reference"
                    .to_string(),
            )
        } else if meta.len() > MAX_SECRET_BYTES {
            Err(format!(
                "is {} bytes, above the limit of {MAX_SECRET_BYTES}",
                meta.len()
            ))
        } else {
            read_capped(&entry.path())
        };
        out.insert(name, value);
    }
}

fn read_capped(path: &Path) -> Result<String, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("cannot be read: {e}"))?;
    let mut buf = String::new();
    f.take(MAX_SECRET_BYTES + 1)
        .read_to_string(&mut buf)
        .map_err(|e| format!("cannot be read as text: {e}"))?;
    if buf.len() as u64 > MAX_SECRET_BYTES {
        return Err(format!("is above the limit of {MAX_SECRET_BYTES} bytes"));
    }
    Ok(buf.trim_end_matches(['\r', '\n']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("pluribus-secrets-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("sub")).unwrap();
        d
    }

    #[test]
    fn files_only_under_the_directory_regular_and_small() {
        let d = dir();
        std::fs::write(d.join("mqtt-pass"), "s3cret\n").unwrap();
        std::fs::write(d.join("sub/token"), "t").unwrap();
        std::fs::write(d.join("big"), vec![b'x'; MAX_SECRET_BYTES as usize + 1]).unwrap();
        std::fs::write(d.join("creds"), "nats creds").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", d.join("link")).unwrap();
        let s = Secrets::new(SecretPolicy {
            dir: Some(d.clone()),
            forbidden_files: vec![d.join("creds")],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.file("sink.password", "mqtt-pass").unwrap(), "s3cret");
        let abs = d.join("sub/token");
        assert_eq!(s.file("f", abs.to_str().unwrap()).unwrap(), "t");
        for (path, says) in [
            ("/etc/hostname", "outside"),
            ("../etc/hostname", "outside"),
            ("/dev/zero", "outside"),
            ("big", "limit"),
            ("link", "symbolic link"),
            ("creds", "NATS credentials"),
            ("missing", "does not exist"),
        ] {
            let e = s.file("sink.password", path).unwrap_err();
            assert!(
                e.contains(says) && e.starts_with("sink.password"),
                "{path}: {e}"
            );
        }
        let none = Secrets::new(SecretPolicy::default()).unwrap();
        assert!(none
            .file("f", "mqtt-pass")
            .unwrap_err()
            .contains("--secrets-dir"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn variables_only_with_the_prefix_and_never_nats_credentials() {
        std::env::set_var("PLURIBUS_SECRET_UNIT_TEST", "v");
        std::env::set_var("PLURIBUS_UNIT_TEST_OTHER", "no");
        let s = Secrets::new(SecretPolicy::default()).unwrap();
        assert_eq!(s.env("f", "PLURIBUS_SECRET_UNIT_TEST").unwrap(), "v");
        let e = s
            .env("sink.password", "PLURIBUS_UNIT_TEST_OTHER")
            .unwrap_err();
        assert!(e.contains("--secrets-env-prefix"), "{e}");
        let e = s.env("f", "HOME").unwrap_err();
        assert!(e.contains("PLURIBUS_SECRET_"), "{e}");
        let wide = Secrets::new(SecretPolicy {
            env_prefix: "PLURIBUS_".into(),
            ..Default::default()
        })
        .unwrap();
        let e = wide.env("f", "PLURIBUS_NATS_PASSWORD").unwrap_err();
        assert!(e.contains("own NATS credentials"), "{e}");
    }

    #[test]
    fn a_directory_too_full_to_read_whole_says_so() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..MAX_FILES {
            std::fs::write(d.path().join(format!("f{i}")), "").unwrap();
        }
        let s = Secrets::new(SecretPolicy {
            dir: Some(d.path().to_path_buf()),
            ..Default::default()
        })
        .unwrap();
        let e = s.file("sink.password", "not-read").unwrap_err();
        assert!(e.contains("more than 10000 files"), "{e}");
    }
}
