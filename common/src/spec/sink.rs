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
pub const BUILTIN_SINKS: &[&str] = &["console", "nats"];

/// Options of the `nats` sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    /// Subject template; `{fleet}`, `{device_id}` and `{index}` are filled in per device.
    #[serde(default = "default_subject")]
    pub subject: String,
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

    /// Parses the options of a `nats` sink.
    pub fn nats_config(&self) -> Result<NatsSinkConfig, SpecError> {
        serde_json::from_value(serde_json::Value::Object(self.options.clone()))
            .map_err(|e| SpecError::new("sink", format!("bad options for the nats sink: {e}")))
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
            "" => Err(SpecError::new(
                "sink.type",
                "must not be empty: use console or nats",
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
    fn console_takes_no_options() {
        let mut s = SinkSpec::console();
        s.options.insert("subject".into(), "x".into());
        assert_eq!(s.validate().expect_err("opt").field, "sink.subject");
    }
}
