//! What a report's window figures start from: every agent's heartbeat, kept every
//! [`EVERY`] for as long as the history, and the latest heartbeats. The window's figures
//! are `pluribusctl report --window`'s, from the kept heartbeat nearest the window's start
//! to the latest (counts and rates of the window; latency percentiles since each agent
//! started, as the kept heartbeats hold no histograms: they are large).

use std::collections::VecDeque;
use std::time::Duration;

use pluribus_common::messages::Heartbeat;

use crate::beats::AgentBeats;

/// How often the heartbeats are kept.
pub const EVERY: Duration = Duration::from_secs(15);

/// Kept heartbeats, oldest first, and the latest ones.
#[derive(Debug)]
pub struct Anchors {
    keep_ms: u64,
    kept: VecDeque<(u64, Vec<Heartbeat>)>,
    /// The latest heartbeat of every agent (histograms included).
    pub latest: Vec<Heartbeat>,
}

/// A heartbeat without its histograms (counters only).
fn counters_only(h: &Heartbeat) -> Heartbeat {
    let mut h = h.clone();
    for c in h.fleets.values_mut() {
        c.tick_lag_us = None;
        c.ack_latency_us = None;
        c.receive_latency_us = None;
        if let Some(n) = c.network.as_mut() {
            n.added_delay_us = None;
        }
    }
    h
}

impl Anchors {
    /// Keeping `keep_ms` of heartbeats.
    pub fn new(keep_ms: u64) -> Self {
        Self {
            keep_ms,
            kept: VecDeque::new(),
            latest: Vec::new(),
        }
    }

    /// Records the agents' heartbeats at `now_ms` (kept once every [`EVERY`]).
    pub fn record(&mut self, beats: &AgentBeats, now_ms: u64) {
        self.latest = beats.agents.values().map(|b| b.latest.clone()).collect();
        let due = self
            .kept
            .back()
            .is_none_or(|(ts, _)| now_ms >= ts + EVERY.as_millis() as u64);
        if due {
            self.kept
                .push_back((now_ms, self.latest.iter().map(counters_only).collect()));
        }
        let oldest = now_ms.saturating_sub(self.keep_ms + EVERY.as_millis() as u64);
        while self.kept.front().is_some_and(|(ts, _)| *ts < oldest) {
            self.kept.pop_front();
        }
    }

    /// The kept heartbeats nearest to `from_ms` (the oldest if all are later).
    pub fn at(&self, from_ms: u64) -> Option<(u64, &[Heartbeat])> {
        self.kept
            .iter()
            .min_by_key(|(ts, _)| ts.abs_diff(from_ms))
            .map(|(ts, h)| (*ts, h.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::hb;

    #[test]
    fn heartbeats_are_kept_every_few_seconds_for_the_history() {
        let mut beats = AgentBeats::default();
        beats.insert("a".into(), hb("a", 3, None));
        let mut a = Anchors::new(60_000);
        for s in 0..200u64 {
            a.record(&beats, 1_000_000 + s * 1_000);
        }
        let now = 1_000_000 + 199_000;
        let (ts, h) = a.at(now - 30_000).expect("kept");
        assert!(ts.abs_diff(now - 30_000) <= 7_500, "{ts}");
        assert_eq!(h.len(), 1);
        let (oldest, _) = a.at(0).expect("kept");
        assert!(
            now - oldest <= 75_000,
            "kept only the history: {}",
            now - oldest
        );
        assert_eq!(a.latest.len(), 1);
    }
}
