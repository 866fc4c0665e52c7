//! Connect pacing, agent-wide: at most `max_connecting` connects in flight (TCP, TLS and
//! CONNACK) and at most `connect_rate` started per second; plus the exponential backoff
//! between a device's attempts (`sink.reconnect`: bounds and jitter).
//!
//! A broker's listen backlog is small (mosquitto's is ~100): past it SYNs are dropped and
//! retried a second later, so an unpaced fleet connects *slower* than a paced one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pluribus_common::spec::{JitterMode, ReconnectSpec};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Shared by every device of every shard with the same pacing settings on this agent.
#[derive(Debug)]
pub struct Pacer {
    slots: Arc<Semaphore>,
    interval: Option<Duration>,
    next: Mutex<Instant>,
}

impl Pacer {
    /// A pacer allowing `max_connecting` connects in flight and `rate` starts per second.
    pub fn new(max_connecting: u32, rate: Option<f64>) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_connecting.max(1) as usize)),
            interval: rate
                .filter(|r| r.is_finite() && *r > 0.0)
                .map(|r| Duration::from_secs_f64(1.0 / r)),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for a connect slot and for the rate; the slot is held until the permit drops
    /// (after CONNACK or a failure).
    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        // The semaphore is never closed, so this only fails if that changes.
        let permit = self.slots.clone().acquire_owned().await.ok();
        if let Some(iv) = self.interval {
            let at = {
                let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
                let at = (*next).max(Instant::now());
                *next = at + iv;
                at
            };
            tokio::time::sleep_until(at).await;
        }
        permit
    }
}

/// A small xorshift generator: jitter needs no cryptographic randomness.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// Seeded from `salt` and the clock.
    pub fn new(salt: u64) -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self((salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ t) | 1)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }

    /// The wait before attempt `failures` (1 = after the first failure): `min ×
    /// 2^(failures-1)`, capped at `max`, then spread as `jitter` says (equal: between half
    /// and all of it; full: from 0 to all of it; none: all of it).
    pub fn backoff(&mut self, r: &ReconnectSpec, failures: u32) -> Duration {
        let base = r
            .min
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
            .min(r.max);
        let ms = base.as_millis() as u64;
        Duration::from_millis(match r.jitter {
            JitterMode::None => ms,
            JitterMode::Full => self.below(ms + 1),
            JitterMode::Equal => ms / 2 + self.below(ms / 2 + 1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let r = ReconnectSpec::default();
        let mut j = Jitter::new(7);
        let first = j.backoff(&r, 1);
        assert!(
            first >= Duration::from_millis(250) && first <= r.min,
            "{first:?}"
        );
        let fourth = j.backoff(&r, 4);
        assert!(fourth >= Duration::from_secs(2) && fourth <= Duration::from_secs(4));
        for _ in 0..100 {
            let d = j.backoff(&r, 40);
            assert!(d >= r.max / 2 && d <= r.max, "{d:?}");
        }
    }

    #[test]
    fn without_jitter_every_device_waits_the_same_and_full_jitter_spreads_from_zero() {
        let none = ReconnectSpec {
            jitter: JitterMode::None,
            ..ReconnectSpec::default()
        };
        let (mut a, mut b) = (Jitter::new(1), Jitter::new(2));
        for n in 1..8 {
            assert_eq!(a.backoff(&none, n), b.backoff(&none, n));
        }
        assert_eq!(a.backoff(&none, 3), Duration::from_secs(2));
        let full = ReconnectSpec {
            jitter: JitterMode::Full,
            ..ReconnectSpec::default()
        };
        let draws: Vec<Duration> = (0..200).map(|_| a.backoff(&full, 3)).collect();
        assert!(draws.iter().all(|d| *d <= Duration::from_secs(2)));
        assert!(
            draws.iter().any(|d| *d < Duration::from_millis(500)),
            "{draws:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rate_spaces_connects() {
        let p = Pacer::new(64, Some(100.0));
        let start = Instant::now();
        for _ in 0..11 {
            drop(p.acquire().await);
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(100), "{took:?}");
    }
}
