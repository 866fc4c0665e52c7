//! Value generators: the leaves of a profile's `fields`. Each is written externally tagged,
//! e.g. `{normal: {mean: 230, stddev: 2}}`; the ones without parameters (`sequence`, `uuid`,
//! `timestamp`) may also be written as a bare string.
//!
//! Every value is a pure function of (fleet seed, device id, seq, scheduled time), so a
//! device sends the same values on any agent, after a failover, and when a run is repeated.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use super::template::{parse_template, TemplatePart, TEMPLATE_PLACEHOLDERS};

/// The generator names, as written in a profile.
pub const GENERATOR_NAMES: &[&str] = &[
    "constant",
    "uniform",
    "normal",
    "random_walk",
    "sine",
    "square",
    "sawtooth",
    "counter",
    "sequence",
    "choice",
    "bool",
    "uuid",
    "timestamp",
    "gps",
    "template",
    "state_machine",
];

/// Generators that take no parameters and may be written as a bare string.
pub const UNIT_GENERATORS: &[&str] = &["sequence", "uuid", "timestamp"];

/// Most decimals a number may be rounded to.
pub const MAX_DECIMALS: u8 = 9;

/// One generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Generator {
    /// Always this JSON value.
    Constant(serde_json::Value),
    /// Uniform in `[min, max)`.
    Uniform(Uniform),
    /// Gaussian, optionally clamped.
    Normal(Normal),
    /// A bounded random walk (smooth noise over seq, reflected into `[min, max]`).
    RandomWalk(RandomWalk),
    /// `offset + amplitude × sin(2π t / period)`, t the slot's scheduled time.
    Sine(Wave),
    /// `offset ± amplitude`: `+` in the first half of each period.
    Square(Wave),
    /// From `offset - amplitude` rising to `offset + amplitude` over each period.
    Sawtooth(Wave),
    /// `start + step × seq`.
    Counter(Counter),
    /// The message's seq.
    Sequence,
    /// One of `values`, optionally weighted.
    Choice(Choice),
    /// `true` with `probability`.
    Bool(BoolGen),
    /// A v4-shaped UUID derived from the hash (deterministic, not random).
    Uuid,
    /// The send time, Unix ms.
    Timestamp,
    /// A position `{lat, lon}`: a walk around a point or a route through waypoints.
    Gps(Gps),
    /// A string with `{device_id}`, `{fleet}`, `{index}` (or `{index:05}`) and `{seq}`.
    Template(String),
    /// A state name from a state machine driven by seq.
    StateMachine(StateMachine),
}

/// `uniform {min, max}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Uniform {
    /// Lowest value (inclusive).
    pub min: f64,
    /// Highest value (exclusive).
    pub max: f64,
    /// Decimals kept (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decimals: Option<u8>,
}

/// `normal {mean, stddev}`, clamped to `[min, max]` when given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normal {
    /// Mean.
    pub mean: f64,
    /// Standard deviation (>= 0).
    pub stddev: f64,
    /// Values below are raised to `min`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Values above are lowered to `max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Decimals kept (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decimals: Option<u8>,
}

/// `random_walk {start, step, min, max}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomWalk {
    /// The value at seq 0.
    pub start: f64,
    /// The typical difference between two consecutive values.
    pub step: f64,
    /// Lower bound (the walk is reflected at it).
    pub min: f64,
    /// Upper bound (the walk is reflected at it).
    pub max: f64,
    /// Decimals kept (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decimals: Option<u8>,
}

/// `sine | square | sawtooth {period, amplitude, offset, phase}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wave {
    /// Length of one cycle, e.g. `24h`.
    #[serde(with = "humantime_serde")]
    pub period: Duration,
    /// Half the peak-to-peak height.
    pub amplitude: f64,
    /// The centre line (default 0).
    #[serde(default)]
    pub offset: f64,
    /// Shift in time: seconds, or `per_device` (each device its own, stable shift). Default 0.
    #[serde(default, skip_serializing_if = "Phase::is_zero")]
    pub phase: Phase,
    /// Decimals kept (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decimals: Option<u8>,
}

/// A time shift: a fixed number of seconds, or one derived from the device (`per_device`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Phase {
    /// The same shift for every device.
    Seconds(f64),
    /// A stable shift per device, spread over the period.
    PerDevice,
}

impl Default for Phase {
    fn default() -> Self {
        Self::Seconds(0.0)
    }
}

impl Phase {
    fn is_zero(&self) -> bool {
        *self == Self::Seconds(0.0)
    }
}

impl Serialize for Phase {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Seconds(x) => s.serialize_f64(*x),
            Self::PerDevice => s.serialize_str("per_device"),
        }
    }
}

impl<'de> Deserialize<'de> for Phase {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Phase;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of seconds or per_device")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Phase, E> {
                Ok(Phase::Seconds(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Phase, E> {
                Ok(Phase::Seconds(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Phase, E> {
                Ok(Phase::Seconds(v as f64))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Phase, E> {
                match v {
                    "per_device" => Ok(Phase::PerDevice),
                    _ => Err(E::custom(format!(
                        "phase '{v}': write a number of seconds or per_device"
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `counter {start, step}`: `start + step × seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counter {
    /// Value at seq 0 (default 0).
    #[serde(default)]
    pub start: f64,
    /// Added per seq (default 1).
    #[serde(default = "one")]
    pub step: f64,
    /// Decimals kept (default 9, trailing zeros dropped: integers stay integers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decimals: Option<u8>,
}

fn one() -> f64 {
    1.0
}

/// `choice {values, weights}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    /// The values (any JSON).
    pub values: Vec<serde_json::Value>,
    /// Relative weights, one per value (default: all equal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<f64>>,
}

/// `bool {probability}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoolGen {
    /// Chance of `true`, in `[0, 1]`.
    pub probability: f64,
}

/// `gps {walk: {...}}` or `gps {waypoints: [[lat, lon], ...], speed_kmh}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gps {
    /// Wander around a point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub walk: Option<GpsWalk>,
    /// Follow a looped route through these `[lat, lon]` points (back to the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waypoints: Option<Vec<[f64; 2]>>,
    /// Speed along the route, km/h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_kmh: Option<f64>,
    /// Where on the route a device is at time 0: seconds, or `per_device`. Default 0.
    #[serde(default, skip_serializing_if = "Phase::is_zero")]
    pub phase: Phase,
    /// Decimals of lat and lon (default 6, about 0.1 m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decimals: Option<u8>,
}

/// A GPS walk: a bounded noise walk in metres around (lat, lon).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpsWalk {
    /// Starting latitude, degrees.
    pub lat: f64,
    /// Starting longitude, degrees.
    pub lon: f64,
    /// Typical distance between two consecutive positions, metres.
    pub step_m: f64,
    /// The walk stays within this many metres of its start, per axis (default 1000 × step_m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub radius_m: Option<f64>,
    /// Each device starts up to this many metres from (lat, lon), per axis (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread_m: Option<f64>,
}

/// `state_machine {states: [...], restart_every}`: a semi-Markov chain over seq.
///
/// The machine starts in the first state at seq 0. It stays in a state for a number of
/// ticks drawn from `dwell`, then moves to one of `next` (by weight); a state without `next`
/// stays until the restart. Every `restart_every` ticks the machine starts over in the first
/// state: this bounds the replay an agent does to find the state of a device it takes over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateMachine {
    /// The states; the first is the initial one.
    pub states: Vec<State>,
    /// Ticks between two restarts (default 86400: a day at one message per second).
    #[serde(default = "default_restart")]
    pub restart_every: u64,
}

fn default_restart() -> u64 {
    86_400
}

/// One state of a [`StateMachine`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// The name sent as the value.
    pub name: String,
    /// How many ticks the machine stays, drawn uniformly from `[min, max]`.
    pub dwell: TickRange,
    /// The next state's name and its relative weight.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub next: BTreeMap<String, f64>,
}

/// An inclusive range of ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TickRange {
    /// Fewest ticks (>= 1).
    pub min: u64,
    /// Most ticks (>= min).
    pub max: u64,
}
