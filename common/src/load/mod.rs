//! Load shapes: how devices come online (arrival) and how fast a fleet sends (rate),
//! both as pure functions of the time since the load was set. Every agent evaluates the
//! same functions, so shares follow failover and rebalance by themselves.
//!
//! - **Arrival** gives the number of active devices: devices with an index below it run,
//!   the others wait (lowest indices first).
//! - **Rate** gives a fleet-wide target in msg/s (open model), shared by the active
//!   devices: each sends at `target / active`, capped by `max_device_rate`.
//!
//! Shapes: `ramp` (linear to a value over a time), `stairs` (steps of a size every so
//! often), `wave` (sinusoidal between min and max fractions, with a period), `bursts`
//! (Poisson-timed bursts that hold, then end) and `stages` (k6-style list of targets,
//! linear in between).

use serde::{Deserialize, Serialize};

use crate::SpecError;

mod pace;
mod shape;
#[cfg(test)]
mod tests;

pub use pace::Pace;
pub use shape::{Shape, Stage};
/// The default cap on one device's rate.
pub const DEFAULT_MAX_DEVICE_RATE: f64 = 1000.0;

/// A fleet's load: arrival and/or rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    /// How devices come online (default: all at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrival: Option<Shape>,
    /// A fleet-wide message rate (default: each device at its own interval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateSpec>,
    /// The most msg/s one device may send.
    #[serde(default = "default_cap")]
    pub max_device_rate: f64,
}

fn default_cap() -> f64 {
    DEFAULT_MAX_DEVICE_RATE
}

/// A fleet-wide message rate, optionally shaped over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSpec {
    /// Messages per second across the fleet (the shape's maximum).
    pub target: f64,
    /// How the rate moves over time (default: constant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<Shape>,
}

impl LoadSpec {
    /// Active devices at `t` seconds after the load was set, out of `count`.
    pub fn active(&self, t: f64, count: u64, seed: u64) -> u64 {
        match &self.arrival {
            None => count,
            Some(s) => (s.value(t, count as f64, seed).floor() as u64).min(count),
        }
    }

    /// The fleet-wide target rate at `t`, if the load sets one.
    pub fn rate(&self, t: f64, seed: u64) -> Option<f64> {
        let r = self.rate.as_ref()?;
        Some(match &r.shape {
            None => r.target,
            Some(s) => s.value(t, r.target, seed),
        })
    }

    /// Slots per second each active device runs at `t` (rate mode), capped.
    pub fn device_rate(&self, t: f64, count: u64, seed: u64) -> Option<f64> {
        let r = self.rate(t, seed)?;
        let active = self.active(t, count, seed).max(1) as f64;
        Some((r / active).min(self.max_device_rate))
    }

    /// The current target and phase, in words.
    pub fn describe(&self, t: f64, count: u64, seed: u64) -> String {
        let mut parts = Vec::new();
        if let Some(a) = &self.arrival {
            parts.push(format!(
                "{} of {count} devices ({})",
                self.active(t, count, seed),
                a.phase(t)
            ));
        }
        if let (Some(r), Some(spec)) = (self.rate(t, seed), &self.rate) {
            let phase = spec
                .shape
                .as_ref()
                .map(|s| format!(" ({})", s.phase(t)))
                .unwrap_or_default();
            parts.push(format!("{r:.0} msg/s{phase}"));
        }
        parts.join(", ")
    }

    /// Checks the shapes and that the rate fits the per-device cap when every device runs.
    pub fn validate(&self, count: u64) -> Result<(), SpecError> {
        if !(self.max_device_rate.is_finite() && self.max_device_rate > 0.0) {
            return Err(SpecError::new(
                "load.max_device_rate",
                "must be more than 0 (msg/s per device)",
            ));
        }
        if let Some(a) = &self.arrival {
            a.validate("load.arrival", count as f64)?;
        }
        if let Some(r) = &self.rate {
            if !(r.target.is_finite() && r.target > 0.0) {
                return Err(SpecError::new(
                    "load.rate.target",
                    "must be more than 0 msg/s, e.g. --rate 20000/s",
                ));
            }
            if let Some(s) = &r.shape {
                s.validate("load.rate.shape", r.target)?;
            }
            let full = r.target / count.max(1) as f64;
            if full > self.max_device_rate {
                return Err(SpecError::new(
                    "load.rate.target",
                    format!(
                        "{} msg/s over {count} devices needs {full:.0} msg/s per device, above the cap of {} (load.max_device_rate): add devices or lower the rate",
                        r.target, self.max_device_rate
                    ),
                ));
            }
            // Early phases with few devices on are capped at run time, not refused: the
            // shortfall shows as scheduled vs achieved.
        }
        Ok(())
    }
}
