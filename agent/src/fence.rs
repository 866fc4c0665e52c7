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
    /// The liveness epoch the fence follows (0: none), and the last one revoked: while they
    /// are equal the fence stays closed, whatever renewal succeeds.
    epoch: Arc<AtomicU64>,
    revoked: Arc<AtomicU64>,
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
            epoch: Arc::new(AtomicU64::new(0)),
            revoked: Arc::new(AtomicU64::new(0)),
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

    /// Allows sending until `t` (never moves the fence back), unless the current epoch was
    /// revoked.
    pub fn extend_to(&self, t: Instant) {
        if self.is_revoked() {
            return;
        }
        self.until_ms.fetch_max(self.ms(t), Ordering::SeqCst);
        // A revocation that raced with this extension wins.
        if self.is_revoked() {
            self.until_ms.store(0, Ordering::SeqCst);
        }
    }

    /// The liveness task made a new entry under `epoch`: renewals of it extend the fence.
    pub fn begin_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::SeqCst);
    }

    /// The agent's epoch record for `epoch` is gone (the others take its leases over): the
    /// fence closes, and no renewal under that epoch opens it again.
    pub fn revoke(&self, epoch: u64) {
        self.revoked.store(epoch, Ordering::SeqCst);
        if self.epoch.load(Ordering::SeqCst) == epoch {
            self.until_ms.store(0, Ordering::SeqCst);
        }
    }

    /// True when the current epoch was revoked.
    pub fn is_revoked(&self) -> bool {
        let e = self.epoch.load(Ordering::SeqCst);
        e != 0 && self.revoked.load(Ordering::SeqCst) == e
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

    #[test]
    fn a_revoked_epoch_keeps_the_fence_closed_until_a_new_one() {
        let f = Fence::closed();
        let later = || Instant::now() + Duration::from_secs(60);
        f.begin_epoch(7);
        f.extend_to(later());
        assert!(f.is_open());
        // Another epoch's revocation changes nothing.
        f.revoke(5);
        assert!(f.is_open());
        f.revoke(7);
        assert!(!f.is_open() && f.is_revoked());
        f.extend_to(later());
        assert!(!f.is_open());
        f.begin_epoch(9);
        f.extend_to(later());
        assert!(f.is_open() && !f.is_revoked());
    }
}
