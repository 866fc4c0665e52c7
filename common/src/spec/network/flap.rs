//! Connection-level faults: what a device's connection does while it is cut off
//! ([`LinkMode`]), and flapping ([`FlapSpec`]): a per-device up/down cycle with uptime and
//! downtime drawn from distributions, or a chance per minute of losing the connection.

use serde::{Deserialize, Serialize};

use super::{probability, OfflineSpec};
use crate::SpecError;

/// Longest mean or deviation of an uptime or downtime.
pub const MAX_CYCLE_MS: i64 = 86_400_000;
/// Shortest uptime or downtime drawn (a draw below it is raised to it).
pub const MIN_CYCLE_MS: u64 = 10;

/// What happens to a device's own connection (sinks with one connection per device: mqtt)
/// while it is offline. Sinks that share a connection (nats, http) only buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkMode {
    /// The socket is closed without DISCONNECT (the broker sees the loss and publishes
    /// the will); the device retries with its reconnect backoff, and those attempts fail
    /// until the network is back.
    #[default]
    Close,
    /// The socket stays open but silent: nothing is read, written or pinged, so the broker
    /// expires it after 1.5 × keepalive. When the network is back the device pings; if
    /// the broker dropped it, it reconnects.
    Stall,
    /// The connection stays up: only messages are held back (message layer only).
    Keep,
}

/// A duration drawn from a normal distribution: `{mean: 20s, deviation: 5s}` (never below
/// 10 ms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurationDist {
    /// Mean (above 0).
    #[serde(with = "super::signed_ms")]
    pub mean: i64,
    /// Standard deviation (0: always the mean).
    #[serde(default, with = "super::signed_ms", skip_serializing_if = "is_zero")]
    pub deviation: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl DurationDist {
    /// `mean` ± `deviation`, in milliseconds.
    pub fn ms(mean: i64, deviation: i64) -> Self {
        Self { mean, deviation }
    }

    fn validate(&self, prefix: &str) -> Result<(), SpecError> {
        if self.mean <= 0 {
            return Err(SpecError::new(
                format!("{prefix}.mean"),
                format!(
                    "{} ms is not a duration to wait: use a positive mean, e.g. 20s",
                    self.mean
                ),
            ));
        }
        if self.deviation < 0 {
            return Err(SpecError::new(
                format!("{prefix}.deviation"),
                format!(
                    "{} ms is negative: use 0 (always the mean) or a positive deviation, e.g. 5s",
                    self.deviation
                ),
            ));
        }
        for (n, v) in [("mean", self.mean), ("deviation", self.deviation)] {
            if v > MAX_CYCLE_MS {
                return Err(SpecError::new(
                    format!("{prefix}.{n}"),
                    "is longer than the limit of a day",
                ));
            }
        }
        Ok(())
    }
}

/// Flapping: each device's connection goes down and comes back, over and over. Uptimes
/// come from `uptime`, or, with `per_minute`, from an exponential distribution such that
/// a connected device loses its connection within a minute with that probability;
/// downtimes come from `downtime`. While down, the device is offline as `offline` says
/// (buffer, drop policy, flush rate, and what its connection does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlapSpec {
    /// How long a device stays up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime: Option<DurationDist>,
    /// Instead of `uptime`: the probability (0 to 1, below 1) that an up device goes down
    /// within a minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_minute: Option<f64>,
    /// How long a device stays down.
    pub downtime: DurationDist,
    /// While down: buffer, drop policy, flush rate and link mode [default: buffer 1000,
    /// drop oldest, flush at once, link close].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline: Option<OfflineSpec>,
}

impl FlapSpec {
    /// True when devices never go down.
    pub fn is_off(&self) -> bool {
        self.uptime.is_none() && self.per_minute == Some(0.0)
    }

    /// Mean uptime in ms.
    pub fn mean_uptime_ms(&self) -> f64 {
        match (&self.uptime, self.per_minute) {
            (Some(u), _) => u.mean as f64,
            (None, Some(p)) if p > 0.0 => 60_000.0 / -(1.0 - p).ln(),
            _ => f64::INFINITY,
        }
    }

    pub(super) fn validate(&self, prefix: &str) -> Result<(), SpecError> {
        match (&self.uptime, self.per_minute) {
            (Some(_), Some(_)) => {
                return Err(SpecError::new(
                    prefix,
                    "give uptime or per_minute, not both",
                ))
            }
            (None, None) => {
                return Err(SpecError::new(
                    format!("{prefix}.uptime"),
                    "missing: give uptime: {mean: 60s, deviation: 20s} or per_minute: 0.5",
                ))
            }
            (Some(u), None) => u.validate(&format!("{prefix}.uptime"))?,
            (None, Some(p)) => {
                let f = format!("{prefix}.per_minute");
                probability(&f, p)?;
                if p >= 1.0 {
                    return Err(SpecError::new(
                        f,
                        "must be below 1 (a device that is always down: use offline instead)",
                    ));
                }
            }
        }
        self.downtime.validate(&format!("{prefix}.downtime"))?;
        if let Some(o) = &self.offline {
            super::validate_offline(&format!("{prefix}.offline"), o)?;
        }
        Ok(())
    }
}
