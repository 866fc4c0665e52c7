//! Fleet specs: what the user asks for. A spec is validated before anything is written to
//! NATS, and every error names the field.

mod file;
mod fix;
mod http;
mod lenient;
mod mqtt;
pub mod network;
mod one_of;
mod sink;
mod template;
mod tls;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use file::{load_fleet_file, parse_fleet_text, FileFormat};
pub use fix::{
    fix_host, FixMessage, FixSinkConfig, FixVersion, DEFAULT_FIX_HEARTBEAT, DEFAULT_FIX_SYMBOLS,
};
pub use http::{HeaderSource, HttpMethod, HttpSinkConfig, HTTP_BACKOFF_BASE};
pub use lenient::per_second;
pub use mqtt::{
    BrokerUrl, JitterMode, MqttProtocol, MqttRole, MqttSinkConfig, ReconnectSpec, SecretSource,
    StatusMessage, DEFAULT_COMMAND_TOPIC, DEFAULT_MQTT_TOPIC, DEFAULT_STATUS_TOPIC,
};
pub use sink::{NatsSinkConfig, SinkSpec, BUILTIN_SINKS};
pub use template::{Template, TemplateVars};

use crate::names::validate_name;
use crate::SpecError;

/// The default number of devices in one shard (one lease, one claim).
pub const DEFAULT_SHARD_SIZE: u32 = 500;
/// The largest shard allowed.
pub const MAX_SHARD_SIZE: u32 = 100_000;
/// The largest fleet allowed.
pub const MAX_FLEET_SIZE: u64 = 10_000_000;
/// The most shards one fleet may have (each is a lease, an offer and a claim).
pub const MAX_SHARDS: u64 = 100_000;
/// The default id template of a counted fleet.
pub const DEFAULT_ID_TEMPLATE: &str = "{fleet}-{index:05}";
/// The default telemetry interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest interval a device may have (a cap of 1000 msg/s per device).
pub const MIN_INTERVAL: Duration = Duration::from_millis(1);
/// The built-in sink types that hold one connection per device.
pub const CONNECTION_SINKS: &[&str] = &["mqtt", "fix"];
/// The built-in device types.
pub const BUILTIN_DEVICES: &[&str] = &["generic", "profile"];

/// How every device of a fleet behaves (unless a listed device overrides it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceTemplate {
    /// The device type: `generic`, or a custom type registered in the agent.
    #[serde(rename = "type", default = "default_device_type")]
    pub kind: String,
    /// Time between two telemetry messages, e.g. `1s`, `250ms`.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Each message is sent up to this much after its slot (uniformly spread).
    #[serde(default, with = "humantime_serde")]
    pub jitter: Duration,
    /// Type-specific options.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub options: serde_json::Value,
}

impl DeviceTemplate {
    /// Sets the interval (and the jitter, if given), in the profile too when the device is
    /// one, so that a command-line flag wins over what a file or profile says.
    pub fn override_timing(&mut self, interval: Option<Duration>, jitter: Option<Duration>) {
        if let Some(i) = interval {
            self.interval = i;
        }
        if let Some(j) = jitter {
            self.jitter = j;
        }
        if let serde_json::Value::Object(profile) = &mut self.options {
            if self.kind == "profile" && (interval.is_some() || jitter.is_some()) {
                let text = |d: Duration| {
                    serde_json::Value::String(humantime::format_duration(d).to_string())
                };
                profile.insert("interval".into(), text(self.interval));
                if let Some(j) = jitter {
                    profile.insert("jitter".into(), text(j));
                }
            }
        }
    }
}

fn default_device_type() -> String {
    "generic".into()
}
fn default_interval() -> Duration {
    DEFAULT_INTERVAL
}

impl Default for DeviceTemplate {
    fn default() -> Self {
        Self {
            kind: default_device_type(),
            interval: DEFAULT_INTERVAL,
            jitter: Duration::ZERO,
            options: serde_json::Value::Null,
        }
    }
}

impl DeviceTemplate {
    fn validate(&self, prefix: &str) -> Result<(), SpecError> {
        let f = |name: &str| format!("{prefix}{name}");
        validate_name(&f("type"), &self.kind)?;
        if self.interval < MIN_INTERVAL {
            return Err(SpecError::new(
                f("interval"),
                format!(
                    "{:?} is shorter than the minimum {:?} (1000 msg/s per device)",
                    self.interval, MIN_INTERVAL
                ),
            ));
        }
        if self.interval > Duration::from_secs(86_400) {
            return Err(SpecError::new(f("interval"), "must be at most 24h"));
        }
        if self.jitter >= self.interval {
            return Err(SpecError::new(
                f("jitter"),
                format!(
                    "{:?} must be shorter than the interval ({:?})",
                    self.jitter, self.interval
                ),
            ));
        }
        if !(self.options.is_null() || self.options.is_object()) {
            return Err(SpecError::new(
                f("options"),
                "must be a map of option names to values",
            ));
        }
        if self.kind == "profile" {
            // Hook (device profiles): a `profile` device's options are the profile document.
            crate::profile::validate_options(&self.options).map_err(|e| e.within(&f("options")))?;
        }
        Ok(())
    }
}

/// One device listed by id (the seed's `deploy_fleet` list). Unset fields come from the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceEntry {
    /// The device id.
    pub device_id: String,
    /// Overrides the fleet's device type.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Overrides the fleet's sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<SinkSpec>,
    /// Overrides the fleet's interval.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humantime_serde"
    )]
    pub interval: Option<Duration>,
    /// Overrides the fleet's device options.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub options: serde_json::Value,
}

/// A fleet: many devices of one template, or a list of devices. A single device deployed
/// with `pluribusctl deploy` is a fleet of one listed device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    /// The fleet name; safe as a subject token.
    #[serde(default)]
    pub name: String,
    /// Number of devices of a counted fleet (ids from `id_template`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Devices listed one by one, instead of `count`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceEntry>,
    /// Device ids of a counted fleet; default `{fleet}-{index:05}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_template: Option<String>,
    /// How the devices behave.
    #[serde(default)]
    pub device: DeviceTemplate,
    /// Where telemetry goes.
    #[serde(default)]
    pub sink: SinkSpec,
    /// Devices per shard (one lease each).
    #[serde(default = "default_shard_size")]
    pub shard_size: u32,
    /// Agent labels the fleet requires, e.g. `zone: a`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub placement: BTreeMap<String, String>,
    /// The fleet stops and deletes itself this long after it was deployed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humantime_serde"
    )]
    pub duration: Option<Duration>,
    /// Seed for the devices' random values: with a seed, a device sends the same values on
    /// any agent, and a run can be repeated exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Load shape: how devices come online and a fleet-wide message rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<crate::load::LoadSpec>,
    /// Network impairments: a default, cohort overrides and a timeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<network::NetworkSpec>,
}

fn default_shard_size() -> u32 {
    DEFAULT_SHARD_SIZE
}

impl FleetSpec {
    /// A counted fleet with defaults.
    pub fn counted(name: &str, count: u64) -> Self {
        Self {
            name: name.into(),
            count: Some(count),
            devices: Vec::new(),
            id_template: None,
            device: DeviceTemplate::default(),
            sink: SinkSpec::default(),
            shard_size: DEFAULT_SHARD_SIZE,
            placement: BTreeMap::new(),
            duration: None,
            seed: None,
            load: None,
            network: None,
        }
    }

    /// The number of devices the spec asks for.
    pub fn device_count(&self) -> u64 {
        self.count.unwrap_or(self.devices.len() as u64)
    }

    /// The parsed id template (counted fleets).
    pub fn id_template(&self) -> Result<Template, SpecError> {
        Template::parse(
            "id_template",
            self.id_template.as_deref().unwrap_or(DEFAULT_ID_TEMPLATE),
            false,
        )
    }

    /// Checks everything that can be checked without an agent. Errors name the field.
    pub fn validate(&self) -> Result<(), SpecError> {
        validate_name("name", &self.name)?;
        match (self.count, self.devices.is_empty()) {
            (Some(_), false) => {
                return Err(SpecError::new("count", "give either count or devices, not both"))
            }
            (None, true) => {
                return Err(SpecError::new(
                    "count",
                    "missing: give a count (e.g. --count 100) or list devices",
                ))
            }
            (Some(n), true) if n > MAX_FLEET_SIZE => {
                return Err(SpecError::new(
                    "count",
                    format!("{n} is above the limit of {MAX_FLEET_SIZE} devices per fleet: split it into several fleets"),
                ))
            }
            _ => {}
        }
        if self.count.is_some() {
            let t = self.id_template()?;
            if !t.uses_index() {
                return Err(SpecError::new(
                    "id_template",
                    "must contain {index} so that every device id is different",
                ));
            }
            let sample = t.render(&TemplateVars {
                fleet: &self.name,
                device_id: None,
                index: 0,
            });
            validate_name("id_template", &sample)?;
        } else if self.id_template.is_some() {
            return Err(SpecError::new(
                "id_template",
                "only applies to a counted fleet: remove it or use count",
            ));
        }
        self.device.validate("device.")?;
        self.sink.validate()?;
        if self.shard_size == 0 || self.shard_size > MAX_SHARD_SIZE {
            return Err(SpecError::new(
                "shard_size",
                format!(
                    "{} is out of range: use 1 to {MAX_SHARD_SIZE}",
                    self.shard_size
                ),
            ));
        }
        if self.sink.kind == "fix" {
            self.sink.fix_config()?.check_shard_size(self.shard_size)?;
        }
        let shards = self.device_count().div_ceil(u64::from(self.shard_size));
        if shards > MAX_SHARDS {
            return Err(SpecError::new(
                "shard_size",
                format!(
                    "{} devices in shards of {} make {shards} shards, above the limit of {MAX_SHARDS}: use a larger shard size",
                    self.device_count(),
                    self.shard_size
                ),
            ));
        }
        for (k, v) in &self.placement {
            validate_name("placement", k)?;
            validate_name(&format!("placement.{k}"), v)?;
        }
        if let Some(load) = &self.load {
            load.validate(self.device_count())?;
        }
        if let Some(n) = &self.network {
            n.validate("network")?;
        }
        if self.duration == Some(Duration::ZERO) {
            return Err(SpecError::new(
                "duration",
                "must be longer than 0, e.g. 10m",
            ));
        }
        let mut seen = HashSet::new();
        for (i, d) in self.devices.iter().enumerate() {
            let at = format!("devices[{i}]");
            validate_name(&format!("{at}.device_id"), &d.device_id)?;
            if !seen.insert(d.device_id.as_str()) {
                return Err(SpecError::new(
                    format!("{at}.device_id"),
                    format!(
                        "'{}' is listed twice: device ids must be unique",
                        d.device_id
                    ),
                ));
            }
            let template = DeviceTemplate {
                kind: d.kind.clone().unwrap_or_else(|| self.device.kind.clone()),
                interval: d.interval.unwrap_or(self.device.interval),
                jitter: self.device.jitter,
                // Hook (device profiles): validate the options that run, as `resolve` does.
                options: if d.options.is_null() {
                    &self.device.options
                } else {
                    &d.options
                }
                .clone(),
            };
            template.validate(&format!("{at}."))?;
            if let Some(s) = &d.sink {
                s.validate().map_err(|e| e.within(&at))?;
            }
        }
        self.check_telemetry_subjects()
    }

    /// Refuses telemetry subjects that reach NATS system subjects, reply inboxes or
    /// Pluribus's own control plane (see [`crate::subjects::reserved_subject`]), for every
    /// device: a counted fleet as one pattern, listed devices one by one.
    fn check_telemetry_subjects(&self) -> Result<(), SpecError> {
        let refuse = |field: String, subject: &str, what: &str| {
            let how = if field.ends_with("sink.subject") {
                "pick another --subject (sink.subject in a fleet file)".to_string()
            } else {
                format!("pick another {field}")
            };
            SpecError::new(
                field,
                format!(
                    "'{subject}' can reach {what}: telemetry may not be published there; {how}, e.g. {}",
                    crate::subjects::DEFAULT_TELEMETRY_SUBJECT
                ),
            )
        };
        if self.count.is_some() {
            let ids = self.id_template()?.pattern(&self.name, "");
            for (field, t) in self.sink.subject_templates()? {
                let pattern = t.pattern(&self.name, &ids);
                if let Some(what) = crate::subjects::reserved_subject(&pattern) {
                    let shown = pattern.replace(crate::subjects::DIGITS, "N");
                    return Err(refuse(field, &shown, what));
                }
            }
            return Ok(());
        }
        for (i, d) in self.devices.iter().enumerate() {
            let (sink, at) = match &d.sink {
                Some(s) => (s, format!("devices[{i}].")),
                None => (&self.sink, String::new()),
            };
            for (field, t) in sink.subject_templates()? {
                let subject = t.render(&TemplateVars {
                    fleet: &self.name,
                    device_id: Some(&d.device_id),
                    index: i as u64,
                });
                if let Some(what) = crate::subjects::reserved_subject(&subject) {
                    return Err(refuse(format!("{at}{field}"), &subject, what));
                }
            }
        }
        Ok(())
    }

    /// Every device type the fleet needs.
    pub fn device_types(&self) -> Vec<String> {
        let mut v = vec![self.device.kind.clone()];
        v.extend(self.devices.iter().filter_map(|d| d.kind.clone()));
        v.sort();
        v.dedup();
        v
    }

    /// True when some device of the fleet holds a connection of its own (an MQTT sink):
    /// such devices count against an agent's open-files limit.
    pub fn holds_connections(&self) -> bool {
        self.sink_types()
            .iter()
            .any(|t| CONNECTION_SINKS.contains(&t.as_str()))
    }

    /// Every sink type the fleet needs.
    pub fn sink_types(&self) -> Vec<String> {
        let mut v = vec![self.sink.kind.clone()];
        v.extend(
            self.devices
                .iter()
                .filter_map(|d| d.sink.as_ref().map(|s| s.kind.clone())),
        );
        v.sort();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counted_fleet_is_valid() {
        FleetSpec::counted("f1", 1000).validate().expect("valid");
    }

    #[test]
    fn errors_name_the_field() {
        let mut s = FleetSpec::counted("bad.name", 1);
        assert_eq!(s.validate().expect_err("name").field, "name");
        s.name = "ok".into();
        s.shard_size = 0;
        assert_eq!(s.validate().expect_err("shard").field, "shard_size");
        s.shard_size = 10;
        s.device.interval = Duration::ZERO;
        assert_eq!(s.validate().expect_err("interval").field, "device.interval");
        s.device.interval = Duration::from_secs(1);
        s.device.jitter = Duration::from_secs(2);
        assert_eq!(s.validate().expect_err("jitter").field, "device.jitter");
        s.device.jitter = Duration::ZERO;
        s.id_template = Some("same".into());
        assert_eq!(s.validate().expect_err("tpl").field, "id_template");
        s.id_template = None;
        s.count = None;
        assert_eq!(s.validate().expect_err("count").field, "count");
    }

    #[test]
    fn telemetry_may_not_reach_the_control_plane() {
        let mut s = FleetSpec::counted("evil", 1);
        for bad in [
            "$KV.pluribus_leases.victim.0",
            "pluribus.v1.agents.cmd",
            "ci1.pluribus.v1.work",
            "_INBOX.x",
        ] {
            s.sink = SinkSpec::nats(Some(bad));
            let e = s.validate().expect_err(bad);
            assert_eq!(e.field, "sink.subject", "{bad}");
            assert!(e.message.contains("--subject"), "{e}");
        }
        // Through the placeholders: device 1 of `v{index}` is `v1`; a fleet named pluribus.
        s.id_template = Some("v{index}".into());
        s.sink = SinkSpec::nats(Some("pluribus.{device_id}.work"));
        assert_eq!(s.validate().expect_err("v1").field, "sink.subject");
        s.id_template = None;
        s.name = "pluribus".into();
        s.sink = SinkSpec::nats(Some("{fleet}.v1.x"));
        assert_eq!(s.validate().expect_err("fleet").field, "sink.subject");
        s.sink = SinkSpec::nats(Some("{fleet}.telemetry.{device_id}"));
        s.validate().expect("a telemetry subject");
        // Listed devices, each with its own id.
        let mut l = FleetSpec::counted("ok", 0);
        l.count = None;
        l.sink = SinkSpec::nats(Some("pluribus.{device_id}.work"));
        l.devices = vec![DeviceEntry {
            device_id: "v1".into(),
            kind: None,
            sink: None,
            interval: None,
            options: serde_json::Value::Null,
        }];
        assert_eq!(l.validate().expect_err("listed").field, "sink.subject");
    }

    #[test]
    fn a_custom_sinks_subjects_may_not_reach_the_control_plane_either() {
        let custom = |k: &str, v: &str| SinkSpec {
            kind: "aggregator".into(),
            options: [(k.to_string(), serde_json::Value::from(v))]
                .into_iter()
                .collect(),
        };
        let mut s = FleetSpec::counted("f", 2);
        for (k, bad) in [
            ("subject", "$JS.API.STREAM.DELETE.x"),
            ("reply_subject", "pluribus.v1.work"),
            ("subject", "_INBOX_viewer.{device_id}"),
        ] {
            s.sink = custom(k, bad);
            let e = s.validate().expect_err(bad);
            assert_eq!(e.field, format!("sink.{k}"), "{bad}");
            assert!(e.message.contains(&format!("sink.{k}")), "{e}");
        }
        s.sink = custom("subject", "agg.{fleet}.{device_id}");
        s.validate().expect("a telemetry subject");
        s.sink = custom("topic", "pluribus.v1.work");
        s.validate().expect("not a subject option");
        // Listed devices with a custom sink of their own.
        let mut l = FleetSpec::counted("ok", 0);
        l.count = None;
        l.devices = vec![DeviceEntry {
            device_id: "d1".into(),
            kind: None,
            sink: Some(custom("subject", "pluribus.v1.agent.{device_id}.cmd")),
            interval: None,
            options: serde_json::Value::Null,
        }];
        assert_eq!(
            l.validate().expect_err("listed").field,
            "devices[0].sink.subject"
        );
    }

    #[test]
    fn absurd_shard_counts_are_refused() {
        let mut s = FleetSpec::counted("f", MAX_FLEET_SIZE);
        s.shard_size = 1;
        assert_eq!(s.validate().expect_err("shards").field, "shard_size");
        s.shard_size = 500;
        s.validate().expect("20k shards");
    }

    #[test]
    fn listed_devices_must_be_unique_and_safe() {
        let mut s = FleetSpec::counted("f", 0);
        s.count = None;
        let e = |id: &str| DeviceEntry {
            device_id: id.into(),
            kind: None,
            sink: None,
            interval: None,
            options: serde_json::Value::Null,
        };
        s.devices = vec![e("a"), e("a")];
        assert_eq!(s.validate().expect_err("dup").field, "devices[1].device_id");
        s.devices = vec![e("a"), e("b/c")];
        assert_eq!(
            s.validate().expect_err("unsafe").field,
            "devices[1].device_id"
        );
    }
}
