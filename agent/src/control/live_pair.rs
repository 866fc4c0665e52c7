//! The two liveness keys of an epoch, and when they keep the fence open.
//!
//! An agent keeps its liveness key in two buckets (`pluribus_live` and `pluribus_live2`),
//! two streams whose leaders the agents keep on different NATS nodes (`leaders.rs`). When
//! the node leading one of them dies, JetStream takes seconds to elect a new leader, and
//! the renewals of that key fail meanwhile; those of the other key still land, so the agent
//! need not stop its devices. Others delete the agent's epoch record (and so may take its
//! shards) only once both keys are gone (`epochs.rs`).
//!
//! The epoch stands while one of its keys has stood without a break since the epoch began.
//! A key *counts* for the epoch while that is known; each round of renewals (one a second,
//! both keys at once) applies these rules:
//! - a key renewed with a revision check stood since its previous revision: if it counts,
//!   the fence moves to when the renewal was sent plus 75% of the TTL;
//! - a key found gone (it expired while its stream had no leader) no longer counts and is
//!   made again. A key made again counts only once the other key, counting, was renewed in
//!   a *later* round: that renewal proves the epoch stood while the new key was made, so
//!   there never was a moment when both keys were gone;
//! - once neither key counts, the epoch is over: the fence closes and a new epoch begins.

/// What one key's step of a round found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Renewed with a revision check: its new revision.
    Renewed(u64),
    /// Made (it was gone, or the epoch is new): its revision.
    Made(u64),
    /// Found holding this epoch at another revision (a renewal that timed out had landed).
    Resynced(u64),
    /// Found gone, or holding another epoch.
    Gone,
    /// No answer (NATS away, the stream without a leader, a timeout).
    Unknown,
}

/// One key of the pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Key {
    /// Its last known revision (0: there is no key to renew; make one).
    pub revision: u64,
    /// True while it is known to have stood without a break since the epoch began.
    pub counts: bool,
    /// The round it was made in.
    made_round: u64,
}

/// What a round means for the fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// A counting key was renewed: the fence moves.
    Extend,
    /// Nothing proved yet, nothing lost: the fence stays where it is (and runs out unless a
    /// later round extends it).
    Hold,
    /// Neither key counts: the epoch is over.
    Over,
}

/// Both keys of the current epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Pair {
    pub keys: [Key; 2],
    round: u64,
}

impl Pair {
    /// A new epoch, whose keys (those that could be made) were made before its record was
    /// written: they count from the start. `None` when neither was made.
    pub(super) fn begin(made: [Option<u64>; 2]) -> Option<Self> {
        if made.iter().all(Option::is_none) {
            return None;
        }
        let key = |m: Option<u64>| Key {
            revision: m.unwrap_or(0),
            counts: m.is_some(),
            made_round: 0,
        };
        Some(Self {
            keys: [key(made[0]), key(made[1])],
            round: 0,
        })
    }

    /// Applies one round's outcomes (both keys' steps ran at once).
    pub(super) fn apply(&mut self, out: [Outcome; 2]) -> Verdict {
        self.round += 1;
        let counted = [self.keys[0].counts, self.keys[1].counts];
        let mut extend = false;
        for (k, o) in self.keys.iter_mut().zip(out) {
            match o {
                Outcome::Renewed(rev) => {
                    k.revision = rev;
                    extend |= k.counts;
                }
                Outcome::Made(rev) => {
                    *k = Key {
                        revision: rev,
                        counts: false,
                        made_round: self.round,
                    }
                }
                Outcome::Resynced(rev) => k.revision = rev,
                Outcome::Gone => *k = Key::default(),
                Outcome::Unknown => {}
            }
        }
        for i in 0..2 {
            let other = 1 - i;
            let k = self.keys[i];
            let proven = counted[other]
                && self.keys[other].counts
                && matches!(out[other], Outcome::Renewed(_));
            if k.revision != 0 && !k.counts && k.made_round < self.round && proven {
                self.keys[i].counts = true;
            }
        }
        if !self.keys.iter().any(|k| k.counts) {
            Verdict::Over
        } else if extend {
            Verdict::Extend
        } else {
            Verdict::Hold
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Outcome::*;
    use super::*;

    #[test]
    fn an_epoch_needs_one_key_and_renewals_extend() {
        assert_eq!(Pair::begin([None, None]), None);
        let mut p = Pair::begin([Some(1), Some(2)]).unwrap();
        assert_eq!(p.apply([Renewed(3), Renewed(4)]), Verdict::Extend);
        assert_eq!(p.apply([Unknown, Renewed(5)]), Verdict::Extend);
        assert_eq!(p.apply([Unknown, Unknown]), Verdict::Hold);
        assert_eq!(p.keys[1].revision, 5);
    }

    #[test]
    fn one_stream_electing_a_leader_costs_nothing() {
        let mut p = Pair::begin([Some(1), Some(2)]).unwrap();
        // The first stream has no leader: its renewals fail, the second's land.
        for rev in 3..10 {
            assert_eq!(p.apply([Unknown, Renewed(rev)]), Verdict::Extend);
        }
        // The new leader expired the first key: it is made again, provisionally.
        assert_eq!(p.apply([Gone, Renewed(10)]), Verdict::Extend);
        assert_eq!(p.apply([Made(20), Renewed(11)]), Verdict::Extend);
        assert!(
            !p.keys[0].counts,
            "made in the same round as the renewal: not proven"
        );
        // The next renewal of the second key proves the epoch stood across the making.
        assert_eq!(p.apply([Renewed(21), Renewed(12)]), Verdict::Extend);
        assert!(p.keys[0].counts);
        // Now the second stream may lose its leader.
        assert_eq!(p.apply([Renewed(22), Unknown]), Verdict::Extend);
        assert_eq!(p.apply([Renewed(23), Gone]), Verdict::Extend);
    }

    #[test]
    fn a_key_made_again_does_not_count_without_the_others_proof() {
        let mut p = Pair::begin([Some(1), Some(2)]).unwrap();
        assert_eq!(p.apply([Gone, Unknown]), Verdict::Hold);
        assert_eq!(p.apply([Made(5), Unknown]), Verdict::Hold);
        // Its own renewals prove only itself: the fence does not move on them.
        assert_eq!(p.apply([Renewed(6), Unknown]), Verdict::Hold);
        // The counting key turns out gone too: the epoch is over, whatever the new key does.
        assert_eq!(p.apply([Renewed(7), Gone]), Verdict::Over);
    }

    #[test]
    fn both_gone_ends_the_epoch_and_resyncs_do_not_extend() {
        let mut p = Pair::begin([Some(1), None]).unwrap();
        assert_eq!(p.apply([Resynced(4), Unknown]), Verdict::Hold);
        assert_eq!(p.keys[0].revision, 4);
        // The second key, missing at the start, is made and then proven by the first.
        assert_eq!(p.apply([Renewed(5), Made(9)]), Verdict::Extend);
        assert_eq!(p.apply([Renewed(6), Renewed(10)]), Verdict::Extend);
        assert!(p.keys[1].counts);
        assert_eq!(p.apply([Gone, Gone]), Verdict::Over);
    }
}
