//! The mqtt sink's options resolved on the agent: templates parsed, secrets read
//! (`env:`/`file:`), brokers parsed, TLS built. Done once per shard; a failure refuses the
//! shard with a reason that names the field.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use pluribus_common::spec::{
    BrokerUrl, MqttProtocol, MqttRole, MqttSinkConfig, ReconnectSpec, SecretSource, SinkSpec,
    StatusMessage, Template, TemplateVars,
};
use tokio_rustls::TlsConnector;

use crate::secrets::Secrets;
use crate::sink::{tls, SinkError};

/// A text that is either a template or a secret read on the agent (used as is).
#[derive(Debug, Clone)]
pub enum Text {
    /// Rendered per device.
    Template(Template),
    /// The same for every device.
    Fixed(String),
}

impl Text {
    /// The text for one device.
    pub fn render(&self, vars: &TemplateVars<'_>) -> String {
        match self {
            Self::Template(t) => t.render(vars),
            Self::Fixed(s) => s.clone(),
        }
    }
}

/// A will or birth message, resolved.
#[derive(Debug, Clone)]
pub struct Status {
    /// Topic template.
    pub topic: Template,
    /// Payload.
    pub payload: Bytes,
    /// QoS.
    pub qos: u8,
    /// Retained.
    pub retain: bool,
}

/// Everything a device's connection needs, shared by the shard's devices.
pub struct Resolved {
    /// Protocol version.
    pub protocol: MqttProtocol,
    /// Brokers.
    pub brokers: Vec<BrokerUrl>,
    /// Telemetry QoS.
    pub qos: u8,
    /// Telemetry retained.
    pub retain: bool,
    /// Keepalive (zero: off).
    pub keepalive: Duration,
    /// Clean session.
    pub clean_session: bool,
    /// Client id.
    pub client_id: Template,
    /// User name.
    pub username: Option<Text>,
    /// Password.
    pub password: Option<Text>,
    /// Telemetry topic.
    pub topic: Template,
    /// Command topic.
    pub command: Option<Template>,
    /// Response topic.
    pub response: Option<Template>,
    /// Subscriber filter.
    pub subscribe: Option<Template>,
    /// Will.
    pub will: Option<Status>,
    /// Birth.
    pub birth: Option<Status>,
    /// Source addresses.
    pub source_ips: Vec<IpAddr>,
    /// Role.
    pub role: MqttRole,
    /// Time for TCP + TLS + CONNACK.
    pub connect_timeout: Duration,
    /// TLS, if any broker is `mqtts://` or `wss://`.
    pub tls: Option<TlsConnector>,
    /// Reconnect backoff.
    pub reconnect: ReconnectSpec,
}

fn spec_err(e: pluribus_common::SpecError) -> SinkError {
    SinkError(e.to_string())
}

/// A credential: a template, or `env:VAR` / `file:NAME` read on this agent within what
/// it allows (`secrets`).
pub(crate) fn secret(field: &str, value: &str, secrets: &Secrets) -> Result<Text, SinkError> {
    Ok(match SecretSource::of(value) {
        SecretSource::Literal(t) => {
            Text::Template(Template::parse(field, t, true).map_err(spec_err)?)
        }
        SecretSource::Env(var) => Text::Fixed(secrets.env(field, var).map_err(SinkError)?),
        SecretSource::File(path) => Text::Fixed(secrets.file(field, path).map_err(SinkError)?),
    })
}

fn status(field: &str, m: &StatusMessage, payload: &str) -> Result<Status, SinkError> {
    Ok(Status {
        topic: MqttSinkConfig::status_template(field, m).map_err(spec_err)?,
        payload: Bytes::from(m.payload.clone().unwrap_or_else(|| payload.to_string())),
        qos: m.qos(),
        retain: m.retain(),
    })
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("brokers", &self.brokers)
            .field("protocol", &self.protocol)
            .field("qos", &self.qos)
            .field("role", &self.role)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Resolved {
    /// Parses and resolves a sink spec of type `mqtt`.
    pub fn from_spec(
        spec: &SinkSpec,
        secrets: &Secrets,
    ) -> Result<(MqttSinkConfig, Self), SinkError> {
        let c = spec.mqtt_config().map_err(spec_err)?;
        c.validate().map_err(spec_err)?;
        let brokers = c.broker_urls().map_err(spec_err)?;
        let tls = if brokers.iter().any(|b| b.tls) {
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
            protocol: c.protocol,
            brokers,
            qos: c.qos,
            retain: c.retain,
            keepalive: c.keepalive,
            clean_session: c.clean_session,
            client_id: c.client_id_template().map_err(spec_err)?,
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
            topic: c.topic_template().map_err(spec_err)?,
            command: c.command_template().map_err(spec_err)?,
            response: c.response_template().map_err(spec_err)?,
            subscribe: c.subscribe_template().map_err(spec_err)?,
            will: c
                .will
                .as_ref()
                .map(|w| status("sink.will", w, "offline"))
                .transpose()?,
            birth: c
                .birth
                .as_ref()
                .map(|b| status("sink.birth", b, "online"))
                .transpose()?,
            source_ips: c.source_ips.clone(),
            role: c.role,
            connect_timeout: c.connect_timeout,
            tls,
            reconnect: c.reconnect.clone(),
        };
        Ok((c, r))
    }
}
