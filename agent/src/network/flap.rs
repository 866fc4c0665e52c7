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
    (d.mean as f64 + d.deviation as f64 * rng.normal()).max(MIN_CYCLE_MS as f64)
}

/// Where a device starts in its cycle: a random point of a cycle in equilibrium (down
/// with probability mean downtime / mean cycle; the time left is a uniform share of a
/// length-biased draw), so a fleet does not flap in step. Returns (down, µs left).
pub fn start(spec: &FlapSpec, salt: u64) -> (bool, u64) {
    let mut rng = Rng::for_message(salt ^ FLAP_SALT, u64::MAX);
    let (up_ms, down_ms) = (spec.mean_uptime_ms(), spec.downtime.mean as f64);
    let down = up_ms.is_finite() && rng.unit() * (up_ms + down_ms) >= up_ms;
    let left_ms = match (&spec.uptime, down) {
        // Exponential uptimes have no memory: the time left is a fresh draw.
        (None, false) => return (false, next_us(spec, salt, u64::MAX - 1, true)),
        (Some(u), false) => biased(u, &mut rng),
        (_, true) => biased(&spec.downtime, &mut rng),
    };
    (down, (left_ms * rng.unit() * 1000.0) as u64)
}

/// A draw of `d` biased by its length (by rejection): the length of the period a random
/// instant falls in.
fn biased(d: &DurationDist, rng: &mut Rng) -> f64 {
    let cap = d.mean as f64 + 5.0 * d.deviation as f64;
    let mut x = d.mean as f64;
    for _ in 0..64 {
        x = draw(d, rng).min(cap);
        if rng.unit() * cap <= x {
            break;
        }
    }
    x
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
            ..spec.clone()
        };
        let within = (0..4000)
            .filter(|c| next_us(&per, 3, *c, true) < 60_000_000)
            .count();
        assert!((1800..2200).contains(&within), "{within}");
        // A third of the devices start down, none for longer than a downtime.
        let starts: Vec<(bool, u64)> = (0..3000).map(|s| start(&spec, s)).collect();
        let down = starts.iter().filter(|s| s.0).count();
        assert!((900..1100).contains(&down), "{down}");
        assert!(starts.iter().all(|s| !s.0 || s.1 <= 1_000_000));
    }
}
