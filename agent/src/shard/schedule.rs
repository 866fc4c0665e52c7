//! Where a device's telemetry slots fall in time. A device's slot `k` is due at
//! `epoch + phase + k × interval` (plus a per-slot jitter), and its `seq` is `k`. Because the
//! schedule depends only on the fleet record and the device id, any agent that picks the
//! device up continues the same sequence: messages missed during a failover show as a gap.

/// A 64-bit hash (FNV-1a) that is stable across processes and builds.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// SplitMix64's finaliser: spreads the bits of `x`.
pub fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// One device's schedule, in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Slot 0 of the device, phase included.
    pub start_ms: u64,
    /// Interval between slots.
    pub interval_ms: u64,
    /// Largest jitter added to a slot.
    pub jitter_ms: u64,
    /// Per-device salt for the jitter.
    pub salt: u64,
    /// The seq of slot `start_ms`.
    pub seq_base: u64,
}

impl Schedule {
    /// The schedule of `device_id`: phases are spread over the interval so that a fleet
    /// does not send in lockstep.
    pub fn new(device_id: &str, epoch_ms: u64, interval_ms: u64, jitter_ms: u64) -> Self {
        let interval_ms = interval_ms.max(1);
        let salt = stable_hash(&[device_id.as_bytes()]);
        Self {
            start_ms: epoch_ms + salt % interval_ms,
            interval_ms,
            jitter_ms,
            salt,
            seq_base: 0,
        }
    }

    /// The same schedule with its first slot numbered `seq_base`.
    pub fn with_seq_base(self, seq_base: u64) -> Self {
        Self { seq_base, ..self }
    }

    /// The first slot due at or after `now_ms`.
    pub fn first_seq(&self, now_ms: u64) -> u64 {
        if now_ms <= self.start_ms {
            self.seq_base
        } else {
            self.seq_base + (now_ms - self.start_ms).div_ceil(self.interval_ms)
        }
    }

    /// When slot `seq` is scheduled (before jitter).
    pub fn slot_ms(&self, seq: u64) -> u64 {
        self.start_ms + seq.saturating_sub(self.seq_base) * self.interval_ms
    }

    /// When slot `seq` is due (jitter included).
    pub fn due_ms(&self, seq: u64) -> u64 {
        let base = self.slot_ms(seq);
        if self.jitter_ms == 0 {
            base
        } else {
            base + mix(self.salt ^ seq) % self.jitter_ms
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_continues_from_the_clock() {
        let s = Schedule::new("dev-1", 10_000, 1_000, 0);
        assert!(s.start_ms >= 10_000 && s.start_ms < 11_000);
        assert_eq!(s.first_seq(0), 0);
        assert_eq!(s.first_seq(s.start_ms), 0);
        assert_eq!(s.first_seq(s.start_ms + 1), 1);
        assert_eq!(s.first_seq(s.start_ms + 5_000), 5);
        assert_eq!(s.slot_ms(5), s.start_ms + 5_000);
    }

    #[test]
    fn a_seq_base_shifts_numbering_not_timing() {
        let s = Schedule::new("dev-1", 10_000, 1_000, 0).with_seq_base(100);
        assert_eq!(s.first_seq(0), 100);
        assert_eq!(s.first_seq(s.start_ms + 3_000), 103);
        assert_eq!(s.slot_ms(103), s.start_ms + 3_000);
    }

    #[test]
    fn jitter_stays_inside_its_bound_and_is_stable() {
        let s = Schedule::new("dev-2", 0, 1_000, 100);
        for k in 0..1000 {
            let d = s.due_ms(k) - s.slot_ms(k);
            assert!(d < 100);
            assert_eq!(s.due_ms(k), Schedule::new("dev-2", 0, 1_000, 100).due_ms(k));
        }
    }

    #[test]
    fn phases_spread_over_the_interval() {
        let buckets: std::collections::HashSet<u64> = (0..1000)
            .map(|i| Schedule::new(&format!("d-{i}"), 0, 1_000, 0).start_ms / 100)
            .collect();
        assert_eq!(buckets.len(), 10);
    }
}
