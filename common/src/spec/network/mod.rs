//! Network impairments of a fleet (the `network:` section of a fleet file, and the rules
//! `pluribusctl network` sets at runtime): latency, loss, duplication, reordering, a
//! bandwidth cap, corruption and a skewed clock, for every device or for a cohort.
//!
//! A rule is a [`NetRule`]: which devices (`cohort`), when (`at`, `for`), and what
//! impairments (a `preset` and/or explicit ones). The rules that apply to a device at a
//! time are merged in order (default, cohorts, timeline, runtime), later ones winning per
//! impairment: see [`plan::NetPlan`].

mod cohort;
mod flap;
pub mod labels;
pub mod plan;
mod presets;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use cohort::Cohort;
pub use flap::{DurationDist, FlapSpec, LinkMode, MIN_CYCLE_MS};
pub use labels::{LabelDef, LabelSets};
pub use presets::{preset, PRESETS};

use crate::SpecError;

/// Longest added delay (latency, bandwidth queueing) a rule may ask for.
pub const MAX_DELAY: Duration = Duration::from_secs(600);
/// Most messages a reordered message may be held back behind.
pub const MAX_REORDER_GAP: u32 = 1000;
/// Most messages a device may buffer while offline.
pub const MAX_OFFLINE_BUFFER: u32 = 100_000;
/// Most rules a fleet may carry (file and runtime together).
pub const MAX_RULES: usize = 64;
/// Most distinct cohorts a fleet's rules may name (file and runtime together): agents
/// count injected faults per cohort, so this bounds what a heartbeat carries per fleet.
pub const MAX_COHORTS: usize = 16;

/// The distinct cohorts `rules` name.
pub fn cohorts<'a>(rules: impl IntoIterator<Item = &'a NetRule>) -> Vec<&'a Cohort> {
    let mut out: Vec<&Cohort> = Vec::new();
    for c in rules.into_iter().filter_map(|r| r.cohort.as_ref()) {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// The `network:` section of a fleet file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// What every device gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<NetRule>,
    /// Overrides for cohorts (each needs `cohort`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cohorts: Vec<NetRule>,
    /// Rules that start `at` a time after the fleet's schedule starts, optionally `for` a
    /// duration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<NetRule>,
    /// Labels cohorts may refer to (`cohort: zone=eu`), each a share, an index range or a
    /// list of device ids.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, LabelDef>,
}

impl NetworkSpec {
    /// Checks every rule; errors name the field under `prefix` (e.g. `network`).
    pub fn validate(&self, prefix: &str) -> Result<(), SpecError> {
        labels::validate(prefix, &self.labels)?;
        let rules = self.cohorts.iter().map(|r| ("cohorts", r));
        for (i, (list, r)) in rules
            .enumerate()
            .chain(self.timeline.iter().map(|r| ("timeline", r)).enumerate())
        {
            if let Some(l) = r.cohort.as_ref().and_then(Cohort::label) {
                if !self.labels.contains_key(l) {
                    return Err(SpecError::new(
                        format!("{prefix}.{list}[{i}].cohort"),
                        format!("label {l} is not defined: add it under {prefix}.labels (e.g. {l}: 10% or {l}: 0..100)"),
                    ));
                }
            }
        }
        if let Some(d) = &self.default {
            if d.cohort.is_some() || d.at.is_some() || d.duration.is_some() {
                return Err(SpecError::new(
                    format!("{prefix}.default"),
                    "applies to every device from the start: put rules with cohort, at or for under cohorts or timeline",
                ));
            }
            d.validate(&format!("{prefix}.default"))?;
        }
        for (i, r) in self.cohorts.iter().enumerate() {
            let at = format!("{prefix}.cohorts[{i}]");
            if r.cohort.is_none() {
                return Err(SpecError::new(
                    format!("{at}.cohort"),
                    "missing: say which devices, e.g. cohort: 10% or cohort: 0..100",
                ));
            }
            if r.at.is_some() || r.duration.is_some() {
                return Err(SpecError::new(
                    at,
                    "a cohort override applies from the start: move rules with at/for to timeline",
                ));
            }
            r.validate(&at)?;
        }
        for (i, r) in self.timeline.iter().enumerate() {
            let at = format!("{prefix}.timeline[{i}]");
            if r.at.is_none() {
                return Err(SpecError::new(
                    format!("{at}.at"),
                    "missing: say when the rule starts after the fleet starts, e.g. at: 2m",
                ));
            }
            r.validate(&at)?;
        }
        let named = cohorts(self.cohorts.iter().chain(&self.timeline)).len();
        if named > MAX_COHORTS {
            return Err(SpecError::new(
                prefix,
                format!("the rules name {named} different cohorts, more than the limit of {MAX_COHORTS}: injected faults are counted per cohort; define fewer (a label can group devices)"),
            ));
        }
        let n = usize::from(self.default.is_some()) + self.cohorts.len() + self.timeline.len();
        if n > MAX_RULES {
            return Err(SpecError::new(
                prefix,
                format!("{n} rules is more than the limit of {MAX_RULES}"),
            ));
        }
        Ok(())
    }

    /// True when the section asks for nothing.
    pub fn is_empty(&self) -> bool {
        self.default.is_none() && self.cohorts.is_empty() && self.timeline.is_empty()
    }
}

/// One rule: which devices, when, and what impairments.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetRule {
    /// The devices it applies to (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<Cohort>,
    /// Timeline: when it starts, after the fleet's schedule starts.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humantime_serde"
    )]
    pub at: Option<Duration>,
    /// Timeline: how long it lasts (for ever when absent).
    #[serde(
        rename = "for",
        default,
        skip_serializing_if = "Option::is_none",
        with = "humantime_serde"
    )]
    pub duration: Option<Duration>,
    /// A named preset (`pluribusctl network presets`); the rule's own impairments
    /// override the preset's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// Added delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencySpec>,
    /// Messages lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<LossSpec>,
    /// Messages sent twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<ChanceSpec>,
    /// Messages held back behind later ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reorder: Option<ReorderSpec>,
    /// A per-device byte rate cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<BandwidthSpec>,
    /// Payloads mangled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<CorruptSpec>,
    /// The device's clock: offset and drift of the `ts` it reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockSpec>,
    /// Offline (a partition; `partition: {}` says the same): messages are kept on the
    /// device and sent when it is back.
    #[serde(default, alias = "partition", skip_serializing_if = "Option::is_none")]
    pub offline: Option<OfflineSpec>,
    /// Flapping: each device's connection goes down and comes back, over and over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flap: Option<FlapSpec>,
}

/// The impairments themselves. Absent means "not set here" (a lower rule's setting, or
/// none, applies).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Impairments {
    /// Added delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencySpec>,
    /// Messages lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<LossSpec>,
    /// Messages sent twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<ChanceSpec>,
    /// Messages held back behind later ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reorder: Option<ReorderSpec>,
    /// A per-device byte rate cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<BandwidthSpec>,
    /// Payloads mangled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<CorruptSpec>,
    /// The device's clock: offset and drift of the `ts` it reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockSpec>,
    /// Offline (a partition): messages are kept on the device and sent when it is back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline: Option<OfflineSpec>,
    /// Flapping: each device's connection goes down and comes back, over and over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flap: Option<FlapSpec>,
}

impl Impairments {
    /// `other`'s settings over `self`'s.
    pub fn overlay(&mut self, other: &Impairments) {
        macro_rules! take {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f.clone(); } )* };
        }
        take!(latency, loss, duplicate, reorder, bandwidth, corrupt, clock, offline, flap);
    }

    /// The names of the impairments set (`latency`, `loss`, ..., `offline`, `flap`).
    pub fn names(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        macro_rules! name {
            ($($f:ident),*) => { $( if self.$f.is_some() { out.push(stringify!($f)); } )* };
        }
        name!(latency, loss, duplicate, reorder, bandwidth, corrupt, clock, offline, flap);
        out
    }

    /// True when nothing is impaired (every setting absent or a no-op).
    pub fn is_off(&self) -> bool {
        self.latency.as_ref().is_none_or(LatencySpec::is_off)
            && self.loss.as_ref().is_none_or(LossSpec::is_off)
            && self.duplicate.as_ref().is_none_or(|c| c.probability == 0.0)
            && self.reorder.as_ref().is_none_or(|r| r.probability == 0.0)
            && self.bandwidth.is_none()
            && self.corrupt.as_ref().is_none_or(|c| c.probability == 0.0)
            && self.clock.as_ref().is_none_or(ClockSpec::is_off)
            && self.offline.is_none()
            && self.flap.as_ref().is_none_or(FlapSpec::is_off)
    }

    fn validate(&self, prefix: &str) -> Result<(), SpecError> {
        let f = |n: &str| format!("{prefix}.{n}");
        if let Some(l) = &self.latency {
            l.validate(&f("latency"))?;
        }
        if let Some(l) = &self.loss {
            l.validate(&f("loss"))?;
        }
        if let Some(d) = &self.duplicate {
            probability(&f("duplicate.probability"), d.probability)?;
        }
        if let Some(r) = &self.reorder {
            probability(&f("reorder.probability"), r.probability)?;
            if r.gap == 0 || r.gap > MAX_REORDER_GAP {
                return Err(SpecError::new(
                    f("reorder.gap"),
                    format!("{} is out of range: use 1 to {MAX_REORDER_GAP}", r.gap),
                ));
            }
        }
        if let Some(b) = &self.bandwidth {
            if b.bytes_per_s == 0 {
                return Err(SpecError::new(
                    f("bandwidth.bytes_per_s"),
                    "must be above 0 (use loss probability 1 to cut a device off)",
                ));
            }
        }
        if let Some(c) = &self.corrupt {
            probability(&f("corrupt.probability"), c.probability)?;
        }
        if let Some(o) = &self.offline {
            validate_offline(&f("offline"), o)?;
        }
        if let Some(fl) = &self.flap {
            fl.validate(&f("flap"))?;
        }
        if let Some(c) = &self.clock {
            if !c.drift_ppm.is_finite() || c.drift_ppm.abs() > 1e6 {
                return Err(SpecError::new(
                    f("clock.drift_ppm"),
                    "must be a number between -1000000 and 1000000",
                ));
            }
            if c.offset_ms.unsigned_abs() > 365 * 86_400_000 {
                return Err(SpecError::new(f("clock.offset"), "must be within a year"));
            }
        }
        Ok(())
    }
}

impl NetRule {
    /// Checks the rule; errors name the field under `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<(), SpecError> {
        if let Some(p) = &self.preset {
            if preset(p).is_none() {
                return Err(SpecError::new(
                    format!("{prefix}.preset"),
                    format!(
                        "unknown preset '{p}': use one of {}",
                        PRESETS
                            .iter()
                            .map(|p| p.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        if self.duration == Some(Duration::ZERO) {
            return Err(SpecError::new(
                format!("{prefix}.for"),
                "must be longer than 0, e.g. 30s (leave it out for ever)",
            ));
        }
        self.own().validate(prefix)
    }

    /// The impairments the rule sets itself (without its preset).
    pub fn own(&self) -> Impairments {
        Impairments {
            latency: self.latency.clone(),
            loss: self.loss.clone(),
            duplicate: self.duplicate.clone(),
            reorder: self.reorder.clone(),
            bandwidth: self.bandwidth.clone(),
            corrupt: self.corrupt.clone(),
            clock: self.clock.clone(),
            offline: self.offline.clone(),
            flap: self.flap.clone(),
        }
    }

    /// The rule's impairments: its preset's, overlaid with its own.
    pub fn impairments(&self) -> Impairments {
        let mut base = self
            .preset
            .as_deref()
            .and_then(preset)
            .map(|p| p.impairments())
            .unwrap_or_default();
        base.overlay(&self.own());
        base
    }
}

fn validate_offline(prefix: &str, o: &OfflineSpec) -> Result<(), SpecError> {
    if o.buffer > MAX_OFFLINE_BUFFER {
        return Err(SpecError::new(
            format!("{prefix}.buffer"),
            format!(
                "{} is above the limit of {MAX_OFFLINE_BUFFER} messages per device",
                o.buffer
            ),
        ));
    }
    if !(o.flush_rate.is_finite() && o.flush_rate >= 0.0) {
        return Err(SpecError::new(
            format!("{prefix}.flush_rate"),
            "must be 0 (all at once) or a positive number of messages per second",
        ));
    }
    Ok(())
}

fn probability(field: &str, p: f64) -> Result<(), SpecError> {
    if !(0.0..=1.0).contains(&p) {
        return Err(SpecError::new(
            field,
            format!("{p} is not a probability: use a number from 0 to 1 (0.05 for 5%)"),
        ));
    }
    Ok(())
}

/// How the jitter of a latency is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    /// Uniform in ±jitter around the delay.
    #[default]
    Uniform,
    /// Normal with the jitter as standard deviation.
    Normal,
    /// Pareto (heavy tail, shape 1.5) with the jitter as its mean, added to the delay.
    Pareto,
}

/// Added delay: `delay` plus jitter drawn from a distribution.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencySpec {
    /// The fixed part (the mean for uniform and normal jitter).
    #[serde(default, with = "humantime_serde")]
    pub delay: Duration,
    /// The spread.
    #[serde(default, with = "humantime_serde")]
    pub jitter: Duration,
    /// How the jitter is drawn.
    #[serde(default)]
    pub distribution: Distribution,
    /// 0 to 1: how much a message's jitter follows the previous message's.
    #[serde(default)]
    pub correlation: f64,
}

impl LatencySpec {
    fn is_off(&self) -> bool {
        self.delay.is_zero() && self.jitter.is_zero()
    }

    fn validate(&self, prefix: &str) -> Result<(), SpecError> {
        for (n, d) in [("delay", self.delay), ("jitter", self.jitter)] {
            if d > MAX_DELAY {
                return Err(SpecError::new(
                    format!("{prefix}.{n}"),
                    format!("{d:?} is longer than the limit of {MAX_DELAY:?}"),
                ));
            }
        }
        probability(&format!("{prefix}.correlation"), self.correlation)
    }
}

/// Lost messages: at random (`probability`), or in bursts (`gilbert`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossSpec {
    /// Each message is lost with this probability (Bernoulli).
    #[serde(default)]
    pub probability: f64,
    /// Bursty loss (Gilbert-Elliott); replaces `probability` when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gilbert: Option<GilbertSpec>,
}

impl LossSpec {
    fn is_off(&self) -> bool {
        self.probability == 0.0 && self.gilbert.is_none()
    }

    fn validate(&self, prefix: &str) -> Result<(), SpecError> {
        probability(&format!("{prefix}.probability"), self.probability)?;
        if let Some(g) = &self.gilbert {
            let f = |n: &str| format!("{prefix}.gilbert.{n}");
            probability(&f("enter_bad"), g.enter_bad)?;
            probability(&f("leave_bad"), g.leave_bad)?;
            probability(&f("loss_good"), g.loss_good)?;
            probability(&f("loss_bad"), g.loss_bad)?;
        }
        Ok(())
    }
}

/// Gilbert-Elliott loss: a good and a bad state, each with its loss rate; per message the
/// link moves from good to bad with `enter_bad` and back with `leave_bad`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GilbertSpec {
    /// Probability of moving from good to bad, per message.
    pub enter_bad: f64,
    /// Probability of moving from bad to good, per message.
    pub leave_bad: f64,
    /// Loss in the good state.
    #[serde(default)]
    pub loss_good: f64,
    /// Loss in the bad state.
    #[serde(default = "one")]
    pub loss_bad: f64,
}

fn one() -> f64 {
    1.0
}

/// Something that happens to a message with a probability.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChanceSpec {
    /// 0 to 1.
    pub probability: f64,
}

/// Reordering: a message is held back behind the device's next `gap` messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReorderSpec {
    /// 0 to 1.
    pub probability: f64,
    /// How many later messages overtake it.
    #[serde(default = "one_u32")]
    pub gap: u32,
}

fn one_u32() -> u32 {
    1
}

/// A byte rate cap per device (a token bucket): messages over it wait.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BandwidthSpec {
    /// Sustained rate.
    pub bytes_per_s: u64,
    /// Bytes that may go at once (default: one second's worth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_bytes: Option<u64>,
}

/// Which messages a full offline buffer loses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropPolicy {
    /// The oldest buffered message makes room.
    #[default]
    Oldest,
    /// The new message is lost.
    Newest,
}

/// Offline with store and forward: while the rule is in force the device cannot reach its
/// sink; it keeps producing and buffers up to `buffer` messages (0: it buffers nothing and
/// loses them all), and when the rule ends it sends them with their original `ts` and
/// `seq`, at `flush_rate` messages per second (0: at once), before new ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfflineSpec {
    /// Most messages kept.
    #[serde(default = "default_buffer")]
    pub buffer: u32,
    /// Which messages a full buffer loses.
    #[serde(default)]
    pub drop: DropPolicy,
    /// Messages per second when flushing (0: all at once).
    #[serde(default)]
    pub flush_rate: f64,
    /// What the device's own connection does meanwhile (mqtt): `close` (default), `stall`
    /// or `keep`.
    #[serde(default)]
    pub link: LinkMode,
}

impl Default for OfflineSpec {
    fn default() -> Self {
        Self {
            buffer: default_buffer(),
            drop: DropPolicy::Oldest,
            flush_rate: 0.0,
            link: LinkMode::Close,
        }
    }
}

fn default_buffer() -> u32 {
    1000
}

/// How a corrupted payload is mangled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CorruptMode {
    /// Cut at a random length.
    Truncate,
    /// A few random bytes flipped.
    Flip,
    /// Still UTF-8, no longer JSON (a brace removed).
    InvalidJson,
    /// One of the three at random.
    #[default]
    Any,
}

/// Corruption.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorruptSpec {
    /// 0 to 1.
    pub probability: f64,
    /// How.
    #[serde(default)]
    pub mode: CorruptMode,
}

/// The device's clock, as seen in the `ts` it reports (its schedule is not affected).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockSpec {
    /// Added to `ts`: `+30s`, `-2m`, `1500ms`.
    #[serde(
        rename = "offset",
        default,
        with = "signed_ms",
        skip_serializing_if = "is_zero"
    )]
    pub offset_ms: i64,
    /// Drift in parts per million, counted from the fleet's start.
    #[serde(default)]
    pub drift_ppm: f64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl ClockSpec {
    fn is_off(&self) -> bool {
        self.offset_ms == 0 && self.drift_ppm == 0.0
    }
}

/// Parses a signed duration (`+30s`, `-2m`, `250ms`) into milliseconds.
pub fn parse_signed_ms(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let (neg, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let d = humantime::parse_duration(rest.trim())
        .map_err(|e| format!("'{s}' is not a duration: {e} (write e.g. +30s or -2m)"))?;
    let ms = i64::try_from(d.as_millis()).map_err(|_| format!("'{s}' is too long"))?;
    Ok(if neg { -ms } else { ms })
}

mod signed_ms {
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        let sign = if *v < 0 { "-" } else { "+" };
        s.serialize_str(&format!("{sign}{}ms", v.unsigned_abs()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Ms(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Ms(ms) => Ok(ms),
            Raw::Text(t) => super::parse_signed_ms(&t).map_err(de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests;
