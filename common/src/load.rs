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

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::SpecError;

/// Grid step of Φ's integral, in ms.
const STEP_MS: u64 = 100;

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
/// `max`, which are fractions of the maximum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
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

/// The pace of a fleet with a fleet-wide rate (open model): Φ(t), the number of slots
/// each active device has had since the load started, is the integral of the per-device
/// rate over a fixed 100 ms grid. Every agent (and pluribusctl) integrates the same
/// function on the same grid, so a device's slot `k` (sent when Φ reaches `k + phase`) is
/// the same `seq` whichever agent runs it, after failover too.
/// This is a cursor over Φ: it moves forward only.
#[derive(Debug, Clone)]
pub struct Pace {
    load: LoadSpec,
    origin_ms: u64,
    count: u64,
    seed: u64,
    cursor_ms: u64,
    phi: f64,
}

impl Pace {
    /// Φ for a load that started at `origin_ms`, over `count` devices.
    pub fn new(load: LoadSpec, origin_ms: u64, count: u64, seed: u64) -> Self {
        Self {
            load,
            origin_ms,
            count,
            seed,
            cursor_ms: origin_ms,
            phi: 0.0,
        }
    }

    /// Slots per second per active device at `t_ms`.
    pub fn rate_at(&self, t_ms: u64) -> f64 {
        let t = t_ms.saturating_sub(self.origin_ms) as f64 / 1000.0;
        self.load
            .device_rate(t, self.count, self.seed)
            .unwrap_or(0.0)
    }

    /// Φ at `now_ms` (0 before the origin).
    pub fn phi(&mut self, now_ms: u64) -> f64 {
        while self.cursor_ms + STEP_MS <= now_ms {
            self.phi += self.rate_at(self.cursor_ms) * STEP_MS as f64 / 1000.0;
            self.cursor_ms += STEP_MS;
        }
        if now_ms <= self.cursor_ms {
            return self.phi;
        }
        self.phi + self.rate_at(self.cursor_ms) * (now_ms - self.cursor_ms) as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn ramp_stairs_wave_and_stages_follow_their_definitions() {
        let ramp = Shape::Ramp {
            to: Some(1000.0),
            over: d(60),
            from: 0.0,
        };
        assert_eq!(ramp.value(30.0, 2000.0, 0), 500.0);
        assert_eq!(ramp.value(90.0, 2000.0, 0), 1000.0);
        let stairs = Shape::Stairs {
            step: 100.0,
            every: d(10),
        };
        assert_eq!(stairs.value(0.0, 1000.0, 0), 100.0);
        assert_eq!(stairs.value(25.0, 1000.0, 0), 300.0);
        assert_eq!(stairs.value(1e6, 1000.0, 0), 1000.0);
        let wave = Shape::Wave {
            period: d(60),
            min: 0.2,
            max: 1.0,
        };
        assert!((wave.value(0.0, 100.0, 0) - 20.0).abs() < 1e-9);
        assert!((wave.value(30.0, 100.0, 0) - 100.0).abs() < 1e-9);
        assert!((wave.value(15.0, 100.0, 0) - 60.0).abs() < 1e-9);
        let stages = Shape::Stages(vec![
            Stage {
                target: 1000.0,
                duration: d(60),
            },
            Stage {
                target: 5000.0,
                duration: d(120),
            },
            Stage {
                target: 0.0,
                duration: d(30),
            },
        ]);
        assert_eq!(stages.value(30.0, 1e9, 0), 500.0);
        assert_eq!(stages.value(120.0, 1e9, 0), 3000.0);
        assert_eq!(stages.value(195.0, 1e9, 0), 2500.0);
        assert_eq!(stages.value(500.0, 1e9, 0), 0.0);
    }

    #[test]
    fn bursts_are_poisson_spread_and_repeatable() {
        let b = Shape::Bursts {
            every: d(10),
            size: 50.0,
            hold: d(5),
            base: 10.0,
        };
        let series: Vec<f64> = (0..10_000)
            .map(|i| b.value(i as f64 * 0.1, 1e9, 7))
            .collect();
        assert_eq!(
            series,
            (0..10_000)
                .map(|i| b.value(i as f64 * 0.1, 1e9, 7))
                .collect::<Vec<_>>()
        );
        let on = series.iter().filter(|&&v| v > 10.0).count() as f64 / series.len() as f64;
        // Mean gap 10 s and hold 5 s: some burst is on about 1 - e^-0.5 = 39% of the time.
        assert!((0.25..0.55).contains(&on), "{on}");
        assert!(series
            .iter()
            .all(|&v| v >= 10.0 && (v - 10.0) % 50.0 == 0.0));
    }

    #[test]
    fn impossible_shapes_are_refused_with_the_field() {
        let bad =
            |l: LoadSpec, field: &str| assert_eq!(l.validate(100).expect_err("bad").field, field);
        let base = LoadSpec {
            arrival: None,
            rate: None,
            max_device_rate: 1000.0,
        };
        bad(
            LoadSpec {
                arrival: Some(Shape::Wave {
                    period: d(10),
                    min: 0.8,
                    max: 0.2,
                }),
                ..base.clone()
            },
            "load.arrival.max",
        );
        bad(
            LoadSpec {
                arrival: Some(Shape::Ramp {
                    to: None,
                    over: Duration::ZERO,
                    from: 0.0,
                }),
                ..base.clone()
            },
            "load.arrival.over",
        );
        bad(
            LoadSpec {
                arrival: Some(Shape::Ramp {
                    to: Some(500.0),
                    over: d(1),
                    from: 0.0,
                }),
                ..base.clone()
            },
            "load.arrival.to",
        );
        bad(
            LoadSpec {
                rate: Some(RateSpec {
                    target: 200_000.0,
                    shape: None,
                }),
                ..base.clone()
            },
            "load.rate.target",
        );
        bad(
            LoadSpec {
                rate: Some(RateSpec {
                    target: -1.0,
                    shape: None,
                }),
                ..base.clone()
            },
            "load.rate.target",
        );
        bad(
            LoadSpec {
                arrival: Some(Shape::Stages(vec![])),
                ..base.clone()
            },
            "load.arrival",
        );
        let ok = LoadSpec {
            rate: Some(RateSpec {
                target: 20_000.0,
                shape: Some(Shape::Wave {
                    period: d(60),
                    min: 0.2,
                    max: 1.0,
                }),
            }),
            ..base
        };
        ok.validate(100)
            .expect("20k msg/s over 100 devices is 200 each");
        assert_eq!(ok.device_rate(0.0, 100, 0), Some(40.0));
    }

    #[test]
    fn the_rate_is_shared_by_active_devices_and_capped() {
        let l = LoadSpec {
            arrival: Some(Shape::Ramp {
                to: None,
                over: d(10),
                from: 0.0,
            }),
            rate: Some(RateSpec {
                target: 1000.0,
                shape: None,
            }),
            max_device_rate: 50.0,
        };
        assert_eq!(l.active(5.0, 100, 0), 50);
        assert_eq!(l.device_rate(5.0, 100, 0), Some(20.0));
        assert_eq!(
            l.device_rate(0.1, 100, 0),
            Some(50.0),
            "capped while few devices are on"
        );
        assert!(l.describe(5.0, 100, 0).contains("50 of 100 devices"));
    }
}

#[cfg(test)]
mod pace_tests {
    use super::*;

    fn load(shape: Option<Shape>) -> LoadSpec {
        LoadSpec {
            arrival: None,
            rate: Some(RateSpec {
                target: 1000.0,
                shape,
            }),
            max_device_rate: 1000.0,
        }
    }

    #[test]
    fn a_constant_rate_integrates_exactly() {
        let mut p = Pace::new(load(None), 10_000, 100, 0);
        assert_eq!(p.phi(5_000), 0.0);
        assert!((p.phi(20_000) - 100.0).abs() < 1e-9, "10 s at 10 slots/s");
        assert!((p.phi(20_050) - 100.5).abs() < 1e-9);
    }

    #[test]
    fn two_cursors_agree_whatever_path_they_take() {
        let shape = Some(Shape::Wave {
            period: Duration::from_secs(7),
            min: 0.1,
            max: 1.0,
        });
        let mut a = Pace::new(load(shape.clone()), 0, 10, 3);
        let mut b = Pace::new(load(shape), 0, 10, 3);
        for t in (0..60_000).step_by(37) {
            a.phi(t);
        }
        assert_eq!(a.phi(60_000), b.phi(60_000));
    }
}
