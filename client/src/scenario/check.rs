//! Checks: `p99 < 200ms`, `loss <= 0.1%`, `rate >= 99% of scheduled`, `connect_failures == 0`,
//! `no shard_fenced`. A check is parsed when the file is read (so a bad one is reported with
//! its line) and judged against what was measured ([`Measured`]).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A latency percentile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pct {
    /// Median.
    P50,
    /// 90th.
    P90,
    /// 99th.
    P99,
    /// Largest.
    Max,
}

impl Pct {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "p50" | "median" => Self::P50,
            "p90" => Self::P90,
            "p99" => Self::P99,
            "max" => Self::Max,
            _ => return None,
        })
    }
}

/// A figure Pluribus measures, that a check can judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Figure {
    /// Messages per second achieved (the agents' last heartbeat interval); its percentage is
    /// of the scheduled rate.
    Rate,
    /// Messages per second the schedule asks for.
    Scheduled,
    /// Devices running; percentage of the desired devices.
    Active,
    /// Devices with a live connection; percentage of the desired devices.
    Connected,
    /// Failed connection attempts within the window.
    ConnectFailures,
    /// Connections lost within the window.
    Disconnects,
    /// Connections made again within the window.
    Reconnects,
    /// Send errors within the window.
    Errors,
    /// Publishes that failed within the window.
    PublishFailed,
    /// Messages sent within the window.
    Messages,
    /// Acknowledgement latency (ms) within the window.
    Ack(Pct),
    /// Tick lateness (ms) within the window.
    Lag(Pct),
    /// Live agents.
    AgentsAlive,
    /// Events of this kind (e.g. `shard_fenced`) seen within the window.
    Events(String),
    /// Probe: end-to-end latency (ms).
    ProbeLatency(Pct),
    /// Probe: messages lost (count); its percentage is the loss rate.
    ProbeLoss,
    /// Probe: messages received more than once.
    ProbeDuplicates,
    /// Probe: messages received out of order.
    ProbeOutOfOrder,
    /// Probe: messages received.
    ProbeReceived,
    /// Command replies (only in a `command` step's `expect`); percentage of the commands sent.
    Replies,
}

/// The figure names, for error messages.
pub const FIGURES: &str = "rate, scheduled, active, connected, connect_failures, disconnects, reconnects, errors, publish_failed, messages, ack p99 (p50, p90, max), lag p99, agents_alive, events.KIND (or: no KIND), probe p99 (or p99), loss, duplicates, out_of_order, received";

impl Figure {
    fn parse(words: &[&str]) -> Result<Self, String> {
        let joined = words.join(".").to_ascii_lowercase();
        let joined = joined.strip_prefix("probe.").map_or(joined.clone(), |s| {
            if Pct::parse(s).is_some() || PROBE_WORDS.contains(&s) {
                s.to_string()
            } else {
                joined.clone()
            }
        });
        let j = joined.as_str();
        if let Some(p) = Pct::parse(j) {
            return Ok(Self::ProbeLatency(p));
        }
        if let Some(p) = j
            .strip_prefix("ack.")
            .or(j.strip_prefix("ack_"))
            .and_then(Pct::parse)
        {
            return Ok(Self::Ack(p));
        }
        if let Some(p) = j
            .strip_prefix("lag.")
            .or(j.strip_prefix("lag_"))
            .and_then(Pct::parse)
        {
            return Ok(Self::Lag(p));
        }
        if let Some(kind) = j.strip_prefix("events.") {
            return Ok(Self::Events(event_kind(kind)?));
        }
        Ok(match j {
            "rate" | "achieved" => Self::Rate,
            "scheduled" => Self::Scheduled,
            "active" | "running" => Self::Active,
            "connected" => Self::Connected,
            "connect_failures" | "connect.failures" => Self::ConnectFailures,
            "disconnects" => Self::Disconnects,
            "reconnects" => Self::Reconnects,
            "errors" => Self::Errors,
            "publish_failed" => Self::PublishFailed,
            "messages" => Self::Messages,
            "agents_alive" | "agents" | "agents.alive" => Self::AgentsAlive,
            "loss" | "lost" => Self::ProbeLoss,
            "duplicates" => Self::ProbeDuplicates,
            "out_of_order" => Self::ProbeOutOfOrder,
            "received" => Self::ProbeReceived,
            "replies" | "replied" => Self::Replies,
            _ => {
                return Err(format!(
                    "unknown figure '{}': use one of {FIGURES}",
                    words.join(" ")
                ))
            }
        })
    }

    /// Whether this figure comes from a probe window.
    pub fn needs_probe(&self) -> bool {
        matches!(
            self,
            Self::ProbeLatency(_)
                | Self::ProbeLoss
                | Self::ProbeDuplicates
                | Self::ProbeOutOfOrder
                | Self::ProbeReceived
        )
    }

    /// Latencies are judged against durations, the rest against numbers.
    pub fn is_latency(&self) -> bool {
        matches!(self, Self::Ack(_) | Self::Lag(_) | Self::ProbeLatency(_))
    }

    /// Whether `N%` means something for this figure (and of what).
    fn has_percent(&self) -> bool {
        matches!(
            self,
            Self::Rate | Self::Active | Self::Connected | Self::ProbeLoss | Self::Replies
        )
    }
}

const PROBE_WORDS: &[&str] = &["loss", "lost", "duplicates", "out_of_order", "received"];

fn event_kind(kind: &str) -> Result<String, String> {
    let ok = !kind.is_empty() && kind.chars().all(|c| c.is_ascii_lowercase() || c == '_');
    if !ok {
        return Err(format!(
            "'{kind}' is not an event kind: e.g. shard_fenced, agent_left, device_failed (see `pluribusctl events`)"
        ));
    }
    Ok(kind.to_string())
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `<`
    #[serde(rename = "<")]
    Lt,
    /// `<=`
    #[serde(rename = "<=")]
    Le,
    /// `>`
    #[serde(rename = ">")]
    Gt,
    /// `>=`
    #[serde(rename = ">=")]
    Ge,
    /// `==`
    #[serde(rename = "==")]
    Eq,
}

impl Op {
    const ALL: [(&'static str, Op); 6] = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("<", Op::Lt),
        (">", Op::Gt),
        ("=", Op::Eq),
    ];

    fn holds(self, v: f64, t: f64) -> bool {
        match self {
            Self::Lt => v < t,
            Self::Le => v <= t,
            Self::Gt => v > t,
            Self::Ge => v >= t,
            Self::Eq => (v - t).abs() < 1e-9,
        }
    }

    /// Lower values are better (for a baseline's comparison).
    pub fn lower_is_better(self) -> bool {
        matches!(self, Self::Lt | Self::Le | Self::Eq)
    }

    fn text(self) -> &'static str {
        match self {
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Eq => "==",
        }
    }
}

/// What a figure is compared with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Threshold {
    /// A count or a rate.
    Number(f64),
    /// A latency, in ms.
    Millis(f64),
    /// A percentage of the figure's own base (desired devices, scheduled rate, sent).
    Percent(f64),
    /// A percentage of another figure: `99% of scheduled`.
    PercentOf(f64, Figure),
}

/// A check as written, parsed: `figure op threshold`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Check {
    /// The text as written.
    pub text: String,
    /// What is measured.
    pub figure: Figure,
    /// The comparison.
    pub op: Op,
    /// The limit.
    pub threshold: Threshold,
}

impl From<Check> for String {
    fn from(c: Check) -> Self {
        c.text
    }
}

impl TryFrom<String> for Check {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Check::parse(&s)
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Check {
    /// Parses `figure op threshold` (or `no KIND`, `all devices active|running|connected`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let lower = t.to_ascii_lowercase();
        let words: Vec<&str> = lower.split_whitespace().collect();
        let sugar = |figure, op, threshold| {
            Ok(Self {
                text: t.to_string(),
                figure,
                op,
                threshold,
            })
        };
        match words.as_slice() {
            ["no", kind] => {
                let kind = kind.strip_prefix("events.").unwrap_or(kind);
                return sugar(
                    Figure::Events(event_kind(kind)?),
                    Op::Eq,
                    Threshold::Number(0.0),
                );
            }
            ["all", "devices", w] | ["all", w] => {
                let figure = match *w {
                    "active" | "running" => Figure::Active,
                    "connected" => Figure::Connected,
                    _ => return Err(format!("'{t}': write all devices active, all devices running or all devices connected")),
                };
                return sugar(figure, Op::Ge, Threshold::Percent(100.0));
            }
            _ => {}
        }
        let (at, op_text, op) = Op::ALL
            .iter()
            .filter_map(|(s, op)| lower.find(s).map(|i| (i, *s, *op)))
            .min_by_key(|(i, s, _)| (*i, usize::MAX - s.len()))
            .ok_or_else(|| {
                format!("'{t}' has no comparison: write e.g. p99 < 200ms, loss <= 0.1%, rate >= 99% of scheduled, connect_failures == 0")
            })?;
        let left: Vec<&str> = lower[..at].split_whitespace().collect();
        if left.is_empty() {
            return Err(format!("'{t}': name a figure before {op_text}: {FIGURES}"));
        }
        let figure = Figure::parse(&left).map_err(|e| format!("'{t}': {e}"))?;
        let right = lower[at + op_text.len()..].trim();
        let threshold = parse_threshold(&figure, right).map_err(|e| format!("'{t}': {e}"))?;
        Ok(Self {
            text: t.to_string(),
            figure,
            op,
            threshold,
        })
    }

    /// Judges the check against what was measured.
    pub fn judge(&self, m: &Measured) -> Judged {
        let Some(value) = m.value else {
            return Judged {
                value: None,
                shown: m.missing.clone().unwrap_or_else(|| "not measured".into()),
                limit: self.limit_text(None),
                passed: false,
            };
        };
        let (v, t, shown) = match &self.threshold {
            Threshold::Number(n) => (value, *n, number(value)),
            Threshold::Millis(ms) => (value, *ms, format!("{value:.3}ms")),
            Threshold::Percent(p) => match m.base {
                Some(b) if self.figure == Figure::ProbeLoss => {
                    let pct = if b > 0.0 { value / b * 100.0 } else { 0.0 };
                    (
                        pct,
                        *p,
                        format!("{pct:.4}% ({} of {})", number(value), number(b)),
                    )
                }
                Some(b) if b > 0.0 => {
                    let pct = value / b * 100.0;
                    (
                        pct,
                        *p,
                        format!("{pct:.2}% ({} of {})", number(value), number(b)),
                    )
                }
                _ => (
                    value,
                    f64::NAN,
                    format!("{} (nothing to take a percentage of)", number(value)),
                ),
            },
            Threshold::PercentOf(p, _) => match m.other {
                Some(o) => (
                    value,
                    o * p / 100.0,
                    format!(
                        "{} ({} of {})",
                        number(value),
                        pct_text(value, o),
                        number(o)
                    ),
                ),
                None => (
                    value,
                    f64::NAN,
                    format!("{} (the other figure was not measured)", number(value)),
                ),
            },
        };
        Judged {
            value: Some(v),
            shown,
            limit: self.limit_text(m.other),
            passed: !t.is_nan() && self.op.holds(v, t),
        }
    }

    fn limit_text(&self, _other: Option<f64>) -> String {
        let t = match &self.threshold {
            Threshold::Number(n) => number(*n),
            Threshold::Millis(ms) => format!("{}ms", number(*ms)),
            Threshold::Percent(p) => format!("{}%", number(*p)),
            Threshold::PercentOf(p, f) => format!("{}% of {}", number(*p), figure_name(f)),
        };
        format!("{} {t}", self.op.text())
    }
}

fn pct_text(v: f64, of: f64) -> String {
    if of > 0.0 {
        format!("{:.2}%", v / of * 100.0)
    } else {
        "-".into()
    }
}

fn figure_name(f: &Figure) -> String {
    serde_json::to_value(f)
        .ok()
        .map(|v| match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        })
        .unwrap_or_default()
}

/// A number without a needless fraction.
pub fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{:.2}", x)
    }
}

fn parse_threshold(figure: &Figure, right: &str) -> Result<Threshold, String> {
    if right.is_empty() {
        return Err("give a limit after the comparison".into());
    }
    if let Some((p, other)) = right.split_once(" of ") {
        let p = percent(p.trim())?;
        let words: Vec<&str> = other.split_whitespace().collect();
        let of = Figure::parse(&words)?;
        return Ok(Threshold::PercentOf(p, of));
    }
    if right.ends_with('%') {
        let p = percent(right)?;
        if !figure.has_percent() {
            return Err(
                "this figure has no percentage of its own: give a number, or write N% of FIGURE (percentages: rate of scheduled, active and connected of desired, loss of expected, replies of sent)"
                .into());
        }
        return Ok(Threshold::Percent(p));
    }
    if figure.is_latency() {
        let d = humantime::parse_duration(right)
            .map_err(|_| format!("'{right}' is not a duration: write e.g. 200ms or 2s"))?;
        return Ok(Threshold::Millis(d.as_secs_f64() * 1000.0));
    }
    let n = right
        .trim_end_matches("/s")
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
        .ok_or_else(|| format!("'{right}' is not a number: write e.g. 0, 10 or 99%"))?;
    Ok(Threshold::Number(n))
}

fn percent(s: &str) -> Result<f64, String> {
    s.trim()
        .strip_suffix('%')
        .and_then(|p| p.trim().parse::<f64>().ok())
        .filter(|p| p.is_finite() && *p >= 0.0)
        .ok_or_else(|| format!("'{s}' is not a percentage: write e.g. 99%"))
}

/// What was measured for one check.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    /// The figure (latencies in ms); None: not measured.
    pub value: Option<f64>,
    /// What its own percentage is of (desired devices, scheduled rate, expected messages,
    /// commands sent).
    pub base: Option<f64>,
    /// The other figure of `N% of FIGURE`.
    pub other: Option<f64>,
    /// Why it was not measured.
    pub missing: Option<String>,
}

/// A check's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    /// The number compared (None: not measured).
    pub value: Option<f64>,
    /// The value as shown.
    pub shown: String,
    /// The limit as shown.
    pub limit: String,
    /// Whether it passed.
    pub passed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(value: f64, base: Option<f64>, other: Option<f64>) -> Measured {
        Measured {
            value: Some(value),
            base,
            other,
            missing: None,
        }
    }

    #[test]
    fn checks_read_as_written() {
        let c = Check::parse("p99 < 200ms").expect("ok");
        assert_eq!(
            (c.figure.clone(), c.op, c.threshold.clone()),
            (
                Figure::ProbeLatency(Pct::P99),
                Op::Lt,
                Threshold::Millis(200.0)
            )
        );
        assert!(c.judge(&m(150.0, None, None)).passed);
        assert!(!c.judge(&m(250.0, None, None)).passed);
        let c = Check::parse("loss <= 0.1%").expect("ok");
        assert!(c.judge(&m(1.0, Some(10_000.0), None)).passed);
        assert!(!c.judge(&m(11.0, Some(10_000.0), None)).passed);
        let c = Check::parse("rate >= 99% of scheduled").expect("ok");
        assert_eq!(c.threshold, Threshold::PercentOf(99.0, Figure::Scheduled));
        assert!(c.judge(&m(995.0, None, Some(1000.0))).passed);
        assert!(!c.judge(&m(900.0, None, Some(1000.0))).passed);
        let c = Check::parse("connected >= 99%").expect("ok");
        assert!(c.judge(&m(100.0, Some(100.0), None)).passed);
        assert!(!c.judge(&m(98.0, Some(100.0), None)).passed);
        assert_eq!(
            Check::parse("no shard_fenced").expect("ok").figure,
            Figure::Events("shard_fenced".into())
        );
        assert_eq!(
            Check::parse("ack p99 < 1s").expect("ok").threshold,
            Threshold::Millis(1000.0)
        );
        assert_eq!(
            Check::parse("probe p50 <= 5ms").expect("ok").figure,
            Figure::ProbeLatency(Pct::P50)
        );
        assert_eq!(
            Check::parse("connect_failures == 0").expect("ok").op,
            Op::Eq
        );
        assert_eq!(
            Check::parse("all devices active").expect("ok").figure,
            Figure::Active
        );
        // Not measured fails, and says why.
        let j = Check::parse("p99 < 1s").expect("ok").judge(&Measured {
            missing: Some("no message".into()),
            ..Default::default()
        });
        assert!(!j.passed && j.shown == "no message");
    }

    #[test]
    fn bad_checks_say_what_to_write() {
        for (bad, says) in [
            ("p99 200ms", "no comparison"),
            ("latency < 2ms", "unknown figure"),
            ("p99 < fast", "not a duration"),
            ("errors < 1%", "no percentage"),
            ("errors < lots", "not a number"),
            ("< 3", "name a figure"),
            ("no Shard-Fenced!", "not an event kind"),
        ] {
            let e = Check::parse(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
