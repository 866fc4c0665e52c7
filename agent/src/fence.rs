//! The agent's fence: until when, on the local monotonic clock, this agent may send for the
//! shards it holds. The liveness task moves it forward after each renewal of the agent's
//! liveness entry, to the time the renewal was *sent* plus 75% of the TTL; the entry on the
//! server (whose TTL counts from when it was stored) outlives that, so the agent has stopped
//! sending before another agent can see the entry gone and take a shard over.
//!
//! Every shard runner checks the fence before each batch of due messages. That is what
//! keeps a frozen agent safe (SIGSTOP, a VM paused): when it wakes, its runners find the
//! fence passed and send nothing, whatever its control loop has or has not done yet.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Shared gate (cheap to clone).
#[derive(Clone, Debug)]
pub struct Fence {
    base: Instant,
    /// Milliseconds after `base` until which sending is allowed (0: closed).
    until_ms: Arc<AtomicU64>,
}

impl Default for Fence {
    fn default() -> Self {
        Self::closed()
    }
}

impl Fence {
    /// A fence that allows nothing until [`Fence::extend_to`] is called.
    pub fn closed() -> Self {
        Self {
            base: Instant::now(),
            until_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A fence that is always open (a shard run outside an agent: tests, examples).
    pub fn open() -> Self {
        let f = Self::closed();
        f.until_ms.store(u64::MAX, Ordering::Release);
        f
    }

    fn ms(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_millis() as u64
    }

    /// True while sending is allowed.
    pub fn is_open(&self) -> bool {
        self.ms(Instant::now()) < self.until_ms.load(Ordering::Acquire)
    }

    /// Allows sending until `t` (never moves the fence back).
    pub fn extend_to(&self, t: Instant) {
        self.until_ms.fetch_max(self.ms(t), Ordering::AcqRel);
    }

    /// Closes the fence now (the liveness entry is known to be gone).
    pub fn close(&self) {
        self.until_ms.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn opens_until_a_time_and_closes() {
        let f = Fence::closed();
        assert!(!f.is_open());
        f.extend_to(Instant::now() + Duration::from_secs(60));
        assert!(f.is_open());
        // Never moves back.
        f.extend_to(Instant::now());
        assert!(f.is_open());
        f.close();
        assert!(!f.is_open());
        f.extend_to(Instant::now() - Duration::from_millis(1));
        assert!(!f.is_open());
        assert!(Fence::open().is_open());
    }
}
