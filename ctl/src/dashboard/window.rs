//! What a report's window figures start from: every agent's heartbeat, kept every
//! [`EVERY`] for as long as the history (counters only). The window's figures
//! are `pluribusctl report --window`'s, from the kept heartbeat nearest the window's start
//! to the latest (counts and rates of the window; latency percentiles since each agent
//! started, as the kept heartbeats hold no histograms: they are large).

use std::collections::VecDeque;
use std::time::Duration;

use pluribus_common::messages::Heartbeat;

use crate::beats::AgentBeats;

/// How often the heartbeats are kept.
pub const EVERY: Duration = Duration::from_secs(15);

/// Kept heartbeats, oldest first.
#[derive(Debug)]
pub struct Anchors {
    keep_ms: u64,
    kept: VecDeque<(u64, Vec<Heartbeat>)>,
}

/// A copy of `h` without its histograms (counters only). They are taken out while it is
/// copied and put back: a histogram is tens of KB, and there is one per agent and fleet.
fn counters_only(h: &mut Heartbeat) -> Heartbeat {
    type Hists = [Option<pluribus_common::hist::Hist>; 4];
    let taken: Vec<Hists> = h
        .fleets
        .values_mut()
        .map(|c| {
            [
                c.tick_lag_us.take(),
                c.ack_latency_us.take(),
                c.receive_latency_us.take(),
                c.network.as_mut().and_then(|n| n.added_delay_us.take()),
            ]
        })
        .collect();
    let copy = h.clone();
    for (c, [lag, ack, rx, delay]) in h.fleets.values_mut().zip(taken) {
        c.tick_lag_us = lag;
        c.ack_latency_us = ack;
        c.receive_latency_us = rx;
        if let Some(n) = c.network.as_mut() {
            n.added_delay_us = delay;
        }
    }
    copy
}

/// The latest heartbeat of every agent, histograms included (what a window ends with).
pub fn latest(beats: &AgentBeats) -> Vec<Heartbeat> {
    beats.agents.values().map(|b| b.latest.clone()).collect()
}

impl Anchors {
    /// Keeping `keep_ms` of heartbeats.
    pub fn new(keep_ms: u64) -> Self {
        Self {
            keep_ms,
            kept: VecDeque::new(),
        }
    }

    /// Records the agents' heartbeats at `now_ms` (kept once every [`EVERY`]).
    pub fn record(&mut self, beats: &mut AgentBeats, now_ms: u64) {
        let due = self
            .kept
            .back()
            .is_none_or(|(ts, _)| now_ms >= ts + EVERY.as_millis() as u64);
        if due {
            let copy = beats
                .agents
                .values_mut()
                .map(|b| counters_only(&mut b.latest))
                .collect();
            self.kept.push_back((now_ms, copy));
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
    use crate::state::fixtures::hb;

    #[test]
    fn heartbeats_are_kept_every_few_seconds_for_the_history() {
        let mut beats = AgentBeats::default();
        beats.insert("a".into(), hb("a", 3, None));
        let mut a = Anchors::new(60_000);
        for s in 0..200u64 {
            a.record(&mut beats, 1_000_000 + s * 1_000);
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
        assert_eq!(latest(&beats).len(), 1);
    }
}
