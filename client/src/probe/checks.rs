//! Pass/fail limits on what a probe saw (`--max-loss 0.1%`, `--max-p99 250ms`, ...), so a
//! script or a CI job can tell a good run from a bad one by the exit status.

use std::time::Duration;

use serde::Serialize;

use super::summary::Summary;

/// The exit status of `probe` when a check fails (1 is any other error).
pub const CHECKS_FAILED_EXIT: u8 = 3;

/// Limits a probe's summary must keep.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Checks (exit status 3 when one fails)")]
pub struct Limits {
    /// Most messages lost: a count (10) or a share of the messages expected (0.1%).
    #[arg(long, value_name = "N|P%", value_parser = parse_loss)]
    pub max_loss: Option<LossLimit>,
    /// Highest p99 end-to-end latency, e.g. 250ms.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub max_p99: Option<Duration>,
    /// Most messages received more than once.
    #[arg(long, value_name = "N")]
    pub max_duplicates: Option<u64>,
    /// Most messages received out of order.
    #[arg(long, value_name = "N")]
    pub max_out_of_order: Option<u64>,
    /// Fewest messages received (catches a probe that heard nothing).
    #[arg(long, value_name = "N")]
    pub min_received: Option<u64>,
}

/// `--max-loss`: a count or a percentage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LossLimit {
    /// At most this many messages.
    Count(u64),
    /// At most this share of the expected messages, in percent.
    Percent(f64),
}

fn parse_loss(s: &str) -> Result<LossLimit, String> {
    let bad = || format!("'{s}' is not a loss limit: give a count (10) or a percentage (0.1%)");
    match s.trim().strip_suffix('%') {
        Some(p) => match p.trim().parse::<f64>() {
            Ok(v) if (0.0..=100.0).contains(&v) => Ok(LossLimit::Percent(v)),
            _ => Err(bad()),
        },
        None => s.trim().parse().map(LossLimit::Count).map_err(|_| bad()),
    }
}

/// One check and how it went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// The flag, e.g. `max_loss`.
    pub name: &'static str,
    /// The limit, as given.
    pub limit: String,
    /// What the probe saw.
    pub value: String,
    /// Whether the value keeps the limit.
    pub passed: bool,
}

impl Limits {
    /// Every limit given, checked against `s`.
    pub fn evaluate(&self, s: &Summary) -> Vec<Check> {
        let mut out = Vec::new();
        let mut check = |name, limit: String, value: String, passed| {
            out.push(Check {
                name,
                limit,
                value,
                passed,
            })
        };
        match self.max_loss {
            Some(LossLimit::Count(n)) => check(
                "max_loss",
                n.to_string(),
                s.counts.lost.to_string(),
                s.counts.lost <= n,
            ),
            Some(LossLimit::Percent(p)) => check(
                "max_loss",
                format!("{p}%"),
                format!("{:.4}%", s.loss_pct),
                s.loss_pct <= p,
            ),
            None => {}
        }
        if let Some(d) = self.max_p99 {
            let limit_ms = d.as_secs_f64() * 1000.0;
            let seen = s.latency_ms.count > 0;
            check(
                "max_p99",
                humantime::format_duration(d).to_string(),
                if seen {
                    format!("{:.3}ms", s.latency_ms.p99)
                } else {
                    "no latency measured".into()
                },
                seen && s.latency_ms.p99 <= limit_ms,
            );
        }
        let mut at_most = |name, limit: Option<u64>, value: u64| {
            if let Some(n) = limit {
                check(name, n.to_string(), value.to_string(), value <= n);
            }
        };
        at_most("max_duplicates", self.max_duplicates, s.counts.duplicates);
        at_most(
            "max_out_of_order",
            self.max_out_of_order,
            s.counts.out_of_order,
        );
        if let Some(n) = self.min_received {
            check(
                "min_received",
                n.to_string(),
                s.counts.received.to_string(),
                s.counts.received >= n,
            );
        }
        out
    }
}

/// The checks, as lines for the terminal.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let verdict = if c.passed { "pass" } else { "FAIL" };
        out.push_str(&format!(
            "{verdict}  {}: {} (limit {})\n",
            c.name, c.value, c.limit
        ));
    }
    out
}

/// Returned (as the error) when a check failed, after the report is printed.
#[derive(Debug, thiserror::Error)]
#[error("probe checks failed: {0}")]
pub struct ChecksFailed(pub String);

/// `Err(ChecksFailed)` naming the failed checks, if any.
pub fn verdict(checks: &[Check]) -> Result<(), ChecksFailed> {
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("{} {} (limit {})", c.name, c.value, c.limit))
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(ChecksFailed(failed.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_limits_parse_as_counts_or_percentages() {
        assert_eq!(parse_loss("10"), Ok(LossLimit::Count(10)));
        assert_eq!(parse_loss("0.5%"), Ok(LossLimit::Percent(0.5)));
        for bad in ["", "-1", "ten", "101%", "x%"] {
            let e = parse_loss(bad).expect_err(bad);
            assert!(e.contains("0.1%"), "{e}");
        }
    }
}
