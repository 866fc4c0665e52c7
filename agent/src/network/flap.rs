//! Flapping: a device's up/down cycle. The state is a few bytes per device; its
//! transitions wait in a heap of the sink's [`Impaired`](super::Impaired), which the shard
//! runner wakes for, so a device goes down and comes back on time whether or not it is
//! sending. Uptimes and downtimes are drawn from the fleet's seed, the device and the
//! cycle number: the same run flaps the same way again.

use pluribus_common::spec::network::{DurationDist, FlapSpec, MIN_CYCLE_MS};

use super::rng::Rng;

/// Salt of the flap draws (kept apart from the per-message draws).
const FLAP_SALT: u64 = 0x666c_6170_7069_6e67;

/// One device's place in its cycle.
#[derive(Debug, Clone, Copy)]
pub struct FlapState {
    /// In its downtime.
    pub down: bool,
    /// Transitions so far.
    pub cycle: u64,
    /// Tells this state's heap entries from those of an earlier one.
    pub id: u64,
}

/// The time (µs) until the device's next transition: an uptime if it is now `up`.
pub fn next_us(spec: &FlapSpec, salt: u64, cycle: u64, up: bool) -> u64 {
    let mut rng = Rng::for_message(salt ^ FLAP_SALT, cycle);
    let ms = if up {
        match (&spec.uptime, spec.per_minute) {
            (Some(u), _) => draw(u, &mut rng),
            // Exponential: P(down within a minute) = p.
            (None, Some(p)) if p > 0.0 => {
                let mean = spec.mean_uptime_ms();
                -(1.0 - rng.unit()).max(f64::MIN_POSITIVE).ln() * mean
            }
            _ => f64::INFINITY,
        }
    } else {
        draw(&spec.downtime, &mut rng)
    };
    // A day at most (the spec's bound), 10 ms at least.
    (ms.clamp(MIN_CYCLE_MS as f64, 86_400_000.0 * 4.0) * 1000.0) as u64
}

fn draw(d: &DurationDist, rng: &mut Rng) -> f64 {
    d.mean as f64 + d.deviation as f64 * rng.normal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_the_distributions_and_repeat() {
        let spec = FlapSpec {
            uptime: Some(DurationDist::ms(2_000, 500)),
            per_minute: None,
            downtime: DurationDist::ms(1_000, 0),
            offline: None,
        };
        let ups: Vec<f64> = (0..2000)
            .map(|c| next_us(&spec, 9, c, true) as f64 / 1000.0)
            .collect();
        let mean = ups.iter().sum::<f64>() / ups.len() as f64;
        let sd = (ups.iter().map(|u| (u - mean).powi(2)).sum::<f64>() / ups.len() as f64).sqrt();
        assert!((mean - 2000.0).abs() < 50.0, "{mean}");
        assert!((sd - 500.0).abs() < 50.0, "{sd}");
        assert_eq!(next_us(&spec, 9, 4, false), 1_000_000);
        assert_eq!(next_us(&spec, 9, 7, true), next_us(&spec, 9, 7, true));
        let per = FlapSpec {
            uptime: None,
            per_minute: Some(0.5),
            ..spec
        };
        let within = (0..4000)
            .filter(|c| next_us(&per, 3, *c, true) < 60_000_000)
            .count();
        assert!((1800..2200).contains(&within), "{within}");
    }
}
