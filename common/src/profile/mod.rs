//! Device profiles: any device described in a YAML, TOML or JSON file (or inline in a fleet's
//! device options) instead of code.
//!
//! A fleet uses a profile with the device type `profile` and the profile document as its
//! options: `device: {type: profile, options: {name: smart-meter, fields: {...}}}`.
//!
//! ```yaml
//! name: smart-meter
//! interval: 15s
//! fields:
//!   power_w: {random_walk: {start: 800, step: 25, min: 0, max: 6000}}
//!   voltage: {normal: {mean: 230, stddev: 2}}
//!   energy_wh: {counter: {start: 0, step: 3.3}}
//! events:
//!   - {name: outage, probability: 0.0001, fields: {cause: {choice: {values: [grid, fuse]}}}}
//! commands: {set: [power_w], interval: true}
//! on_start: {fields: {status: online}}
//! ```
//!
//! The field shapes are described in [`field`], the generators in [`generator`]. Every value
//! is a pure function of (fleet seed, device id, seq): the same device sends the same values
//! on any agent, after a failover, and when a run is repeated. Command overrides are the only
//! state a device keeps; they are lost when its shard moves to another agent.
//!
//! `payload: {bytes: N}` sends N raw bytes instead of JSON, for throughput tests: bytes 0..8
//! are the seq and 8..16 the scheduled time (Unix ms), both big-endian u64 (cut short when N
//! is under 16); the rest is a fixed pseudo-random pattern. Such a profile has no fields,
//! events, on_start/on_stop or `set` commands.

mod builtin;
mod check;
pub mod field;
mod file;
pub mod generator;
mod template;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use builtin::{builtin, builtin_profile};
pub use field::Field;
pub use file::{load_profile, parse_profile_text};
pub use generator::Generator;

use crate::names::validate_name;
use crate::SpecError;

/// Most events a profile may have.
pub const MAX_EVENTS: usize = 32;
/// Largest raw payload (NATS' default max payload).
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// A device type described as data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The device type name, shown as `device_type` in telemetry.
    pub name: String,
    /// What the profile simulates (for listings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Time between two telemetry messages. When unset, the fleet's interval applies (1s by
    /// default); when set, it wins over the fleet's.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humantime_serde"
    )]
    pub interval: Option<Duration>,
    /// Each message is sent up to this much after its slot. When set, it wins over the
    /// fleet's; it needs `interval` to be set too, and shorter. Default: the fleet's (0).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humantime_serde"
    )]
    pub jitter: Option<Duration>,
    /// JSON messages (default) or raw bytes.
    #[serde(default, skip_serializing_if = "Payload::is_json")]
    pub payload: Payload,
    /// The telemetry `data` object.
    #[serde(default)]
    pub fields: Field,
    /// Extra messages sent, by chance, on a telemetry tick.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Event>,
    /// What commands may change.
    #[serde(default, skip_serializing_if = "Commands::is_none")]
    pub commands: Commands,
    /// A message sent when the device starts (e.g. birth, online).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_start: Option<Lifecycle>,
    /// A message sent when the device stops (e.g. goodbye).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_stop: Option<Lifecycle>,
}

/// The payload format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Payload {
    /// A JSON message with the telemetry envelope.
    #[default]
    Json,
    /// `{bytes: N}`: N raw bytes (see the module doc for the layout).
    Bytes(usize),
}

impl Payload {
    fn is_json(&self) -> bool {
        *self == Self::Json
    }
}

/// An extra message that a tick sends with `probability`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Sent as `"event": "<name>"`.
    pub name: String,
    /// Chance per tick, in `[0, 1]`.
    pub probability: f64,
    /// The event's `data`.
    #[serde(default)]
    pub fields: Field,
}

/// What a command may change: `{"set": {"temperature": 30}}` and `{"interval": "500ms"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commands {
    /// Fields (dotted paths into `fields`) a command may set to a fixed value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<String>,
    /// Whether a command may change the device's interval.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interval: bool,
}

impl Commands {
    fn is_none(&self) -> bool {
        self.set.is_empty() && !self.interval
    }
}

/// A lifecycle message (`on_start`, `on_stop`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lifecycle {
    /// The message's `data`.
    #[serde(default)]
    pub fields: Field,
}

/// The shortest interval a profile may set.
const MIN_INTERVAL: Duration = Duration::from_millis(1);
/// The longest interval a profile may set.
const MAX_INTERVAL: Duration = Duration::from_secs(86_400);

impl Profile {
    /// Reads and validates a profile from JSON (a fleet's device options). Errors name the
    /// field, e.g. `fields.power.normal.stddev`.
    pub fn from_value(v: &serde_json::Value) -> Result<Self, SpecError> {
        let obj = v.as_object().ok_or_else(|| {
            SpecError::new(
                "name",
                "missing: a profile device's options are the profile itself, e.g. {name: my-sensor, fields: {temperature: {normal: {mean: 21, stddev: 0.5}}}}",
            )
        })?;
        // The field trees first: their errors carry the full path.
        if let Some(f) = obj.get("fields") {
            Field::parse_root(f, "fields")?;
        }
        for key in ["on_start", "on_stop"] {
            if let Some(f) = obj.get(key).and_then(|m| m.get("fields")) {
                Field::parse_root(f, &format!("{key}.fields"))?;
            }
        }
        if let Some(events) = obj.get("events").and_then(|e| e.as_array()) {
            for (i, e) in events.iter().enumerate() {
                if let Some(f) = e.get("fields") {
                    Field::parse_root(f, &format!("events[{i}].fields"))?;
                }
            }
        }
        let p: Profile = serde_json::from_value(v.clone()).map_err(|e| {
            let msg = e.to_string();
            SpecError::new(blame(obj, &msg), msg)
        })?;
        p.validate()?;
        Ok(p)
    }

    /// Checks everything; errors name the field.
    pub fn validate(&self) -> Result<(), SpecError> {
        validate_name("name", &self.name)?;
        if let Some(i) = self.interval {
            if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&i) {
                return Err(SpecError::new("interval", "must be between 1ms and 24h"));
            }
        }
        if let Some(j) = self.jitter {
            match self.interval {
                None => {
                    return Err(SpecError::new(
                        "jitter",
                        "needs interval in the profile too: add interval (longer than the jitter)",
                    ))
                }
                Some(i) if j >= i => {
                    return Err(SpecError::new(
                        "jitter",
                        format!("{j:?} must be shorter than the interval ({i:?})"),
                    ))
                }
                _ => {}
            }
        }
        if let Payload::Bytes(n) = self.payload {
            if n == 0 || n > MAX_PAYLOAD_BYTES {
                return Err(SpecError::new(
                    "payload.bytes",
                    format!("{n} is out of range: use 1 to {MAX_PAYLOAD_BYTES}"),
                ));
            }
            let extra = [
                ("fields", !self.fields.is_empty_object()),
                ("events", !self.events.is_empty()),
                ("on_start", self.on_start.is_some()),
                ("on_stop", self.on_stop.is_some()),
                ("commands.set", !self.commands.set.is_empty()),
            ];
            if let Some((name, _)) = extra.iter().find(|(_, has)| *has) {
                return Err(SpecError::new(
                    *name,
                    "a raw bytes payload has no JSON fields: remove it, or use payload: json",
                ));
            }
        }
        validate_root(&self.fields, "fields")?;
        if self.events.len() > MAX_EVENTS {
            return Err(SpecError::new(
                "events",
                format!(
                    "{} events is too many: at most {MAX_EVENTS}",
                    self.events.len()
                ),
            ));
        }
        for (i, e) in self.events.iter().enumerate() {
            let at = format!("events[{i}]");
            validate_name(&format!("{at}.name"), &e.name)?;
            check::check_probability(format!("{at}.probability"), e.probability)?;
            validate_root(&e.fields, &format!("{at}.fields"))?;
        }
        for (i, path) in self.commands.set.iter().enumerate() {
            if self.fields.lookup(path).is_none() {
                return Err(SpecError::new(
                    format!("commands.set[{i}]"),
                    format!("'{path}' is not a field: name one of fields (dotted for nested, e.g. location.lat)"),
                ));
            }
        }
        for (key, l) in [("on_start", &self.on_start), ("on_stop", &self.on_stop)] {
            if let Some(l) = l {
                validate_root(&l.fields, &format!("{key}.fields"))?;
            }
        }
        Ok(())
    }
}

fn validate_root(f: &Field, path: &str) -> Result<(), SpecError> {
    if !matches!(f, Field::Object(_)) {
        return Err(SpecError::new(
            path,
            "must be a map of field names to values",
        ));
    }
    f.visit(path, &mut |at, g| g.validate(at))
}

/// The top-level key a serde error is about: the one named in the message, or else the
/// first key that fails on its own.
fn blame(obj: &serde_json::Map<String, serde_json::Value>, msg: &str) -> String {
    if let Some(rest) = msg.split("field `").nth(1) {
        if let Some(name) = rest.split('`').next() {
            return name.to_string();
        }
    }
    for (k, v) in obj {
        let mut one = serde_json::Map::new();
        one.insert("name".into(), serde_json::Value::String("x".into()));
        one.insert(k.clone(), v.clone());
        if serde_json::from_value::<Profile>(serde_json::Value::Object(one)).is_err() {
            return k.clone();
        }
    }
    "profile".into()
}

/// Checks the options of a `profile` device (the profile document). The error's field is
/// relative to the options, e.g. `fields.power.normal.stddev`.
pub fn validate_options(options: &serde_json::Value) -> Result<(), SpecError> {
    Profile::from_value(options).map(|_| ())
}

#[cfg(test)]
mod tests;
