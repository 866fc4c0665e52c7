//! Options of the `mqtt` sink: one MQTT connection per device.
//!
//! Everything here is checked before deploy ([`MqttSinkConfig::validate`]); what only the
//! agent can see (TLS files, `env:`/`file:` secrets) is checked when an agent prepares the
//! shard, and a failure there refuses the shard with the reason.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::template::{Template, TemplateVars};
use super::tls::TlsFiles;
use crate::SpecError;

mod broker;
mod reconnect;
#[cfg(test)]
mod tests;

pub use broker::BrokerUrl;
pub use reconnect::{JitterMode, ReconnectSpec};

/// The default telemetry topic.
pub const DEFAULT_MQTT_TOPIC: &str = "devices/{device_id}/telemetry";
/// The default command topic (devices subscribe to it).
pub const DEFAULT_COMMAND_TOPIC: &str = "devices/{device_id}/commands";
/// The default topic of the will and birth messages.
pub const DEFAULT_STATUS_TOPIC: &str = "devices/{device_id}/status";
/// The default keepalive.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(60);
/// The default number of connects in flight per agent (mosquitto's listen backlog is ~100).
pub const DEFAULT_MAX_CONNECTING: u32 = 64;

/// The MQTT protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum MqttProtocol {
    /// MQTT 3.1.1 (the default).
    #[default]
    #[serde(rename = "3.1.1")]
    V311,
    /// MQTT 5.
    #[serde(rename = "5")]
    V5,
}

/// What the devices do on their connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MqttRole {
    /// Publish telemetry (the default); receive commands.
    #[default]
    Publisher,
    /// Only subscribe to `subscribe` and count what arrives (with latency from `ts`).
    Subscriber,
}

/// A will or birth message. Every field has a default, so `will: {}` turns it on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusMessage {
    /// Topic template [default: `devices/{device_id}/status`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Payload [default: `offline` for the will, `online` for the birth].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// QoS [default: 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<u8>,
    /// Retained [default: true].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain: Option<bool>,
}

impl StatusMessage {
    /// The topic template.
    pub fn topic(&self) -> &str {
        self.topic.as_deref().unwrap_or(DEFAULT_STATUS_TOPIC)
    }
    /// The QoS.
    pub fn qos(&self) -> u8 {
        self.qos.unwrap_or(1)
    }
    /// Whether it is retained.
    pub fn retain(&self) -> bool {
        self.retain.unwrap_or(true)
    }
}

/// Options of the `mqtt` sink. Templates may use `{device_id}`, `{fleet}`, `{index}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSinkConfig {
    /// Broker URLs, `mqtt://host:port` or `mqtts://host:port`, or MQTT over WebSocket:
    /// `ws://host:port/path` or `wss://host:port/path` (path `/mqtt` if none is given);
    /// devices are spread over them round-robin and move to the next one when a connect fails. A file may also write
    /// `broker:` (as the flag) and a comma-separated string.
    #[serde(alias = "broker", deserialize_with = "super::lenient::comma_list")]
    pub brokers: Vec<String>,
    /// `3.1.1` (default) or `5`.
    #[serde(default)]
    pub protocol: MqttProtocol,
    /// QoS of telemetry: 0, 1 or 2.
    #[serde(default)]
    pub qos: u8,
    /// Publish telemetry retained.
    #[serde(default)]
    pub retain: bool,
    /// Keepalive [default: 60s]; 0s turns it off.
    #[serde(default = "default_keepalive", with = "humantime_serde")]
    pub keepalive: Duration,
    /// Clean session (3.1.1) / clean start (5) [default: true].
    #[serde(default = "yes")]
    pub clean_session: bool,
    /// Client id template [default: `{device_id}`]; must tell devices apart.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// User name: a template, or `env:VAR` / `file:/path` read on the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password: a template, or `env:VAR` / `file:/path` read on the agent (so that the
    /// secret itself is never stored in the fleet record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Telemetry topic template [default: `devices/{device_id}/telemetry`].
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Topic each device subscribes to for commands [default:
    /// `devices/{device_id}/commands`]; empty turns commands off.
    #[serde(default = "default_command_topic")]
    pub command_topic: String,
    /// Where replies to commands are published (a template); none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_topic: Option<String>,
    /// Last will, published by the broker when a device vanishes (and by the device
    /// itself on a clean stop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub will: Option<StatusMessage>,
    /// Birth message, published on every connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth: Option<StatusMessage>,
    /// CA certificate (PEM) on the agent, for `mqtts://` and `wss://`; system roots otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// Client certificate (PEM) on the agent, with `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// Client private key (PEM) on the agent, with `cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Most connects started per second by one agent (a number or `N/s`); unlimited if
    /// unset.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient::opt_rate"
    )]
    pub connect_rate: Option<f64>,
    /// Most connects in flight (TCP + CONNACK) per agent [default: 64].
    #[serde(default = "default_max_connecting")]
    pub max_connecting: u32,
    /// Source addresses to connect from, spread round-robin over the devices (`source_ip:`
    /// and a comma-separated string also work).
    #[serde(
        default,
        alias = "source_ip",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "super::lenient::comma_list"
    )]
    pub source_ips: Vec<IpAddr>,
    /// `publisher` (default) or `subscriber`.
    #[serde(default)]
    pub role: MqttRole,
    /// The filter a subscriber device subscribes to (a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<String>,
    /// Time allowed for TCP, TLS and CONNACK [default: 10s].
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Reconnect backoff [default: 500ms doubling to 30s, equal jitter].
    #[serde(default, skip_serializing_if = "ReconnectSpec::is_default")]
    pub reconnect: ReconnectSpec,
}

fn yes() -> bool {
    true
}
fn default_keepalive() -> Duration {
    DEFAULT_KEEPALIVE
}
fn default_client_id() -> String {
    "{device_id}".into()
}
fn default_topic() -> String {
    DEFAULT_MQTT_TOPIC.into()
}
fn default_command_topic() -> String {
    DEFAULT_COMMAND_TOPIC.into()
}
fn default_max_connecting() -> u32 {
    DEFAULT_MAX_CONNECTING
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource<'a> {
    /// The value itself (a template).
    Literal(&'a str),
    /// An environment variable on the agent.
    Env(&'a str),
    /// A file on the agent (its content, trailing newline removed).
    File(&'a str),
}

impl<'a> SecretSource<'a> {
    /// `env:VAR`, `file:/path` or a literal.
    pub fn of(value: &'a str) -> Self {
        if let Some(v) = value.strip_prefix("env:") {
            Self::Env(v)
        } else if let Some(p) = value.strip_prefix("file:") {
            Self::File(p)
        } else {
            Self::Literal(value)
        }
    }
}

const SAMPLE: TemplateVars<'static> = TemplateVars {
    fleet: "f",
    device_id: Some("d"),
    index: 0,
};

/// Parses a topic template and checks that it is a publishable topic.
fn topic(field: &str, text: &str) -> Result<Template, SpecError> {
    let t = Template::parse(field, text, true)?;
    let s = t.render(&SAMPLE);
    if s.is_empty() || s.contains(['+', '#', '\0']) {
        return Err(SpecError::new(
            field,
            format!("'{text}' is not a topic to publish to: no wildcards (+, #), not empty; e.g. {DEFAULT_MQTT_TOPIC}"),
        ));
    }
    Ok(t)
}

/// Parses a filter template and checks MQTT's wildcard rules.
fn filter(field: &str, text: &str) -> Result<Template, SpecError> {
    let t = Template::parse(field, text, true)?;
    let s = t.render(&SAMPLE);
    let levels: Vec<&str> = s.split('/').collect();
    let ok = !s.is_empty()
        && levels.iter().enumerate().all(|(i, l)| {
            (*l == "#" && i == levels.len() - 1) || *l == "+" || !l.contains(['+', '#', '\0'])
        });
    if !ok {
        return Err(SpecError::new(
            field,
            format!("'{text}' is not an MQTT filter: + and # take a whole level, # only the last, e.g. devices/+/telemetry"),
        ));
    }
    Ok(t)
}

fn qos(field: &str, q: u8) -> Result<(), SpecError> {
    if q > 2 {
        return Err(SpecError::new(
            field,
            format!("{q} is not a QoS: use 0, 1 or 2"),
        ));
    }
    Ok(())
}

/// Checks a credential given as a template, `env:VAR` or `file:/path`.
pub(crate) fn check_secret(field: &str, value: &str) -> Result<(), SpecError> {
    match SecretSource::of(value) {
        SecretSource::Literal(t) => Template::parse(field, t, true).map(|_| ()),
        SecretSource::Env(v) if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            Err(SpecError::new(field, format!("'env:{v}' is not an environment variable name: write env:MQTT_PASSWORD")))
        }
        SecretSource::File(p) if p.is_empty() || p.split('/').any(|c| c == "..") => Err(SpecError::new(
            field,
            format!("'file:{p}' must name a file under the agent's --secrets-dir, e.g. file:mqtt-password (no '..')"),
        )),
        _ => Ok(()),
    }
}

impl MqttSinkConfig {
    /// The parsed brokers.
    pub fn broker_urls(&self) -> Result<Vec<BrokerUrl>, SpecError> {
        self.brokers
            .iter()
            .enumerate()
            .map(|(i, b)| BrokerUrl::parse(&format!("sink.brokers[{i}]"), b))
            .collect()
    }

    /// The telemetry topic template.
    pub fn topic_template(&self) -> Result<Template, SpecError> {
        topic("sink.topic", &self.topic)
    }

    /// The command topic template, unless commands are off.
    pub fn command_template(&self) -> Result<Option<Template>, SpecError> {
        if self.command_topic.is_empty() {
            return Ok(None);
        }
        filter("sink.command_topic", &self.command_topic).map(Some)
    }

    /// The response topic template, if any.
    pub fn response_template(&self) -> Result<Option<Template>, SpecError> {
        self.response_topic
            .as_deref()
            .map(|t| topic("sink.response_topic", t))
            .transpose()
    }

    /// The subscriber's filter template, if any.
    pub fn subscribe_template(&self) -> Result<Option<Template>, SpecError> {
        self.subscribe
            .as_deref()
            .map(|t| filter("sink.subscribe", t))
            .transpose()
    }

    /// The client id template.
    pub fn client_id_template(&self) -> Result<Template, SpecError> {
        Template::parse("sink.client_id", &self.client_id, true)
    }

    /// The will's or birth's topic template.
    pub fn status_template(field: &str, m: &StatusMessage) -> Result<Template, SpecError> {
        topic(&format!("{field}.topic"), m.topic())
    }

    /// Checks everything that can be checked without the agent. Errors name `sink.<field>`.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.brokers.is_empty() {
            return Err(SpecError::new(
                "sink.brokers",
                "missing: give at least one broker, e.g. --broker mqtt://127.0.0.1:1883",
            ));
        }
        let urls = self.broker_urls()?;
        qos("sink.qos", self.qos)?;
        self.reconnect.validate()?;
        if self.keepalive.as_secs() > u64::from(u16::MAX) || self.keepalive.subsec_nanos() != 0 {
            return Err(SpecError::new(
                "sink.keepalive",
                "must be whole seconds from 0s to 65535s (18h12m15s)",
            ));
        }
        let id = self.client_id_template()?;
        let sample = |i| {
            id.render(&TemplateVars {
                fleet: "f",
                device_id: Some("d"),
                index: i,
            })
        };
        if !self.client_id.contains("{device_id}") && sample(0) == sample(1) {
            return Err(SpecError::new(
                "sink.client_id",
                format!("'{}' is the same for every device, so they would kick each other off: include {{device_id}} or {{index}}", self.client_id),
            ));
        }
        if sample(0).is_empty() || sample(0).len() > 65_535 {
            return Err(SpecError::new("sink.client_id", "must not be empty"));
        }
        for (field, v) in [
            ("sink.username", &self.username),
            ("sink.password", &self.password),
        ] {
            if let Some(v) = v {
                check_secret(field, v)?;
            }
        }
        if self.password.is_some() && self.username.is_none() && self.protocol == MqttProtocol::V311
        {
            return Err(SpecError::new(
                "sink.password",
                "MQTT 3.1.1 sends a password only with a user name: add --username",
            ));
        }
        self.topic_template()?;
        self.command_template()?;
        self.response_template()?;
        if self.response_topic.is_some() && self.command_topic.is_empty() {
            return Err(SpecError::new(
                "sink.response_topic",
                "replies answer commands, but command_topic is empty: set a command topic",
            ));
        }
        for (field, m) in [("sink.will", &self.will), ("sink.birth", &self.birth)] {
            if let Some(m) = m {
                Self::status_template(field, m)?;
                qos(&format!("{field}.qos"), m.qos())?;
            }
        }
        let any_tls = urls.iter().any(|u| u.tls);
        TlsFiles {
            ca: &self.ca,
            cert: &self.cert,
            key: &self.key,
        }
        .check(
            any_tls,
            "TLS files need a TLS broker: write the broker as mqtts://host:port or wss://host:port/mqtt",
            "--cert and --key",
        )?;
        if let Some(r) = self.connect_rate {
            if !(r.is_finite() && r > 0.0) {
                return Err(SpecError::new(
                    "sink.connect_rate",
                    format!("{r} is not a rate: give connects per second, e.g. 2000"),
                ));
            }
        }
        if self.max_connecting == 0 {
            return Err(SpecError::new(
                "sink.max_connecting",
                "must be at least 1 (64 suits mosquitto's listen backlog)",
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(SpecError::new(
                "sink.connect_timeout",
                "must be longer than 0s",
            ));
        }
        match (self.role, &self.subscribe) {
            (MqttRole::Subscriber, None) => {
                return Err(SpecError::new(
                    "sink.subscribe",
                    "a subscriber needs a filter: add --subscribe 'devices/+/telemetry'",
                ))
            }
            (MqttRole::Publisher, Some(_)) => {
                return Err(SpecError::new(
                    "sink.subscribe",
                    "only a subscriber subscribes: add --role subscriber or drop --subscribe",
                ))
            }
            _ => {}
        }
        self.subscribe_template()?;
        Ok(())
    }
}
