//! What an agent knows of the detached runs from its watch of the scenarios bucket: the
//! runs not done yet, and those some agent holds a lease on. Only runs open and leased by
//! nobody are worth a claim, so an agent makes no request for a run another agent executes
//! (it tried to create that run's lease every scan before: one failed write per run and
//! agent every 2 s). Both sets are bounded: they are filled from a bucket any client with
//! the right credential may write.

use std::collections::HashSet;

/// The most runs (and leases) an agent keeps track of.
pub const MAX_TRACKED: usize = 10_000;
/// The most claims an agent tries in one scan.
pub const MAX_CLAIMS_PER_SCAN: usize = 16;

/// The open and the leased runs, by id.
#[derive(Debug, Default)]
pub struct OpenRuns {
    open: HashSet<String>,
    leased: HashSet<String>,
    full_said: bool,
}

impl OpenRuns {
    /// Forgets everything (the watch starts again from the bucket's current values).
    pub fn clear(&mut self) {
        self.open.clear();
        self.leased.clear();
    }

    /// Run `id`'s record: `not_done` when it is a readable record of a run not done yet.
    pub fn run(&mut self, id: &str, not_done: bool) {
        if not_done {
            Self::insert(&mut self.open, id, &mut self.full_said);
        } else {
            self.open.remove(id);
        }
    }

    /// Run `id`'s lease: `live` for a put, false once deleted or expired.
    pub fn lease(&mut self, id: &str, live: bool) {
        if live {
            Self::insert(&mut self.leased, id, &mut self.full_said);
        } else {
            self.leased.remove(id);
        }
    }

    fn insert(set: &mut HashSet<String>, id: &str, full_said: &mut bool) {
        if set.len() < MAX_TRACKED || set.contains(id) {
            set.insert(id.to_string());
        } else if !std::mem::replace(full_said, true) {
            tracing::warn!(
                max = MAX_TRACKED,
                "the scenarios bucket holds more runs than an agent follows; the rest wait"
            );
        }
    }

    /// The runs to try to take now: open, leased by nobody, and not executing here
    /// (`executing`); at most [`MAX_CLAIMS_PER_SCAN`].
    pub fn claimable(&self, executing: impl Fn(&str) -> bool) -> Vec<String> {
        self.open
            .iter()
            .filter(|id| !self.leased.contains(*id) && !executing(id))
            .take(MAX_CLAIMS_PER_SCAN)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_open_runs_nobody_leases_are_claimable() {
        let mut r = OpenRuns::default();
        r.run("a", true);
        r.run("b", true);
        r.run("c", false);
        r.lease("b", true);
        assert_eq!(r.claimable(|_| false), vec!["a".to_string()]);
        assert!(r.claimable(|id| id == "a").is_empty());
        // b's lease expired (its executor died): b can be taken again.
        r.lease("b", false);
        let mut got = r.claimable(|_| false);
        got.sort();
        assert_eq!(got, vec!["a".to_string(), "b".to_string()]);
        // a is done.
        r.run("a", false);
        assert_eq!(r.claimable(|_| false), vec!["b".to_string()]);
        r.clear();
        assert!(r.claimable(|_| false).is_empty());
    }

    #[test]
    fn a_flood_of_runs_is_bounded_and_claimed_a_few_at_a_time() {
        let mut r = OpenRuns::default();
        for i in 0..MAX_TRACKED + 50 {
            r.run(&format!("r{i}"), true);
        }
        assert_eq!(r.open.len(), MAX_TRACKED);
        assert_eq!(r.claimable(|_| false).len(), MAX_CLAIMS_PER_SCAN);
        // A run already tracked is still updated when the set is full.
        r.run("r0", false);
        r.run("r0", true);
        assert!(r.open.contains("r0"));
    }
}
