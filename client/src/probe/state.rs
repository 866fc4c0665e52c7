//! What a probe saw, kept so that it can be counted, saved and merged.
//!
//! Per device: the seqs seen (as ranges), how many messages arrived and how many arrived
//! after a higher seq of the same device. From those:
//! - **lost**: seqs missing between the device's first and last seq seen (a device that
//!   starts mid-run, or whose last messages fall after the window, loses nothing);
//! - **duplicates**: messages received minus distinct seqs;
//! - **out of order**: messages whose seq was below one seen before (duplicates excluded).
//!
//! Merging the states of several probes is exact for everything but *out of order*, which
//! depends on the order each probe saw (the merge adds them up). End-to-end latency (receive
//! time minus the payload's `ts`) goes into one HDR histogram per fleet.

use std::collections::BTreeMap;

use pluribus_common::hist::Hist;
use serde::{Deserialize, Serialize};

use super::seqset::SeqSet;

/// The format tag of a saved probe state.
pub const FORMAT: &str = "pluribus-probe/1";

/// One telemetry message, as the probe reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation<'a> {
    /// Fleet name.
    pub fleet: &'a str,
    /// Device id.
    pub device_id: &'a str,
    /// The device's sequence number.
    pub seq: u64,
    /// When the device sent it (Unix ms), if the payload says.
    pub ts_ms: Option<u64>,
}

/// One device.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceState {
    /// Seqs seen.
    pub seqs: SeqSet,
    /// Messages received (duplicates included).
    pub received: u64,
    /// Messages that arrived after a higher seq.
    pub out_of_order: u64,
    /// Sum of the latencies measured (µs).
    pub latency_sum_us: u64,
    /// Latencies measured.
    pub latency_count: u64,
    /// Largest latency (µs).
    pub latency_max_us: u64,
}

/// One fleet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetState {
    /// End-to-end latency (µs) of the fleet's messages.
    pub latency_us: Hist,
    /// Devices by id.
    pub devices: BTreeMap<String, DeviceState>,
}

/// Everything one probe (or a merge of probes) saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeState {
    /// [`FORMAT`].
    pub format: String,
    /// What was probed (`nats:SUBJECT`, `mqtt://…/FILTER`; merged: joined with `+`).
    pub source: String,
    /// When the probe started listening (Unix ms).
    pub started_ms: u64,
    /// When it stopped (Unix ms).
    pub ended_ms: u64,
    /// Messages without a `device_id` and a numeric `seq` (not JSON, or another shape).
    pub unparsed: u64,
    /// Messages whose `ts` was ahead of the probe's clock (latency counted as 0).
    pub clock_ahead: u64,
    /// Fleets by name.
    pub fleets: BTreeMap<String, FleetState>,
}

/// Loss, duplicates and order of some devices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Devices.
    pub devices: u64,
    /// Messages received.
    pub received: u64,
    /// Seqs missing between each device's first and last.
    pub lost: u64,
    /// Messages received more than once.
    pub duplicates: u64,
    /// Messages that arrived after a higher seq of their device.
    pub out_of_order: u64,
}

impl Counts {
    fn add(&mut self, o: Counts) {
        self.devices += o.devices;
        self.received += o.received;
        self.lost += o.lost;
        self.duplicates += o.duplicates;
        self.out_of_order += o.out_of_order;
    }
}

impl DeviceState {
    /// Counts one message, with its latency if known.
    pub fn record(&mut self, seq: u64, latency_us: Option<u64>) {
        self.received += 1;
        let higher_seen = self.seqs.last().is_some_and(|last| seq < last);
        if self.seqs.insert(seq) && higher_seen {
            self.out_of_order += 1;
        }
        if let Some(us) = latency_us {
            self.latency_sum_us += us;
            self.latency_count += 1;
            self.latency_max_us = self.latency_max_us.max(us);
        }
    }

    /// This device's counts.
    pub fn counts(&self) -> Counts {
        Counts {
            devices: 1,
            received: self.received,
            lost: self.seqs.missing(),
            duplicates: self.received.saturating_sub(self.seqs.len()),
            out_of_order: self.out_of_order,
        }
    }

    fn merge(&mut self, o: &DeviceState) {
        self.seqs.union(&o.seqs);
        self.received += o.received;
        self.out_of_order += o.out_of_order;
        self.latency_sum_us += o.latency_sum_us;
        self.latency_count += o.latency_count;
        self.latency_max_us = self.latency_max_us.max(o.latency_max_us);
    }
}

impl FleetState {
    /// The fleet's counts.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        self.devices.values().for_each(|d| c.add(d.counts()));
        c
    }
}

impl ProbeState {
    /// An empty state for `source`, started at `now_ms`.
    pub fn new(source: &str, now_ms: u64) -> Self {
        Self {
            format: FORMAT.into(),
            source: source.into(),
            started_ms: now_ms,
            ended_ms: now_ms,
            unparsed: 0,
            clock_ahead: 0,
            fleets: BTreeMap::new(),
        }
    }

    /// Counts one message received at `recv_us` (Unix µs).
    pub fn record(&mut self, o: &Observation<'_>, recv_us: u64) {
        let fleet = match self.fleets.get_mut(o.fleet) {
            Some(f) => f,
            None => self.fleets.entry(o.fleet.to_string()).or_default(),
        };
        let latency = o.ts_ms.map(|ts| {
            let sent_us = ts.saturating_mul(1000);
            if sent_us > recv_us {
                self.clock_ahead += 1;
            }
            recv_us.saturating_sub(sent_us)
        });
        if let Some(us) = latency {
            fleet.latency_us.record(us);
        }
        let device = match fleet.devices.get_mut(o.device_id) {
            Some(d) => d,
            None => fleet.devices.entry(o.device_id.to_string()).or_default(),
        };
        device.record(o.seq, latency);
    }

    /// Counts a message the probe could not read.
    pub fn unreadable(&mut self) {
        self.unparsed += 1;
    }

    /// Every fleet's counts added up.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        self.fleets.values().for_each(|f| c.add(f.counts()));
        c
    }

    /// Every fleet's latencies in one histogram.
    pub fn latency_us(&self) -> Hist {
        let mut h = Hist::new();
        self.fleets.values().for_each(|f| h.merge(&f.latency_us));
        h
    }

    /// Adds what another probe saw.
    pub fn merge(&mut self, o: &ProbeState) {
        if self.fleets.is_empty() && self.unparsed == 0 && self.source.is_empty() {
            self.started_ms = o.started_ms;
            self.ended_ms = o.ended_ms;
        }
        self.started_ms = self.started_ms.min(o.started_ms);
        self.ended_ms = self.ended_ms.max(o.ended_ms);
        self.source = match (self.source.is_empty(), o.source.is_empty()) {
            (true, _) => o.source.clone(),
            (false, true) => self.source.clone(),
            (false, false) => format!("{}+{}", self.source, o.source),
        };
        self.unparsed += o.unparsed;
        self.clock_ahead += o.clock_ahead;
        for (name, f) in &o.fleets {
            let mine = self.fleets.entry(name.clone()).or_default();
            mine.latency_us.merge(&f.latency_us);
            for (id, d) in &f.devices {
                mine.devices.entry(id.clone()).or_default().merge(d);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs<'a>(fleet: &'a str, device_id: &'a str, seq: u64, ts_ms: u64) -> Observation<'a> {
        Observation {
            fleet,
            device_id,
            seq,
            ts_ms: Some(ts_ms),
        }
    }

    /// Feeds `(device, seq)` pairs, each sent at `1000 + seq` ms and received 5 ms later.
    fn probe(msgs: &[(&str, u64)]) -> ProbeState {
        let mut p = ProbeState::new("test", 0);
        for &(d, seq) in msgs {
            let fleet = if d.starts_with('g') { "g" } else { "f" };
            p.record(&obs(fleet, d, seq, 1000 + seq), (1005 + seq) * 1000);
        }
        p
    }

    #[test]
    fn loss_duplicates_and_order_per_device() {
        // d1 starts at 10 (mid-run: no loss before), loses 12 and 13; d2 repeats 1 and
        // reorders 3/4; d3 is clean.
        let p = probe(&[
            ("d1", 10),
            ("d1", 11),
            ("d1", 14),
            ("d2", 0),
            ("d2", 1),
            ("d2", 1),
            ("d2", 2),
            ("d2", 4),
            ("d2", 3),
            ("d3", 7),
            ("d3", 8),
        ]);
        let f = &p.fleets["f"];
        assert_eq!(
            f.devices["d1"].counts(),
            Counts {
                devices: 1,
                received: 3,
                lost: 2,
                duplicates: 0,
                out_of_order: 0
            }
        );
        assert_eq!(
            f.devices["d2"].counts(),
            Counts {
                devices: 1,
                received: 6,
                lost: 0,
                duplicates: 1,
                out_of_order: 1
            }
        );
        assert_eq!(
            p.counts(),
            Counts {
                devices: 3,
                received: 11,
                lost: 2,
                duplicates: 1,
                out_of_order: 1
            }
        );
        let lat = p.latency_us();
        assert_eq!(lat.count(), 11);
        assert!(
            (5_000..5_010).contains(&lat.quantile(0.5)),
            "HDR keeps 3 digits"
        );
        assert_eq!(f.devices["d3"].latency_max_us, 5_000);
    }

    #[test]
    fn a_late_arrival_fills_a_gap_and_counts_as_out_of_order() {
        let p = probe(&[("d", 1), ("d", 3), ("d", 2)]);
        let c = p.counts();
        assert_eq!((c.lost, c.out_of_order, c.duplicates), (0, 1, 0));
    }

    #[test]
    fn a_ts_ahead_of_the_clock_counts_as_zero_latency() {
        let mut p = ProbeState::new("t", 0);
        p.record(&obs("f", "d", 0, 2_000), 1_000_000);
        assert_eq!(p.clock_ahead, 1);
        assert_eq!(p.fleets["f"].devices["d"].latency_max_us, 0);
    }

    #[test]
    fn merging_two_saved_probes_equals_one_probe_over_the_union() {
        // Two probes share the messages: by device, by message, and some seen by both.
        let all: Vec<(&str, u64)> = (0..200u64)
            .flat_map(|s| {
                ["d1", "d2", "g1"]
                    .into_iter()
                    .map(move |d| (d, s))
                    .filter(|&(d, s)| !(d == "d2" && s % 17 == 5))
            })
            .collect();
        let (mut left, mut right) = (Vec::new(), Vec::new());
        for (i, &m) in all.iter().enumerate() {
            match (m.0, i % 3) {
                ("g1", _) => right.push(m),
                (_, 0) => left.push(m),
                (_, 1) => right.push(m),
                _ => {
                    // Seen by both probes: one duplicate in the union.
                    left.push(m);
                    right.push(m);
                }
            }
        }
        let union: Vec<(&str, u64)> = left.iter().chain(&right).copied().collect();
        let one = probe(&{
            let mut u = union.clone();
            u.sort_by_key(|&(d, s)| (s, d));
            u
        });
        // Through the saved form, as two machines would hand them over.
        let save = |p: &ProbeState| -> ProbeState {
            serde_json::from_str(&serde_json::to_string(p).unwrap()).unwrap()
        };
        let (a, b) = (save(&probe(&left)), save(&probe(&right)));
        let mut merged = ProbeState::new("", 0);
        merged.merge(&a);
        merged.merge(&b);
        assert_eq!(merged.counts(), one.counts());
        assert!(merged.counts().lost > 0 && merged.counts().duplicates > 0);
        for (name, f) in &one.fleets {
            let m = &merged.fleets[name];
            assert_eq!(m.counts(), f.counts(), "fleet {name}");
            for q in [0.5, 0.99, 1.0] {
                assert_eq!(m.latency_us.quantile(q), f.latency_us.quantile(q));
            }
            for (id, d) in &f.devices {
                assert_eq!(m.devices[id].seqs, d.seqs, "device {id}");
                assert_eq!(m.devices[id].counts(), d.counts(), "device {id}");
            }
        }
        assert_eq!(merged.source, "test+test");
    }
}
