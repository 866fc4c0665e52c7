//! Per-shard backoff for shards this agent could not prepare (a missing CA file, an unset
//! secret). Without it such a shard circulates on the work subject as fast as the agents
//! can pass it on: tens of thousands of offers a second for as long as the fleet exists.
//!
//! An entry is tied to the fleet record's revision: a new record (the user fixed the spec)
//! starts afresh. While an entry is active the agent does not try the shard again and does
//! not keep its offers circulating; the reconcile leader re-offers it only when its own
//! entry expires (see `reconcile::offer_unheld`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The first wait after a failure (one reconcile period by default).
pub(super) const FIRST: Duration = Duration::from_secs(2);
/// The longest wait: how long a fixed file or secret may take to be noticed.
pub(super) const MAX: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
struct Entry {
    revision: u64,
    delay: Duration,
    until: Instant,
}

/// Shards that failed to prepare here, by lease key.
#[derive(Debug, Default)]
pub(super) struct PrepareBackoff {
    entries: HashMap<String, Entry>,
}

/// Where a shard stands with this agent.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum State {
    /// Never failed here at this revision.
    Clear,
    /// Failed, and waiting.
    Waiting,
    /// Failed, and the wait is over: try again.
    Due,
}

impl PrepareBackoff {
    /// Records a failure of `key` at fleet `revision`; returns how long to wait.
    pub(super) fn fail(&mut self, key: &str, revision: u64, now: Instant) -> Duration {
        let delay = match self.entries.get(key) {
            Some(e) if e.revision == revision => (e.delay * 2).min(MAX),
            _ => FIRST,
        };
        self.entries.insert(
            key.to_string(),
            Entry {
                revision,
                delay,
                until: now + delay,
            },
        );
        delay
    }

    /// Where `key` stands at fleet `revision`.
    pub(super) fn state(&self, key: &str, revision: u64, now: Instant) -> State {
        match self.entries.get(key) {
            Some(e) if e.revision == revision && now < e.until => State::Waiting,
            Some(e) if e.revision == revision => State::Due,
            _ => State::Clear,
        }
    }

    /// The shard runs somewhere (or its fleet is gone): forget it.
    pub(super) fn clear(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Keeps only the entries `keep` says yes to.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.entries.retain(|k, _| keep(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_reset_with_a_new_record() {
        let mut b = PrepareBackoff::default();
        let t = Instant::now();
        assert_eq!(b.state("f.0", 1, t), State::Clear);
        assert_eq!(b.fail("f.0", 1, t), FIRST);
        assert_eq!(b.state("f.0", 1, t), State::Waiting);
        assert_eq!(b.state("f.0", 1, t + FIRST), State::Due);
        assert_eq!(b.fail("f.0", 1, t), FIRST * 2);
        let mut last = Duration::ZERO;
        for _ in 0..10 {
            last = b.fail("f.0", 1, t);
        }
        assert_eq!(last, MAX);
        // The user fixed the spec: a new revision starts afresh.
        assert_eq!(b.state("f.0", 2, t), State::Clear);
        assert_eq!(b.fail("f.0", 2, t), FIRST);
        b.clear("f.0");
        assert_eq!(b.state("f.0", 2, t), State::Clear);
    }
}
