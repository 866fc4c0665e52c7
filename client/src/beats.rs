//! The last two heartbeats of every agent, followed from the agents bucket: what `watch`
//! and the dashboard compute rates and percentiles from.

use std::collections::BTreeMap;

use pluribus_common::messages::Heartbeat;
use pluribus_common::wire::decode;

use crate::feed::Change;
use crate::figures::Span;

/// The last two heartbeats of one agent.
#[derive(Debug, Clone)]
pub struct Beats {
    /// The latest.
    pub latest: Heartbeat,
    /// The one before, if any.
    pub previous: Option<Heartbeat>,
}

/// Every agent's last two heartbeats, by agent id.
#[derive(Debug, Clone, Default)]
pub struct AgentBeats {
    /// By agent id.
    pub agents: BTreeMap<String, Beats>,
}

impl AgentBeats {
    /// Applies one change of the agents bucket. An entry that does not decode is logged
    /// and skipped.
    pub fn apply(&mut self, c: Change) {
        if !c.live {
            self.agents.remove(&c.key);
            return;
        }
        match decode::<Heartbeat>(&c.value) {
            Ok(mut h) => {
                // Liveness by when it arrived, not by the sender's clock.
                h.arrived_ms = c.stored_ms;
                self.insert(c.key, h)
            }
            Err(e) => tracing::warn!(agent = %c.key, error = %e, "ignoring a heartbeat"),
        }
    }

    /// Records a heartbeat of agent `key`; an older one than the latest is ignored.
    ///
    /// Histograms take room (~190 KB each at full range): the latest heartbeat's are
    /// compacted, and the previous one keeps none (rates need only its counters; percentiles
    /// are cumulative, from the latest).
    pub fn insert(&mut self, key: String, mut h: Heartbeat) {
        for c in h.fleets.values_mut() {
            for hist in [
                &mut c.tick_lag_us,
                &mut c.ack_latency_us,
                &mut c.receive_latency_us,
            ] {
                if let Some(x) = hist.as_mut() {
                    *x = x.compacted();
                }
            }
        }
        match self.agents.get_mut(&key) {
            Some(b) if h.ts_ms > b.latest.ts_ms => {
                let mut previous = std::mem::replace(&mut b.latest, h);
                for c in previous.fleets.values_mut() {
                    c.tick_lag_us = None;
                    c.ack_latency_us = None;
                    c.receive_latency_us = None;
                }
                b.previous = Some(previous);
            }
            Some(_) => {}
            None => {
                self.agents.insert(
                    key,
                    Beats {
                        latest: h,
                        previous: None,
                    },
                );
            }
        }
    }

    /// The spans of the agents alive at `now_ms`.
    pub fn live_spans(&self, now_ms: u64) -> Vec<Span<'_>> {
        self.agents
            .values()
            .filter(|b| b.latest.is_alive(now_ms))
            .map(|b| Span {
                latest: &b.latest,
                earlier: b.previous.as_ref(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::fixtures::hb;

    #[test]
    fn older_heartbeats_are_ignored_and_deletes_remove() {
        let mut b = AgentBeats::default();
        let mut h1 = hb("a", 1, None);
        h1.ts_ms = 1_000;
        let mut h2 = hb("a", 2, None);
        h2.ts_ms = 2_000;
        b.insert("a".into(), h1.clone());
        b.insert("a".into(), h2);
        b.insert("a".into(), h1);
        let a = &b.agents["a"];
        assert_eq!(
            (a.latest.devices, a.previous.as_ref().map(|p| p.devices)),
            (2, Some(1))
        );
        b.apply(Change {
            key: "a".into(),
            value: Default::default(),
            live: false,
            expires_ms: None,
            stored_ms: None,
        });
        assert!(b.agents.is_empty());
        b.apply(Change {
            key: "x".into(),
            value: bytes::Bytes::from_static(b"junk"),
            live: true,
            expires_ms: None,
            stored_ms: None,
        });
        assert!(b.agents.is_empty());
    }
}
