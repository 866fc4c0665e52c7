//! What a report's window figures start from: every agent's heartbeat, kept every
//! [`EVERY`] for as long as the history (counters only). The window's figures
//! are `pluribusctl report --window`'s, from the kept heartbeat nearest the window's start
//! to the latest (counts and rates of the window; latency percentiles since each agent
//! started, as the kept heartbeats hold no histograms: they are large).

use std::collections::VecDeque;
use std::io::{Read as _, Write as _};
use std::time::Duration;

use pluribus_common::messages::Heartbeat;

use crate::beats::AgentBeats;

/// How often the heartbeats are kept.
pub const EVERY: Duration = Duration::from_secs(15);

/// Kept heartbeats, oldest first, each set as deflated JSON: a report reads one set, and
/// the dashboard keeps ~60 of them (15 minutes), with a counters-only heartbeat per agent
/// and fleet in each (~700 bytes decoded, tens of bytes deflated).
#[derive(Debug)]
pub struct Anchors {
    keep_ms: u64,
    kept: VecDeque<(u64, Vec<u8>)>,
}

/// `beats`' latest heartbeats, counters only, deflated.
fn pack(beats: &AgentBeats) -> Option<Vec<u8>> {
    let latest: Vec<&Heartbeat> = beats.agents.values().map(|b| &b.latest).collect();
    let json = serde_json::to_vec(&latest).ok()?;
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(&json).ok()?;
    let mut out = z.finish().ok()?;
    out.shrink_to_fit();
    Some(out)
}

fn unpack(bytes: &[u8]) -> Option<Vec<Heartbeat>> {
    let mut json = Vec::new();
    flate2::read::DeflateDecoder::new(bytes)
        .read_to_end(&mut json)
        .ok()?;
    serde_json::from_slice(&json).ok()
}

impl Anchors {
    /// Keeping `keep_ms` of heartbeats.
    pub fn new(keep_ms: u64) -> Self {
        Self {
            keep_ms,
            kept: VecDeque::new(),
        }
    }

    /// Records the agents' heartbeats (without histograms, as the dashboard keeps them) at
    /// `now_ms`, once every [`EVERY`]; true when it kept them this time.
    pub fn record(&mut self, beats: &AgentBeats, now_ms: u64) -> bool {
        let due = self
            .kept
            .back()
            .is_none_or(|(ts, _)| now_ms >= ts + EVERY.as_millis() as u64);
        if due {
            match pack(beats) {
                Some(p) => self.kept.push_back((now_ms, p)),
                None => tracing::warn!("cannot keep the heartbeats for reports"),
            }
        }
        let oldest = now_ms.saturating_sub(self.keep_ms + EVERY.as_millis() as u64);
        while self.kept.front().is_some_and(|(ts, _)| *ts < oldest) {
            self.kept.pop_front();
        }
        due
    }

    /// The kept heartbeats nearest to `from_ms` (the oldest if all are later).
    pub fn at(&self, from_ms: u64) -> Option<(u64, Vec<Heartbeat>)> {
        let (ts, packed) = self
            .kept
            .iter()
            .min_by_key(|(ts, _)| ts.abs_diff(from_ms))?;
        Some((*ts, unpack(packed)?))
    }

    /// Bytes kept.
    pub fn bytes(&self) -> usize {
        self.kept.iter().map(|(_, p)| p.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::fixtures::hb;

    #[test]
    fn heartbeats_are_kept_every_few_seconds_for_the_history() {
        let mut beats = AgentBeats::default();
        let mut h = hb("a", 3, None);
        h.fleets.insert(
            "f".into(),
            pluribus_common::messages::FleetCounters {
                messages: 42,
                ..Default::default()
            },
        );
        beats.insert("a".into(), h);
        let mut a = Anchors::new(60_000);
        for s in 0..200u64 {
            a.record(&beats, 1_000_000 + s * 1_000);
        }
        let now = 1_000_000 + 199_000;
        let (ts, h) = a.at(now - 30_000).expect("kept");
        assert!(ts.abs_diff(now - 30_000) <= 7_500, "{ts}");
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].fleets["f"].messages, 42);
        assert!(a.bytes() < 5 * 1_000, "{}", a.bytes());
        let (oldest, _) = a.at(0).expect("kept");
        assert!(
            now - oldest <= 75_000,
            "kept only the history: {}",
            now - oldest
        );
    }
}
