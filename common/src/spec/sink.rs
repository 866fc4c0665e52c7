//! Sink specs: where a device's telemetry goes. The seed library called sinks "aggregators".
//!
//! A spec is a `type` plus options. The built-in types are validated here, before deploy;
//! other types are custom sinks registered in an agent, and only an agent that knows the type
//! claims work that needs it.

use serde::{Deserialize, Serialize};

use super::template::Template;
use crate::subjects::DEFAULT_TELEMETRY_SUBJECT;
use crate::SpecError;

/// Where telemetry goes: `{type: console}` or `{type: nats, subject: "..."}` or a custom type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkSpec {
    /// The sink type: `console`, `nats`, or a custom sink registered in the agent.
    #[serde(rename = "type", default = "default_sink_type")]
    pub kind: String,
    /// Type-specific options.
    #[serde(flatten)]
    pub options: serde_json::Map<String, serde_json::Value>,
}

fn default_sink_type() -> String {
    "console".into()
}

impl Default for SinkSpec {
    fn default() -> Self {
        Self::console()
    }
}

/// The built-in sink types.
pub const BUILTIN_SINKS: &[&str] = &["console", "nats", "http", "mqtt", "fix"];

/// Options of the `nats` sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    /// Subject template; `{fleet}`, `{device_id}` and `{index}` are filled in per device.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// Testing aid: silently skip every Nth message of each device (counted as sent), to
    /// make a lossy system under test that `pluribusctl probe` must notice. Leave it out in
    /// real runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_every: Option<u64>,
}

fn default_subject() -> String {
    DEFAULT_TELEMETRY_SUBJECT.into()
}

impl SinkSpec {
    /// JSON lines on the agent's stdout.
    pub fn console() -> Self {
        Self {
            kind: "console".into(),
            options: Default::default(),
        }
    }

    /// Publish to NATS on `subject` (a template).
    pub fn nats(subject: Option<&str>) -> Self {
        let mut options = serde_json::Map::new();
        if let Some(s) = subject {
            options.insert("subject".into(), s.into());
        }
        Self {
            kind: "nats".into(),
            options,
        }
    }

    /// Parses the options of a built-in sink; an error names the option (`sink.qos`).
    fn options_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, SpecError> {
        let value = serde_json::Value::Object(self.options.clone());
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." || path.is_empty() {
                "sink".to_string()
            } else {
                format!("sink.{path}")
            };
            SpecError::new(
                field,
                format!("bad options for the {} sink: {}", self.kind, e.inner()),
            )
        })
    }

    /// Parses the options of a `nats` sink.
    pub fn nats_config(&self) -> Result<NatsSinkConfig, SpecError> {
        self.options_as()
    }

    /// Parses the options of an `mqtt` sink.
    pub fn mqtt_config(&self) -> Result<super::mqtt::MqttSinkConfig, SpecError> {
        self.options_as()
    }

    /// The subject template of a `nats` sink (None for other types).
    pub fn nats_subject(&self) -> Result<Option<Template>, SpecError> {
        if self.kind != "nats" {
            return Ok(None);
        }
        let cfg = self.nats_config()?;
        Template::parse("sink.subject", &cfg.subject, true).map(Some)
    }

    /// Every NATS subject template the sink publishes to, with the field that holds it: the
    /// nats sink's `subject`, and for a custom sink type (registered in the agents) any
    /// string option named `subject` or `*_subject`, which the convention says is a NATS
    /// subject. Built-in sinks other than nats publish elsewhere (MQTT, HTTP, FIX).
    pub fn subject_templates(&self) -> Result<Vec<(String, Template)>, SpecError> {
        match self.kind.as_str() {
            "nats" => Ok(self
                .nats_subject()?
                .map(|t| ("sink.subject".to_string(), t))
                .into_iter()
                .collect()),
            "console" | "http" | "mqtt" | "fix" => Ok(Vec::new()),
            _ => self
                .options
                .iter()
                .filter(|(k, _)| *k == "subject" || k.ends_with("_subject"))
                .filter_map(|(k, v)| v.as_str().map(|v| (format!("sink.{k}"), v)))
                .map(|(field, v)| Template::parse(&field, v, true).map(|t| (field, t)))
                .collect(),
        }
    }

    /// Parses the options of a `fix` sink.
    pub fn fix_config(&self) -> Result<super::fix::FixSinkConfig, SpecError> {
        self.options_as()
    }

    /// Validates a built-in sink's options; custom types are left to the agents that know them.
    pub fn validate(&self) -> Result<(), SpecError> {
        match self.kind.as_str() {
            "console" => {
                if let Some(k) = self.options.keys().next() {
                    return Err(SpecError::new(
                        format!("sink.{k}"),
                        "the console sink takes no options: remove it",
                    ));
                }
                Ok(())
            }
            "nats" => {
                let cfg = self.nats_config()?;
                if cfg.drop_every == Some(0) {
                    return Err(SpecError::new(
                        "sink.drop_every",
                        "must be 1 or more (1 drops every message, 5 every fifth); leave it out to drop nothing",
                    ));
                }
                let t = Template::parse("sink.subject", &cfg.subject, true)?;
                let sample = t.render(&super::template::TemplateVars {
                    fleet: "f",
                    device_id: Some("d"),
                    index: 0,
                });
                if sample.is_empty()
                    || sample
                        .split('.')
                        .any(|tok| tok.is_empty() || tok == "*" || tok == ">")
                    || sample.contains(char::is_whitespace)
                {
                    return Err(SpecError::new(
                        "sink.subject",
                        format!("'{}' is not a publishable NATS subject: use dot-separated tokens without wildcards, e.g. {DEFAULT_TELEMETRY_SUBJECT}", cfg.subject),
                    ));
                }
                Ok(())
            }
            "http" => super::http::HttpSinkConfig::from_options(&self.options).map(|_| ()),
            "mqtt" => self.mqtt_config()?.validate(),
            "fix" => self.fix_config()?.validate(),
            "" => Err(SpecError::new(
                "sink.type",
                "must not be empty: use console, nats, http, mqtt or fix",
            )),
            other => crate::names::validate_name("sink.type", other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_subject_is_checked() {
        assert!(SinkSpec::nats(None).validate().is_ok());
        assert!(SinkSpec::nats(Some("t.{device_id}")).validate().is_ok());
        let e = SinkSpec::nats(Some("t.*.{device_id}"))
            .validate()
            .expect_err("wildcard");
        assert_eq!(e.field, "sink.subject");
        let e = SinkSpec::nats(Some("t..x"))
            .validate()
            .expect_err("empty token");
        assert_eq!(e.field, "sink.subject");
    }

    #[test]
    fn drop_every_is_a_positive_count() {
        let mut s = SinkSpec::nats(None);
        s.options.insert("drop_every".into(), 5.into());
        assert_eq!(s.nats_config().expect("cfg").drop_every, Some(5));
        assert!(s.validate().is_ok());
        s.options.insert("drop_every".into(), 0.into());
        assert_eq!(s.validate().expect_err("zero").field, "sink.drop_every");
    }

    #[test]
    fn console_takes_no_options() {
        let mut s = SinkSpec::console();
        s.options.insert("subject".into(), "x".into());
        assert_eq!(s.validate().expect_err("opt").field, "sink.subject");
    }
}
