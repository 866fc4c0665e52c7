//! Latency: a fixed delay plus jitter (uniform, normal or pareto), optionally correlated
//! with the previous message's jitter.

use pluribus_common::spec::network::{Distribution, LatencySpec, MAX_DELAY};

use super::{rng::Rng, DevState, Impairment, Msg};

/// Shape of the pareto jitter (a heavy tail with a finite mean).
const PARETO_SHAPE: f64 = 1.5;

/// Delays messages.
#[derive(Debug)]
pub struct Latency {
    delay_us: f64,
    jitter_us: f64,
    distribution: Distribution,
    correlation: f64,
}

impl Latency {
    /// From its spec.
    pub fn new(s: &LatencySpec) -> Self {
        Self {
            delay_us: s.delay.as_micros() as f64,
            jitter_us: s.jitter.as_micros() as f64,
            distribution: s.distribution,
            correlation: s.correlation,
        }
    }

    /// One jitter draw (µs, may be negative), before correlation.
    fn draw(&self, rng: &mut Rng) -> f64 {
        let j = self.jitter_us;
        match self.distribution {
            Distribution::Uniform => (rng.unit() * 2.0 - 1.0) * j,
            Distribution::Normal => rng.normal() * j,
            Distribution::Pareto => {
                // Mean xm·a/(a-1) - xm = j  →  xm = j·(a-1).
                let xm = j * (PARETO_SHAPE - 1.0);
                let u = rng.unit().max(1e-12);
                xm * (u.powf(-1.0 / PARETO_SHAPE) - 1.0)
            }
        }
    }
}

impl Impairment for Latency {
    fn apply(&self, msg: &mut Msg, dev: &mut DevState, rng: &mut Rng) {
        let mut jitter = if self.jitter_us > 0.0 {
            self.draw(rng)
        } else {
            0.0
        };
        if self.correlation > 0.0 {
            jitter = self.correlation * dev.last_jitter_us + (1.0 - self.correlation) * jitter;
            dev.last_jitter_us = jitter;
        }
        let us = (self.delay_us + jitter).clamp(0.0, MAX_DELAY.as_micros() as f64);
        msg.delay_us += us as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::Duration;

    fn mean_and_sd(d: Distribution) -> (f64, f64) {
        let l = Latency::new(&LatencySpec {
            delay: Duration::from_millis(200),
            jitter: Duration::from_millis(50),
            distribution: d,
            correlation: 0.0,
        });
        let mut dev = DevState::default();
        let v: Vec<f64> = (0..20_000u64)
            .map(|seq| {
                let mut m = Msg {
                    payload: Bytes::new(),
                    now_us: 0,
                    delay_us: 0,
                    throttle_us: 0,
                    dropped: false,
                    duplicated: false,
                    hold: 0,
                    corrupted: false,
                };
                l.apply(&mut m, &mut dev, &mut Rng::for_message(3, seq));
                m.delay_us as f64 / 1000.0
            })
            .collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
        (mean, var.sqrt())
    }

    #[test]
    fn distributions_have_the_asked_mean_and_spread() {
        let (m, sd) = mean_and_sd(Distribution::Normal);
        assert!(
            (m - 200.0).abs() < 2.0 && (sd - 50.0).abs() < 2.0,
            "{m} {sd}"
        );
        let (m, sd) = mean_and_sd(Distribution::Uniform);
        // Uniform over ±50 ms: sd 50/√3.
        assert!(
            (m - 200.0).abs() < 2.0 && (sd - 28.9).abs() < 1.5,
            "{m} {sd}"
        );
        let (m, _) = mean_and_sd(Distribution::Pareto);
        assert!((m - 250.0).abs() < 15.0, "{m}");
    }
}
