//! The agents' heartbeats as the dashboard keeps them: counters in the heartbeats (for the
//! same code as `status` and `watch`), and latency histograms apart, in a sparse form.
//!
//! A heartbeat carries up to four HDR histograms per fleet; decoded, one is ~40-190 KB (a
//! dense array of counts up to its largest value), and the dashboard would keep one set per
//! agent and fleet: hundreds of MB with a thousand fleets. A [`Sparse`] keeps only the
//! buckets that hold values (16 bytes each; tens to a few hundred for a fleet's latencies).
//! Once a tick the model merges them per fleet, takes the percentiles and drops the merge.
//! Percentiles are those of the merged HDR histograms, exactly (see the tests).

use std::collections::BTreeMap;

use pluribus_common::hist::Hist;
use pluribus_common::messages::{FleetCounters, Heartbeat};
use pluribus_common::wire::decode;

use crate::beats::AgentBeats;
use crate::feed::Change;
use crate::figures::Quantiles;

/// The buckets of one histogram that hold values: (highest value of the bucket, count),
/// lowest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sparse(Box<[(u64, u64)]>);

impl Sparse {
    /// The buckets of `h`.
    pub fn of(h: &Hist) -> Self {
        Self(h.recorded().collect())
    }

    /// Several together: counts of the same bucket added (every histogram of Pluribus has
    /// the same buckets: 3 significant digits from 1).
    pub fn merged<'a>(all: impl IntoIterator<Item = &'a Sparse>) -> Self {
        let mut v: Vec<(u64, u64)> = all.into_iter().flat_map(|s| s.0.iter().copied()).collect();
        v.sort_unstable_by_key(|e| e.0);
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
        for (value, n) in v {
            match out.last_mut() {
                Some(last) if last.0 == value => last.1 = last.1.saturating_add(n),
                _ => out.push((value, n)),
            }
        }
        Self(out.into_boxed_slice())
    }

    /// Values in all.
    pub fn count(&self) -> u64 {
        self.0.iter().fold(0u64, |a, e| a.saturating_add(e.1))
    }

    /// The value at quantile `q` (0 < q <= 1) as HDR's `value_at_quantile` gives it: the
    /// bucket where the running count first reaches `ceil(q * count)`.
    fn quantile(&self, q: f64, count: u64) -> u64 {
        let target = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for &(value, n) in self.0.iter() {
            seen = seen.saturating_add(n);
            if seen >= target {
                return value;
            }
        }
        self.0.last().map_or(0, |e| e.0)
    }

    /// Its percentiles; None when it holds no value.
    pub fn quantiles(&self) -> Option<Quantiles> {
        let count = self.count();
        (count > 0).then(|| Quantiles {
            p50: self.quantile(0.5, count),
            p90: self.quantile(0.9, count),
            p99: self.quantile(0.99, count),
            max: self.0.last().map_or(0, |e| e.0),
            count,
        })
    }

    /// A histogram of the same values again.
    pub fn to_hist(&self) -> Hist {
        Hist::from_recorded(self.0.iter().copied())
    }

    /// Bytes it holds.
    pub fn bytes(&self) -> usize {
        std::mem::size_of_val(&*self.0)
    }
}

/// The latency histograms of one fleet on one agent.
#[derive(Debug, Clone, Default)]
pub struct FleetLatency {
    /// Tick lag (µs).
    pub lag: Option<Sparse>,
    /// Acknowledgement latency (µs).
    pub ack: Option<Sparse>,
    /// End-to-end latency of received messages (µs).
    pub receive: Option<Sparse>,
    /// Delay added by network impairments (µs).
    pub delay: Option<Sparse>,
    /// The same per cohort of the impairments (reports only: the page does not show
    /// cohorts).
    pub cohort_delay: Vec<(String, Sparse)>,
}

impl FleetLatency {
    /// Takes the histograms out of `c`.
    fn take(c: &mut FleetCounters) -> Self {
        let sparse = |h: Option<Hist>| h.map(|h| Sparse::of(&h));
        Self {
            lag: sparse(c.tick_lag_us.take()),
            ack: sparse(c.ack_latency_us.take()),
            receive: sparse(c.receive_latency_us.take()),
            delay: sparse(c.network.as_mut().and_then(|n| n.added_delay_us.take())),
            cohort_delay: c
                .network_cohorts
                .iter_mut()
                .filter_map(|(k, n)| Some((k.clone(), Sparse::of(&n.added_delay_us.take()?))))
                .collect(),
        }
    }

    /// Puts them back into `c`.
    fn restore(&self, c: &mut FleetCounters) {
        let hist = |s: &Option<Sparse>| s.as_ref().map(Sparse::to_hist);
        c.tick_lag_us = hist(&self.lag);
        c.ack_latency_us = hist(&self.ack);
        c.receive_latency_us = hist(&self.receive);
        if let Some(n) = c.network.as_mut() {
            n.added_delay_us = hist(&self.delay);
        }
        for (k, s) in &self.cohort_delay {
            if let Some(n) = c.network_cohorts.get_mut(k) {
                n.added_delay_us = Some(s.to_hist());
            }
        }
    }

    fn any(&self) -> bool {
        [&self.lag, &self.ack, &self.receive, &self.delay]
            .iter()
            .any(|s| s.is_some())
            || !self.cohort_delay.is_empty()
    }

    fn bytes(&self) -> usize {
        [&self.lag, &self.ack, &self.receive, &self.delay]
            .iter()
            .filter_map(|s| s.as_ref())
            .chain(self.cohort_delay.iter().map(|(_, s)| s))
            .map(Sparse::bytes)
            .sum()
    }
}

/// Every agent's last two heartbeats without histograms, and the latest one's histograms.
#[derive(Debug, Default)]
pub struct Beats {
    /// The heartbeats, counters only (what `tabulate`, `status` and the report read).
    pub counters: AgentBeats,
    /// The latest heartbeat's histograms, by agent id then fleet.
    latency: BTreeMap<String, BTreeMap<String, FleetLatency>>,
}

impl Beats {
    /// Applies one change of the agents bucket. An entry that does not decode is logged
    /// and skipped.
    pub fn apply(&mut self, c: Change) {
        if !c.live {
            self.counters.agents.remove(&c.key);
            self.latency.remove(&c.key);
            return;
        }
        match decode::<Heartbeat>(&c.value) {
            Ok(mut h) => {
                // Liveness by when it arrived, not by the sender's clock (as `watch`).
                h.arrived_ms = c.stored_ms;
                self.insert(c.key, h)
            }
            Err(e) => tracing::warn!(agent = %c.key, error = %e, "ignoring a heartbeat"),
        }
    }

    /// Records a heartbeat of agent `key`; one older than the latest is ignored.
    pub fn insert(&mut self, key: String, mut h: Heartbeat) {
        if self
            .counters
            .agents
            .get(&key)
            .is_some_and(|b| h.ts_ms <= b.latest.ts_ms)
        {
            return;
        }
        let latency = h
            .fleets
            .iter_mut()
            .map(|(name, c)| (name.clone(), FleetLatency::take(c)))
            .filter(|(_, l)| l.any())
            .collect();
        self.latency.insert(key.clone(), latency);
        self.counters.insert(key, h);
    }

    /// The histograms of the agents alive at `now_ms`, by fleet.
    pub fn live_latency(&self, now_ms: u64) -> BTreeMap<&str, Vec<&FleetLatency>> {
        let mut out: BTreeMap<&str, Vec<&FleetLatency>> = BTreeMap::new();
        for (key, b) in &self.counters.agents {
            if !b.latest.is_alive(now_ms) {
                continue;
            }
            for (fleet, l) in self.latency.get(key).into_iter().flatten() {
                out.entry(fleet.as_str()).or_default().push(l);
            }
        }
        out
    }

    /// Every agent's latest heartbeat with its histograms (what a report's window ends
    /// with): made for the report and dropped with it.
    pub fn latest_with_histograms(&self) -> Vec<Heartbeat> {
        self.counters
            .agents
            .iter()
            .map(|(key, b)| {
                let mut h = b.latest.clone();
                if let Some(l) = self.latency.get(key) {
                    for (fleet, c) in h.fleets.iter_mut() {
                        if let Some(l) = l.get(fleet) {
                            l.restore(c);
                        }
                    }
                }
                h
            })
            .collect()
    }

    /// Bytes the kept histograms hold.
    pub fn latency_bytes(&self) -> usize {
        self.latency
            .values()
            .flat_map(|m| m.values())
            .map(FleetLatency::bytes)
            .sum()
    }
}

/// Merged percentiles of one kind of histogram of `all`.
pub fn merged(
    all: &[&FleetLatency],
    pick: impl Fn(&FleetLatency) -> Option<&Sparse>,
) -> Option<Quantiles> {
    let parts: Vec<&Sparse> = all.iter().filter_map(|l| pick(l)).collect();
    match parts.as_slice() {
        [] => None,
        [one] => one.quantiles(),
        _ => Sparse::merged(parts).quantiles(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::fixtures::hb;

    fn hist(seed: u64, n: u64, scale: u64) -> Hist {
        let mut h = Hist::new();
        let mut x = seed;
        for _ in 0..n {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            h.record((x >> 33) % scale + 1);
        }
        h
    }

    #[test]
    fn merged_sparse_percentiles_are_those_of_the_merged_histograms() {
        let parts = [
            hist(1, 5_000, 2_000),
            hist(2, 300, 900_000),
            hist(3, 20_000, 50),
        ];
        let mut all = Hist::new();
        for h in &parts {
            all.merge(h);
        }
        let sparse: Vec<Sparse> = parts.iter().map(Sparse::of).collect();
        let merged = Sparse::merged(&sparse);
        assert_eq!(merged.quantiles(), Quantiles::of(&all));
        for q in [0.001, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(merged.quantile(q, merged.count()), all.quantile(q), "q {q}");
        }
        assert_eq!(sparse[0].quantiles(), Quantiles::of(&parts[0]));
        assert_eq!(merged.to_hist().quantile(0.99), all.quantile(0.99));
        // Smaller than the smallest dense histogram of the same values, even with every
        // value below 2048 in a bucket of its own.
        let dense = all.compacted().inner().distinct_values() * 8;
        assert!(merged.bytes() < dense, "{} vs {dense}", merged.bytes());
        assert!(sparse[1].bytes() < 300 * 16 + 1, "{}", sparse[1].bytes());
        assert_eq!(Sparse::default().quantiles(), None);
    }

    #[test]
    fn heartbeats_keep_counters_and_histograms_apart() {
        let mut beats = Beats::default();
        let mut a = hb("a", 3, None);
        let cohort = pluribus_common::messages::NetworkCounters {
            delayed: 5,
            added_delay_us: Some(hist(5, 5, 100_000)),
            ..Default::default()
        };
        let c = FleetCounters {
            devices: 3,
            tick_lag_us: Some(hist(4, 1_000, 5_000)),
            network_cohorts: [("10%".to_string(), cohort.clone())].into(),
            ..Default::default()
        };
        a.fleets.insert("f".into(), c.clone());
        let mut older = a.clone();
        older.ts_ms -= 1;
        beats.insert("a".into(), a.clone());
        beats.insert("a".into(), older);
        let kept = &beats.counters.agents["a"].latest;
        assert_eq!(kept.ts_ms, a.ts_ms, "an older heartbeat is ignored");
        assert!(kept.fleets["f"].tick_lag_us.is_none());
        assert!(kept.fleets["f"].network_cohorts["10%"]
            .added_delay_us
            .is_none());
        let live = beats.live_latency(a.ts_ms);
        assert_eq!(
            merged(&live["f"], |l| l.lag.as_ref()),
            c.tick_lag_us.as_ref().and_then(Quantiles::of)
        );
        let whole = beats.latest_with_histograms();
        assert_eq!(
            whole[0].fleets["f"]
                .tick_lag_us
                .as_ref()
                .map(|h| h.quantile(0.5)),
            c.tick_lag_us.as_ref().map(|h| h.quantile(0.5))
        );
        let delay = |c: &FleetCounters| {
            c.network_cohorts["10%"]
                .added_delay_us
                .as_ref()
                .map(|h| (h.count(), h.quantile(0.99)))
        };
        assert_eq!(delay(&whole[0].fleets["f"]), delay(&c));
        assert!(beats.latency_bytes() > 0);
        beats.apply(Change {
            key: "a".into(),
            value: Default::default(),
            live: false,
            expires_ms: None,
            stored_ms: None,
        });
        assert!(beats.counters.agents.is_empty() && beats.latency_bytes() == 0);
    }
}
