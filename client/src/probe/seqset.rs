//! A set of sequence numbers kept as sorted, disjoint ranges: a device that sends in order
//! costs one range however long the run, and two sets merge by union.

use serde::{Deserialize, Serialize};

/// Sequence numbers seen, as inclusive ranges `[first, last]`, sorted and not touching.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<[u64; 2]>", into = "Vec<[u64; 2]>")]
pub struct SeqSet {
    ranges: Vec<[u64; 2]>,
    len: u64,
}

impl SeqSet {
    /// Adds `seq`; false if it was there already.
    pub fn insert(&mut self, seq: u64) -> bool {
        // The common case: the next seq of an in-order device.
        if let Some(last) = self.ranges.last_mut() {
            if seq == last[1].wrapping_add(1) && last[1] != u64::MAX {
                last[1] = seq;
                self.len += 1;
                return true;
            }
            if seq > last[1] {
                self.ranges.push([seq, seq]);
                self.len += 1;
                return true;
            }
        }
        // The first range whose end is at or past seq - 1 (it may absorb seq).
        let at = self
            .ranges
            .partition_point(|r| r[1].saturating_add(1) < seq);
        match self.ranges.get(at).copied() {
            Some(r) if r[0] <= seq && seq <= r[1] => return false,
            Some(r) if r[1].saturating_add(1) == seq => {
                self.ranges[at][1] = seq;
                self.join(at);
            }
            Some(r) if seq.saturating_add(1) == r[0] => {
                self.ranges[at][0] = seq;
            }
            _ => self.ranges.insert(at, [seq, seq]),
        }
        self.len += 1;
        true
    }

    /// Joins range `at` with the next one if they now touch.
    fn join(&mut self, at: usize) {
        if let Some(next) = self.ranges.get(at + 1).copied() {
            if self.ranges[at][1].saturating_add(1) >= next[0] {
                self.ranges[at][1] = self.ranges[at][1].max(next[1]);
                self.ranges.remove(at + 1);
            }
        }
    }

    /// True if `seq` is in the set.
    pub fn contains(&self, seq: u64) -> bool {
        let at = self.ranges.partition_point(|r| r[1] < seq);
        self.ranges.get(at).is_some_and(|r| r[0] <= seq)
    }

    /// Distinct seqs in the set.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no seq is in the set.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Lowest seq.
    pub fn first(&self) -> Option<u64> {
        self.ranges.first().map(|r| r[0])
    }

    /// Highest seq.
    pub fn last(&self) -> Option<u64> {
        self.ranges.last().map(|r| r[1])
    }

    /// Seqs missing between the first and the last: what was lost, not counting before the
    /// device's first message seen or after its last.
    pub fn missing(&self) -> u64 {
        match (self.first(), self.last()) {
            (Some(a), Some(b)) => (b - a + 1).saturating_sub(self.len),
            _ => 0,
        }
    }

    /// The ranges, inclusive.
    pub fn ranges(&self) -> &[[u64; 2]] {
        &self.ranges
    }

    /// Adds every seq of `other`.
    pub fn union(&mut self, other: &SeqSet) {
        let mut all: Vec<[u64; 2]> = self.ranges.iter().chain(&other.ranges).copied().collect();
        all.sort_unstable();
        *self = Self::from(all);
    }
}

impl From<Vec<[u64; 2]>> for SeqSet {
    /// Normalizes any list of ranges (unsorted, overlapping, reversed).
    fn from(mut v: Vec<[u64; 2]>) -> Self {
        for r in &mut v {
            if r[0] > r[1] {
                r.swap(0, 1);
            }
        }
        v.sort_unstable();
        let mut ranges: Vec<[u64; 2]> = Vec::with_capacity(v.len());
        for r in v {
            match ranges.last_mut() {
                Some(last) if last[1].saturating_add(1) >= r[0] => last[1] = last[1].max(r[1]),
                _ => ranges.push(r),
            }
        }
        let len = ranges.iter().map(|r| r[1] - r[0] + 1).sum();
        Self { ranges, len }
    }
}

impl From<SeqSet> for Vec<[u64; 2]> {
    fn from(s: SeqSet) -> Self {
        s.ranges
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(seqs: &[u64]) -> SeqSet {
        let mut s = SeqSet::default();
        for &q in seqs {
            s.insert(q);
        }
        s
    }

    #[test]
    fn ranges_stay_sorted_disjoint_and_counted() {
        let mut s = set(&[5, 6, 7, 10, 2, 8, 9, 3, 1]);
        assert_eq!(s.ranges(), &[[1, 3], [5, 10]]);
        assert_eq!((s.len(), s.missing()), (9, 1));
        assert!(!s.insert(6), "a duplicate is not new");
        assert!(s.insert(4));
        assert_eq!(s.ranges(), &[[1, 10]]);
        assert!(s.contains(4) && !s.contains(11) && !s.contains(0));
        assert_eq!(set(&[]).missing(), 0);
        assert_eq!(set(&[0, 100]).missing(), 99);
    }

    #[test]
    fn any_insertion_order_gives_the_same_set() {
        let seqs: Vec<u64> = (0..500u64).map(|i| (i * 7919) % 613).collect();
        let mut rev = seqs.clone();
        rev.reverse();
        let (a, b) = (set(&seqs), set(&rev));
        assert_eq!(a, b);
        let mut unique = seqs.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(a.len(), unique.len() as u64);
        assert!(unique.iter().all(|&q| a.contains(q)));
    }

    #[test]
    fn union_and_the_wire_form() {
        let mut a = set(&[1, 2, 3, 10]);
        a.union(&set(&[4, 5, 11, 20]));
        assert_eq!(a.ranges(), &[[1, 5], [10, 11], [20, 20]]);
        assert_eq!(a.len(), 8);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, "[[1,5],[10,11],[20,20]]");
        let back: SeqSet = serde_json::from_str("[[20,20],[1,4],[3,5],[11,10]]").unwrap();
        assert_eq!(back, a);
    }
}
