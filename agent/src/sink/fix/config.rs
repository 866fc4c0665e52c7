//! The fix sink's options resolved on the agent: templates parsed, credentials read
//! (`env:`/`file:`), acceptors parsed, TLS built. Done once per shard; a failure refuses the
//! shard with a reason that names the field.

use std::time::Duration;

use pluribus_common::spec::{BrokerUrl, FixMessage, FixSinkConfig, SinkSpec, Template};
use tokio_rustls::TlsConnector;

use crate::secrets::Secrets;
use crate::sink::mqtt::config::{secret, Text};
use crate::sink::{tls, SinkError};

/// Everything a device's session needs, shared by the shard's devices.
pub struct Resolved {
    /// BeginString.
    pub begin: &'static str,
    /// Acceptors.
    pub hosts: Vec<BrokerUrl>,
    /// SenderCompID template.
    pub sender: Template,
    /// TargetCompID.
    pub target: String,
    /// HeartBtInt.
    pub heartbeat: Duration,
    /// What telemetry becomes.
    pub message: FixMessage,
    /// Symbols, by turn.
    pub symbols: Vec<String>,
    /// ResetSeqNumFlag on logon.
    pub reset_seq_num: bool,
    /// Username (553).
    pub username: Option<Text>,
    /// Password (554).
    pub password: Option<Text>,
    /// Time for TCP + TLS + Logon reply.
    pub connect_timeout: Duration,
    /// TLS, if any acceptor is `tls://`.
    pub tls: Option<TlsConnector>,
    /// Devices per session (1: a session per device).
    pub per_session: u64,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("hosts", &self.hosts)
            .field("target", &self.target)
            .field("message", &self.message)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

fn spec_err(e: pluribus_common::SpecError) -> SinkError {
    SinkError(e.to_string())
}

impl Resolved {
    /// Parses and resolves a sink spec of type `fix`.
    pub fn from_spec(
        spec: &SinkSpec,
        secrets: &Secrets,
    ) -> Result<(FixSinkConfig, Self), SinkError> {
        let c = spec.fix_config().map_err(spec_err)?;
        c.validate().map_err(spec_err)?;
        let hosts = c.host_urls().map_err(spec_err)?;
        let tls = if hosts.iter().any(|h| h.tls) {
            Some(tls::connector(
                c.ca.as_deref(),
                c.cert.as_deref(),
                c.key.as_deref(),
                secrets,
            )?)
        } else {
            None
        };
        let r = Self {
            begin: c.fix_version.begin_string(),
            hosts,
            sender: c.sender_template().map_err(spec_err)?,
            target: c.target_comp_id.clone(),
            heartbeat: c.heartbeat,
            message: c.message,
            symbols: c.symbols(),
            reset_seq_num: c.reset_seq_num,
            username: c
                .username
                .as_deref()
                .map(|u| secret("sink.username", u, secrets))
                .transpose()?,
            password: c
                .password
                .as_deref()
                .map(|p| secret("sink.password", p, secrets))
                .transpose()?,
            connect_timeout: c.connect_timeout,
            tls,
            per_session: u64::from(c.devices_per_session.max(1)),
        };
        Ok((c, r))
    }
}
