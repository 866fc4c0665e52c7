//! Offline with store and forward: while a device is partitioned its messages go into a
//! bounded buffer (losing the oldest or the newest when full); when the partition ends
//! they go out first, untouched (original `ts` and `seq`), at the flush rate.

use std::collections::VecDeque;

use bytes::Bytes;
use pluribus_common::spec::network::{DropPolicy, OfflineSpec};

/// A device's buffer while it is offline.
#[derive(Debug)]
pub struct Offline {
    buf: VecDeque<Bytes>,
    /// The rule that cut it off: buffer size, drop policy, flush rate, link mode.
    pub spec: OfflineSpec,
    /// The cause ended: the device is let back and flushes once its sink is ready (its
    /// own connection up again).
    pub returning: bool,
}

/// What happened to a message offered to the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Stored {
    /// Kept.
    Kept,
    /// Kept, and the oldest message was lost to make room.
    KeptDroppedOldest,
    /// Lost (full buffer, newest lose; or no buffer at all).
    Dropped,
}

impl Offline {
    /// An empty buffer for a device cut off by `spec`.
    pub fn new(spec: OfflineSpec) -> Self {
        Self {
            buf: VecDeque::new(),
            spec,
            returning: false,
        }
    }

    /// Keeps `p` as the spec says.
    pub fn store(&mut self, p: Bytes) -> Stored {
        let spec = &self.spec;
        let cap = spec.buffer as usize;
        if cap == 0 {
            return Stored::Dropped;
        }
        let mut out = Stored::Kept;
        if self.buf.len() >= cap {
            match spec.drop {
                DropPolicy::Newest => return Stored::Dropped,
                DropPolicy::Oldest => {
                    self.buf.pop_front();
                    out = Stored::KeptDroppedOldest;
                }
            }
        }
        self.buf.push_back(p);
        out
    }

    /// The buffered messages, oldest first, each with its delay from now (µs) at the
    /// flush rate.
    pub fn flush(self) -> impl Iterator<Item = (u64, Bytes)> {
        let rate = self.spec.flush_rate;
        self.buf.into_iter().enumerate().map(move |(i, p)| {
            let delay = if rate > 0.0 {
                (i as f64 / rate * 1e6) as u64
            } else {
                0
            };
            (delay, p)
        })
    }

    /// Messages held.
    pub fn len(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_buffer_loses_as_told_and_flushes_in_order_at_the_rate() {
        let spec = OfflineSpec {
            buffer: 2,
            drop: DropPolicy::Oldest,
            flush_rate: 10.0,
            ..OfflineSpec::default()
        };
        let mut o = Offline::new(spec.clone());
        assert_eq!(o.store(Bytes::from_static(b"1")), Stored::Kept);
        assert_eq!(o.store(Bytes::from_static(b"2")), Stored::Kept);
        assert_eq!(o.store(Bytes::from_static(b"3")), Stored::KeptDroppedOldest);
        let out: Vec<(u64, Bytes)> = o.flush().collect();
        assert_eq!(
            out,
            [
                (0, Bytes::from_static(b"2")),
                (100_000, Bytes::from_static(b"3"))
            ]
        );
        let newest = OfflineSpec {
            drop: DropPolicy::Newest,
            ..spec
        };
        let mut o = Offline::new(newest);
        o.store(Bytes::from_static(b"1"));
        o.store(Bytes::from_static(b"2"));
        assert_eq!(o.store(Bytes::from_static(b"3")), Stored::Dropped);
        assert_eq!(o.len(), 2);
    }
}
