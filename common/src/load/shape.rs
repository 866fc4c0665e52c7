//! The shapes themselves: pure functions of time (and, for bursts, a seed).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::SpecError;

/// A k6-style stage: move linearly to `target` over `duration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Value at the end of the stage.
    pub target: f64,
    /// Length of the stage.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

/// A shape over time. Values are absolute (devices, or msg/s) except the wave's `min` and
/// `max`, which are fractions of the maximum. Written as a one-key map in every format
/// (`{ramp: {over: 60s}}`), or with a YAML tag (`!ramp {over: 60s}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "snake_case", deny_unknown_fields)]
pub enum Shape {
    /// Linear from `from` to `to` (default: the maximum) over `over`, then flat.
    Ramp {
        /// End value (default: the maximum).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<f64>,
        /// Ramp length.
        #[serde(with = "humantime_serde")]
        over: Duration,
        /// Start value.
        #[serde(default)]
        from: f64,
    },
    /// `step` more every `every`, up to the maximum.
    Stairs {
        /// Size of a step.
        step: f64,
        /// Length of a step.
        #[serde(with = "humantime_serde")]
        every: Duration,
    },
    /// Sinusoidal between `min` and `max` (fractions of the maximum), starting at `min`.
    Wave {
        /// Length of one cycle.
        #[serde(with = "humantime_serde")]
        period: Duration,
        /// Lowest fraction, 0..=1.
        min: f64,
        /// Highest fraction, min..=1.
        max: f64,
    },
    /// Bursts of `size` arrive at Poisson-spread times (mean gap `every`), each lasting
    /// `hold`; `base` is always on. The burst times come from the fleet's seed.
    Bursts {
        /// Mean time between two bursts.
        #[serde(with = "humantime_serde")]
        every: Duration,
        /// Size of one burst.
        size: f64,
        /// How long a burst lasts.
        #[serde(with = "humantime_serde")]
        hold: Duration,
        /// Always on.
        #[serde(default)]
        base: f64,
    },
    /// Linear moves from one target to the next, starting at 0; the last target holds.
    Stages(Vec<Stage>),
}

crate::one_of_enum!(Shape, "a load shape");

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// A uniform number in [0, 1) from a seed and a counter (SplitMix64).
fn unit(seed: u64, k: u64) -> f64 {
    let mut x = seed ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

impl Shape {
    /// The value at `t` seconds into the shape, for a maximum of `max`, clamped to
    /// `0..=max`.
    pub fn value(&self, t: f64, max: f64, seed: u64) -> f64 {
        let v = match self {
            Shape::Ramp { to, over, from } => {
                let to = to.unwrap_or(max);
                let f = if over.is_zero() {
                    1.0
                } else {
                    (t / secs(*over)).clamp(0.0, 1.0)
                };
                from + (to - from) * f
            }
            Shape::Stairs { step, every } => step * ((t / secs(*every).max(1e-9)).floor() + 1.0),
            Shape::Wave {
                period,
                min,
                max: hi,
            } => {
                let phase = (t / secs(*period).max(1e-9)) * std::f64::consts::TAU;
                max * (min + (hi - min) * (1.0 - phase.cos()) / 2.0)
            }
            Shape::Bursts {
                every,
                size,
                hold,
                base,
            } => {
                // Burst k starts at the sum of k+1 exponential gaps; count those active at t.
                let (mean, hold) = (secs(*every).max(1e-3), secs(*hold));
                let (mut start, mut active, mut k) = (0.0, 0.0, 0u64);
                loop {
                    start += -mean * (1.0 - unit(seed, k)).ln();
                    if start > t {
                        break;
                    }
                    if start + hold > t {
                        active += 1.0;
                    }
                    k += 1;
                }
                base + size * active
            }
            Shape::Stages(stages) => {
                let (mut at, mut prev) = (0.0, 0.0);
                let mut v = stages.last().map(|s| s.target).unwrap_or(0.0);
                for s in stages {
                    let d = secs(s.duration);
                    if t < at + d {
                        v = prev + (s.target - prev) * if d > 0.0 { (t - at) / d } else { 1.0 };
                        break;
                    }
                    at += d;
                    prev = s.target;
                }
                v
            }
        };
        v.clamp(0.0, max)
    }

    /// The value the shape holds from `t` on, if it no longer moves: a ramp or stages past
    /// their end, stairs at the maximum. Waves and bursts never settle.
    pub fn settled(&self, t: f64, max: f64, seed: u64) -> Option<f64> {
        let done = match self {
            Shape::Ramp { over, .. } => t >= secs(*over),
            Shape::Stages(stages) => t >= stages.iter().map(|s| secs(s.duration)).sum::<f64>(),
            Shape::Stairs { .. } => self.value(t, max, seed) >= max,
            Shape::Wave { .. } | Shape::Bursts { .. } => false,
        };
        done.then(|| self.value(t, max, seed))
    }

    /// Seconds after which the shape holds its value for good, for a maximum of `max`
    /// (a bound: it may settle earlier): a ramp's or stages' end, the step at which stairs
    /// reach the maximum. `None` for waves and bursts, which never settle.
    pub fn settles_after(&self, max: f64) -> Option<f64> {
        match self {
            Shape::Ramp { over, .. } => Some(secs(*over)),
            Shape::Stages(stages) => Some(stages.iter().map(|s| secs(s.duration)).sum()),
            Shape::Stairs { step, every } => {
                let steps = if *step > 0.0 {
                    (max / step).ceil().max(0.0)
                } else {
                    return None;
                };
                Some(steps * secs(*every))
            }
            Shape::Wave { .. } | Shape::Bursts { .. } => None,
        }
    }

    /// A wave's period.
    pub fn period(&self) -> Option<Duration> {
        match self {
            Shape::Wave { period, .. } => Some(*period),
            _ => None,
        }
    }

    /// For bursts: (size, hold in s, base) and the start times of the bursts in order, in
    /// seconds, computed exactly as [`Shape::value`] does.
    pub fn bursts(&self, seed: u64) -> Option<((f64, f64, f64), impl Iterator<Item = f64>)> {
        let Shape::Bursts {
            every,
            size,
            hold,
            base,
        } = self
        else {
            return None;
        };
        let mean = secs(*every).max(1e-3);
        let starts = (0u64..).scan(0.0f64, move |start, k| {
            *start += -mean * (1.0 - unit(seed, k)).ln();
            Some(*start)
        });
        Some(((*size, secs(*hold), *base), starts))
    }

    /// A shape that holds `v` (a settled shape carried into a new load).
    pub fn constant(v: f64) -> Self {
        Shape::Ramp {
            to: Some(v),
            over: Duration::from_secs(1),
            from: v,
        }
    }

    /// Where the shape is at `t`, in words (for status and watch).
    pub fn phase(&self, t: f64) -> String {
        match self {
            Shape::Ramp { over, .. } if t < secs(*over) => {
                format!("ramp {:.0}%", 100.0 * t / secs(*over))
            }
            Shape::Ramp { .. } => "ramp done".into(),
            Shape::Stairs { every, .. } => {
                format!("stair {}", (t / secs(*every).max(1e-9)).floor() as u64 + 1)
            }
            Shape::Wave { period, .. } => {
                format!("wave {:.0}%", 100.0 * (t / secs(*period).max(1e-9)).fract())
            }
            Shape::Bursts { .. } => "bursts".into(),
            Shape::Stages(stages) => {
                let mut at = 0.0;
                for (i, s) in stages.iter().enumerate() {
                    at += secs(s.duration);
                    if t < at {
                        return format!("stage {}/{}", i + 1, stages.len());
                    }
                }
                "stages done".into()
            }
        }
    }

    /// Checks the shape; `field` names it in errors.
    pub fn validate(&self, field: &str, max: f64) -> Result<(), SpecError> {
        let positive = |name: &str, d: &Duration| {
            if d.is_zero() {
                Err(SpecError::new(
                    format!("{field}.{name}"),
                    "must be longer than 0, e.g. 30s",
                ))
            } else {
                Ok(())
            }
        };
        let non_negative = |name: &str, v: f64| {
            if !v.is_finite() || v < 0.0 {
                Err(SpecError::new(
                    format!("{field}.{name}"),
                    format!("{v} must be a number >= 0"),
                ))
            } else {
                Ok(())
            }
        };
        match self {
            Shape::Ramp { to, over, from } => {
                positive("over", over)?;
                non_negative("from", *from)?;
                if let Some(to) = to {
                    non_negative("to", *to)?;
                    if *to > max {
                        return Err(SpecError::new(format!("{field}.to"), format!("{to} is above the maximum of {max}: lower it or raise the count/rate")));
                    }
                }
            }
            Shape::Stairs { step, every } => {
                positive("every", every)?;
                if !(step.is_finite() && *step > 0.0) {
                    return Err(SpecError::new(
                        format!("{field}.step"),
                        "must be more than 0",
                    ));
                }
            }
            Shape::Wave {
                period,
                min,
                max: hi,
            } => {
                positive("period", period)?;
                for (n, v) in [("min", min), ("max", hi)] {
                    if !(0.0..=1.0).contains(v) {
                        return Err(SpecError::new(
                            format!("{field}.{n}"),
                            format!("{v} is not a fraction: use 0 to 1, e.g. min=0.2,max=1.0"),
                        ));
                    }
                }
                if hi < min {
                    return Err(SpecError::new(
                        format!("{field}.max"),
                        format!("{hi} is below min {min}: swap them"),
                    ));
                }
            }
            Shape::Bursts {
                every,
                size,
                hold,
                base,
            } => {
                positive("every", every)?;
                positive("hold", hold)?;
                non_negative("size", *size)?;
                non_negative("base", *base)?;
            }
            Shape::Stages(stages) => {
                if stages.is_empty() {
                    return Err(SpecError::new(
                        field,
                        "give at least one stage, e.g. 1000:60s",
                    ));
                }
                for (i, s) in stages.iter().enumerate() {
                    positive(&format!("[{i}].duration"), &s.duration)?;
                    non_negative(&format!("[{i}].target"), s.target)?;
                }
            }
        }
        Ok(())
    }
}
