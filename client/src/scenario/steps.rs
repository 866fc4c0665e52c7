//! The steps of a scenario, as a file writes them (each step is a map with one key: the
//! step's kind) and as code builds them.

use std::time::Duration;

use pluribus_common::load::LoadSpec;
use pluribus_common::spec::network::{Cohort, NetRule};
use serde::{Deserialize, Serialize};

use super::check::Check;

/// One step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Deploy one of the scenario's fleets and wait until its devices run.
    Deploy(Deploy),
    /// Resize a fleet.
    Scale(Scale),
    /// Change a fleet's load shape (the whole `load:` section of a fleet file).
    #[serde(alias = "set-load")]
    SetLoad(SetLoad),
    /// Stop one device of a fleet.
    Stop(StopDevice),
    /// Delete a fleet and wait for its devices to stop.
    Delete(FleetRef),
    /// Impair a fleet's network (a rule as in `pluribusctl network set`), or clear it.
    Network(Box<Network>),
    /// Send a command to one device or a cohort, and optionally expect replies.
    Command(Command),
    /// Make an agent hand off its work (a failover drill), or take work again.
    Drain(Drain),
    /// End an agent's process at once, as a crash would (a failover drill): its shards
    /// fail over once its liveness entry expires. Whatever restarts agents (systemd,
    /// Kubernetes) brings it back; the cleanup does not.
    KillAgent(KillAgent),
    /// Wait a while.
    #[serde(with = "humantime_serde")]
    Wait(Duration),
    /// Wait until a condition holds (a check), at most `timeout`; the time it took is a
    /// check of its own, failed when the timeout passes.
    WaitFor(WaitFor),
    /// Open a probe window: subscribe where the system under test delivers telemetry.
    Probe(Probe),
    /// Close a probe window (its figures stay as they were at that moment).
    ProbeEnd(String),
    /// Checks.
    Expect(Expect),
    /// Steps run together; the group ends when all have.
    Parallel(Vec<Step>),
    /// Steps run again, `times` times.
    Repeat(Repeat),
}

pluribus_common::one_of_enum!(Step, "a step (deploy, scale, set_load, stop, delete, network, command, drain, kill_agent, wait, wait_for, probe, probe_end, expect, parallel, repeat)");

/// A fleet, by name.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum FleetRef {
    /// `delete: meters`
    Name(String),
    /// `delete: {fleet: meters}`
    Named {
        /// The fleet.
        fleet: String,
    },
}

impl FleetRef {
    /// The fleet's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Name(n) | Self::Named { fleet: n } => n,
        }
    }
}

/// `deploy: NAME` or `deploy: {fleet: NAME, timeout: 60s, wait: false}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Deploy {
    /// Just the fleet.
    Name(String),
    /// With options.
    Full(DeployOptions),
}

/// Options of a deploy step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployOptions {
    /// The fleet (a key of `fleets:`).
    pub fleet: String,
    /// Wait until every device runs (default true).
    #[serde(default = "yes")]
    pub wait: bool,
    /// How long to wait.
    #[serde(default = "minute", with = "humantime_serde")]
    pub timeout: Duration,
    /// Replace a fleet of the same name deployed with another spec (default false).
    #[serde(default)]
    pub replace: bool,
}

impl Deploy {
    /// The options, defaults filled in.
    pub fn options(&self) -> DeployOptions {
        match self {
            Self::Name(n) => DeployOptions {
                fleet: n.clone(),
                wait: true,
                timeout: minute(),
                replace: false,
            },
            Self::Full(o) => o.clone(),
        }
    }
}

fn yes() -> bool {
    true
}
fn minute() -> Duration {
    Duration::from_secs(60)
}

/// `scale: {fleet, count}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    /// The fleet.
    pub fleet: String,
    /// The new number of devices.
    pub count: u64,
}

/// `set_load: {fleet, load}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetLoad {
    /// The fleet.
    pub fleet: String,
    /// The new load (none: every device at its own interval).
    #[serde(default)]
    pub load: Option<LoadSpec>,
}

/// `stop: {fleet, device}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopDevice {
    /// The fleet.
    pub fleet: String,
    /// The device id.
    pub device: String,
}

/// `network: {fleet, set: RULE}` or `network: {fleet, clear: true}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// The fleet.
    pub fleet: String,
    /// A rule (cohort, impairments, `for`), as in a fleet file's `network:` rules.
    #[serde(default)]
    pub set: Option<NetRule>,
    /// Remove the runtime rules (of `cohort` only, if given).
    #[serde(default)]
    pub clear: bool,
    /// With `clear`: only this cohort's rules.
    #[serde(default)]
    pub cohort: Option<Cohort>,
}

/// `command: {fleet, device | cohort, payload, expect}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// The fleet.
    pub fleet: String,
    /// One device.
    #[serde(default)]
    pub device: Option<String>,
    /// A share or a range of the fleet's devices (`10%`, `0..100`); all when neither this
    /// nor `device` is given.
    #[serde(default)]
    pub cohort: Option<Cohort>,
    /// The command (JSON; e.g. `{set: {temperature: 30}}`).
    #[serde(default)]
    pub payload: serde_json::Value,
    /// How long to wait for replies.
    #[serde(default = "five_s", with = "humantime_serde")]
    pub within: Duration,
    /// A check on the replies, e.g. `replies >= 99%`.
    #[serde(default)]
    pub expect: Option<Check>,
}

fn five_s() -> Duration {
    Duration::from_secs(5)
}

/// `drain: {agent}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drain {
    /// An agent's name or id; or `holder-of:FLEET` for the agent holding most of a fleet.
    pub agent: String,
    /// Take work again instead.
    #[serde(default)]
    pub undo: bool,
}

/// `kill_agent: {agent}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillAgent {
    /// An agent's name or id; or `holder-of:FLEET` for the agent holding most of a fleet.
    pub agent: String,
}

/// `wait_for: "connected >= 99%"` or `{condition, timeout, fleet}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum WaitFor {
    /// The condition, with a 60 s timeout.
    Condition(Check),
    /// With options.
    Full(WaitForOptions),
}

/// Options of `wait_for`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitForOptions {
    /// The condition.
    pub condition: Check,
    /// How long at most.
    #[serde(default = "minute", with = "humantime_serde")]
    pub timeout: Duration,
    /// The fleet (default: every fleet of the scenario).
    #[serde(default)]
    pub fleet: Option<String>,
    /// End the run when the timeout passes.
    #[serde(default)]
    pub abort_on_fail: bool,
}

impl WaitFor {
    /// The options, defaults filled in.
    pub fn options(&self) -> WaitForOptions {
        match self {
            Self::Condition(c) => WaitForOptions {
                condition: c.clone(),
                timeout: minute(),
                fleet: None,
                abort_on_fail: false,
            },
            Self::Full(o) => o.clone(),
        }
    }
}

/// `probe: {name, subject}` or `probe: {name, broker, topic}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    /// The window's name, for `expect: {probe: NAME}` (default `probe`).
    #[serde(default = "probe_name")]
    pub name: String,
    /// A NATS subject (on the cluster's server).
    #[serde(default)]
    pub subject: Option<String>,
    /// An MQTT broker URL (with `topic`).
    #[serde(default)]
    pub broker: Option<String>,
    /// An MQTT topic filter.
    #[serde(default)]
    pub topic: Option<String>,
    /// Subscription QoS (MQTT).
    #[serde(default)]
    pub qos: u8,
    /// MQTT user name.
    #[serde(default)]
    pub username: Option<String>,
    /// MQTT password.
    #[serde(default)]
    pub password: Option<String>,
}

fn probe_name() -> String {
    "probe".into()
}

/// One check of an `expect` step: the text, or with a name and `abort_on_fail`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum CheckItem {
    /// `- p99 < 200ms`
    Plain(Check),
    /// `- {check: "p99 < 200ms", name: latency, abort_on_fail: true}`
    Full(CheckOptions),
}

/// A check with options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckOptions {
    /// The check.
    pub check: Check,
    /// Its name in reports (default: the check's text).
    #[serde(default)]
    pub name: Option<String>,
    /// End the run when it fails.
    #[serde(default)]
    pub abort_on_fail: bool,
}

impl CheckItem {
    /// The check, its name and whether it aborts.
    pub fn parts(&self) -> (&Check, String, bool) {
        match self {
            Self::Plain(c) => (c, c.text.clone(), false),
            Self::Full(o) => (
                &o.check,
                o.name.clone().unwrap_or_else(|| o.check.text.clone()),
                o.abort_on_fail,
            ),
        }
    }
}

/// `expect: {checks, fleet, probe, window, abort_on_fail}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The checks.
    pub checks: Vec<CheckItem>,
    /// The fleet whose figures are judged (default: every fleet of the scenario).
    #[serde(default)]
    pub fleet: Option<String>,
    /// The probe window whose figures are judged (default: the last one opened).
    #[serde(default)]
    pub probe: Option<String>,
    /// Measure over this long from now (default: since the run started; a probe's figures
    /// are always since it opened).
    #[serde(default, with = "humantime_serde")]
    pub window: Option<Duration>,
    /// End the run when any of these checks fails.
    #[serde(default)]
    pub abort_on_fail: bool,
}

/// `repeat: {times, steps}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repeat {
    /// How many times.
    pub times: u32,
    /// The steps.
    pub steps: Vec<Step>,
}

impl Step {
    /// The step's kind, as the file spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Deploy(_) => "deploy",
            Self::Scale(_) => "scale",
            Self::SetLoad(_) => "set_load",
            Self::Stop(_) => "stop",
            Self::Delete(_) => "delete",
            Self::Network(_) => "network",
            Self::Command(_) => "command",
            Self::Drain(_) => "drain",
            Self::KillAgent(_) => "kill_agent",
            Self::Wait(_) => "wait",
            Self::WaitFor(_) => "wait_for",
            Self::Probe(_) => "probe",
            Self::ProbeEnd(_) => "probe_end",
            Self::Expect(_) => "expect",
            Self::Parallel(_) => "parallel",
            Self::Repeat(_) => "repeat",
        }
    }

    /// The step in a few words, for the live view and the report.
    pub fn describe(&self) -> String {
        match self {
            Self::Deploy(d) => format!("deploy {}", d.options().fleet),
            Self::Scale(s) => format!("scale {} to {}", s.fleet, s.count),
            Self::SetLoad(s) => format!("set the load of {}", s.fleet),
            Self::Stop(s) => format!("stop {} of {}", s.device, s.fleet),
            Self::Delete(f) => format!("delete {}", f.name()),
            Self::Network(n) if n.clear => format!("clear the network rules of {}", n.fleet),
            Self::Network(n) => format!("impair the network of {}", n.fleet),
            Self::Command(c) => format!(
                "command {}",
                c.device.clone().unwrap_or_else(|| c.cohort.as_ref().map_or(
                    format!("every device of {}", c.fleet),
                    |k| format!("cohort {k} of {}", c.fleet)
                ))
            ),
            Self::Drain(d) if d.undo => format!("undrain {}", d.agent),
            Self::Drain(d) => format!("drain {}", d.agent),
            Self::KillAgent(k) => format!("kill agent {}", k.agent),
            Self::Wait(d) => format!("wait {}", humantime::format_duration(*d)),
            Self::WaitFor(w) => format!("wait for {}", w.options().condition),
            Self::Probe(p) => format!("probe {}", p.name),
            Self::ProbeEnd(p) => format!("end probe {p}"),
            Self::Expect(e) => format!("expect {} checks", e.checks.len()),
            Self::Parallel(s) => format!("{} steps in parallel", s.len()),
            Self::Repeat(r) => format!("repeat {} steps {} times", r.steps.len(), r.times),
        }
    }
}

/// A step's value that is a string or a map: the string's own reading, or the map as a
/// struct (so that an error inside either names its field and line).
macro_rules! string_or_map {
    ($ty:ty, $from_str:expr, $variant:path, $inner:ty) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("a string or a map")
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<$ty, E> {
                        let f: fn(&str) -> Result<$ty, String> = $from_str;
                        f(s).map_err(E::custom)
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        m: A,
                    ) -> Result<$ty, A::Error> {
                        <$inner>::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                            .map($variant)
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

/// The fields of `delete: {fleet: NAME}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetField {
    fleet: String,
}

string_or_map!(
    FleetRef,
    |s| Ok(FleetRef::Name(s.to_string())),
    fleet_named,
    FleetField
);
fn fleet_named(f: FleetField) -> FleetRef {
    FleetRef::Named { fleet: f.fleet }
}
string_or_map!(
    Deploy,
    |s| Ok(Deploy::Name(s.to_string())),
    Deploy::Full,
    DeployOptions
);
string_or_map!(
    WaitFor,
    |s| Check::parse(s).map(WaitFor::Condition),
    WaitFor::Full,
    WaitForOptions
);
string_or_map!(
    CheckItem,
    |s| Check::parse(s).map(CheckItem::Plain),
    CheckItem::Full,
    CheckOptions
);
