//! What the agents' network impairments injected, per fleet over a span: shown by `watch`
//! and `report` next to the figures, so that a user can tell the faults Pluribus caused
//! from the ones of the system under test.

use std::collections::BTreeMap;

use pluribus_common::hist::Hist;
use pluribus_common::messages::{NetworkCounters, NO_COHORT};
use serde::Serialize;

use crate::quantiles::{micros, Quantiles};

/// Injected faults of a fleet or an agent over a span.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NetFigures {
    /// Messages dropped on purpose.
    pub dropped: u64,
    /// Messages sent twice on purpose.
    pub duplicated: u64,
    /// Messages delayed on purpose.
    pub delayed: u64,
    /// Messages held back behind later ones.
    pub reordered: u64,
    /// Payloads mangled.
    pub corrupted: u64,
    /// Messages that waited for a bandwidth cap.
    pub throttled: u64,
    /// Messages kept by offline devices.
    pub buffered: u64,
    /// Buffered messages sent when their device came back.
    pub flushed: u64,
    /// Messages offline devices lost.
    pub buffer_dropped: u64,
    /// Devices that went offline.
    pub partitions_started: u64,
    /// Devices that came back.
    pub partitions_ended: u64,
    /// Device connections closed or stalled on purpose (partitions, flapping).
    pub disconnects: u64,
    /// Percentiles of the delay added (µs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added_delay_us: Option<Quantiles>,
    /// The same per cohort (`10%`, `0..100`, `zone=eu`; `none`: devices no cohort's rule
    /// applies to), which add up to the figures above.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub cohorts: BTreeMap<String, NetFigures>,
    #[serde(skip)]
    hist: Option<Hist>,
}

fn delta(now: u64, before: u64) -> u64 {
    if now >= before {
        now - before
    } else {
        now
    }
}

impl NetFigures {
    /// Adds one agent's counters over a span (`before`: at its start, if known).
    pub fn add(&mut self, now: &NetworkCounters, before: Option<&NetworkCounters>, span: bool) {
        let zero = NetworkCounters::default();
        let b = before.unwrap_or(&zero);
        self.dropped += delta(now.dropped, b.dropped);
        self.duplicated += delta(now.duplicated, b.duplicated);
        self.delayed += delta(now.delayed, b.delayed);
        self.reordered += delta(now.reordered, b.reordered);
        self.corrupted += delta(now.corrupted, b.corrupted);
        self.throttled += delta(now.throttled, b.throttled);
        self.buffered += delta(now.buffered, b.buffered);
        self.flushed += delta(now.flushed, b.flushed);
        self.buffer_dropped += delta(now.buffer_dropped, b.buffer_dropped);
        self.partitions_started += delta(now.partitions_started, b.partitions_started);
        self.partitions_ended += delta(now.partitions_ended, b.partitions_ended);
        self.disconnects += delta(now.disconnects, b.disconnects);
        if let Some(h) = &now.added_delay_us {
            let mut h = h.clone();
            if span {
                if let Some(b) = &b.added_delay_us {
                    h.subtract(b);
                }
            }
            Hist::merge_into(&mut self.hist, h);
        }
        self.added_delay_us = self.hist.as_ref().and_then(Quantiles::of);
    }

    /// Adds one agent's per-cohort counters over a span (`before`: at its start).
    pub fn add_cohorts(
        &mut self,
        now: &BTreeMap<String, NetworkCounters>,
        before: Option<&BTreeMap<String, NetworkCounters>>,
        span: bool,
    ) {
        for (k, n) in now {
            self.cohorts
                .entry(k.clone())
                .or_default()
                .add(n, before.and_then(|b| b.get(k)), span);
        }
    }

    /// `network of FLEET injected: …`, then a line per cohort when the rules name any.
    pub fn lines(&self, fleet: &str) -> String {
        let mut out = format!("network of {fleet} injected: {}\n", self.describe());
        if self.cohorts.keys().any(|k| k != NO_COHORT) {
            for (k, c) in &self.cohorts {
                let who = if k == NO_COHORT {
                    "devices in no cohort".to_string()
                } else {
                    format!("cohort {k}")
                };
                out.push_str(&format!("  {who}: {}\n", c.describe()));
            }
        }
        out
    }

    /// One line: `dropped 12, delayed 3000 (added p50 200.0ms, p99 310.2ms), ...`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (n, v) in [
            ("dropped", self.dropped),
            ("duplicated", self.duplicated),
            ("reordered", self.reordered),
            ("corrupted", self.corrupted),
            ("throttled", self.throttled),
            ("devices went offline", self.partitions_started),
            ("came back", self.partitions_ended),
            ("connections cut", self.disconnects),
            ("buffered", self.buffered),
            ("flushed", self.flushed),
            ("lost from offline buffers", self.buffer_dropped),
        ] {
            if v > 0 {
                parts.push(format!("{n} {v}"));
            }
        }
        if self.delayed > 0 {
            let added = self.added_delay_us.map_or(String::new(), |q| {
                format!(" (added p50 {}, p99 {})", micros(q.p50), micros(q.p99))
            });
            parts.insert(0, format!("delayed {}{added}", self.delayed));
        }
        if parts.is_empty() {
            "nothing injected".into()
        } else {
            parts.join(", ")
        }
    }
}
