//! Φ, the integral of the per-device rate: what makes a fleet-wide rate the same `seq`
//! on every agent.

use super::LoadSpec;

/// Grid step of Φ's integral, in ms.
const STEP_MS: u64 = 100;
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
mod pace_tests {
    use std::time::Duration;

    use super::*;
    use crate::load::{RateSpec, Shape};

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
