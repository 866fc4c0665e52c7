//! What a probe reports: the summary (JSON or tables) and the live line.

use std::collections::BTreeMap;

use pluribus_common::hist::Hist;
use serde::Serialize;

use super::state::{Counts, DeviceState, ProbeState};
use crate::figures::micros;
use crate::output::{plural, Table};

/// Latency percentiles in ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencyMs {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Messages with a `ts`.
    pub count: u64,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl LatencyMs {
    fn of(h: &Hist) -> Self {
        Self {
            p50: ms(h.quantile(0.5)),
            p90: ms(h.quantile(0.9)),
            p99: ms(h.quantile(0.99)),
            max: ms(h.max()),
            count: h.count(),
        }
    }
}

/// One fleet's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetSummary {
    /// Counts.
    #[serde(flatten)]
    pub counts: Counts,
    /// Lost as a percentage of what was due between first and last seqs.
    pub loss_pct: f64,
    /// End-to-end latency.
    pub latency_ms: LatencyMs,
}

/// One device's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceSummary {
    /// Messages received.
    pub received: u64,
    /// Lowest seq seen.
    pub first_seq: Option<u64>,
    /// Highest seq seen.
    pub last_seq: Option<u64>,
    /// Seqs missing between them.
    pub lost: u64,
    /// Messages received more than once.
    pub duplicates: u64,
    /// Messages after a higher seq.
    pub out_of_order: u64,
    /// Mean end-to-end latency (ms).
    pub latency_mean_ms: f64,
    /// Largest end-to-end latency (ms).
    pub latency_max_ms: f64,
}

/// The final report of a probe or of merged probes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// What was probed.
    pub source: String,
    /// Listening from (Unix ms).
    pub started_ms: u64,
    /// Until (Unix ms).
    pub ended_ms: u64,
    /// Seconds listened.
    pub duration_s: f64,
    /// Counts over every fleet.
    #[serde(flatten)]
    pub counts: Counts,
    /// Lost as a percentage of what was due between first and last seqs.
    pub loss_pct: f64,
    /// Messages that were not telemetry the probe can read.
    pub unparsed: u64,
    /// Messages whose `ts` was ahead of the probe's clock (clock skew).
    pub clock_ahead: u64,
    /// End-to-end latency over every fleet.
    pub latency_ms: LatencyMs,
    /// Per fleet.
    pub fleets: BTreeMap<String, FleetSummary>,
    /// Per fleet, then device (`--per-device`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_device: Option<BTreeMap<String, BTreeMap<String, DeviceSummary>>>,
}

fn loss_pct(c: &Counts) -> f64 {
    let due = c.received.saturating_sub(c.duplicates) + c.lost;
    if due == 0 {
        0.0
    } else {
        (c.lost as f64 * 100.0 / due as f64 * 1000.0).round() / 1000.0
    }
}

fn device(d: &DeviceState) -> DeviceSummary {
    let c = d.counts();
    DeviceSummary {
        received: c.received,
        first_seq: d.seqs.first(),
        last_seq: d.seqs.last(),
        lost: c.lost,
        duplicates: c.duplicates,
        out_of_order: c.out_of_order,
        latency_mean_ms: ms(d.latency_sum_us.checked_div(d.latency_count).unwrap_or(0)),
        latency_max_ms: ms(d.latency_max_us),
    }
}

impl Summary {
    /// The summary of `state`, with every device if `per_device`.
    pub fn of(state: &ProbeState, per_device: bool) -> Self {
        let counts = state.counts();
        Self {
            source: state.source.clone(),
            started_ms: state.started_ms,
            ended_ms: state.ended_ms,
            duration_s: state.ended_ms.saturating_sub(state.started_ms) as f64 / 1000.0,
            counts,
            loss_pct: loss_pct(&counts),
            unparsed: state.unparsed,
            clock_ahead: state.clock_ahead,
            latency_ms: LatencyMs::of(&state.latency_us()),
            fleets: state
                .fleets
                .iter()
                .map(|(name, f)| {
                    let c = f.counts();
                    let s = FleetSummary {
                        counts: c,
                        loss_pct: loss_pct(&c),
                        latency_ms: LatencyMs::of(&f.latency_us),
                    };
                    (name.clone(), s)
                })
                .collect(),
            per_device: per_device.then(|| {
                state
                    .fleets
                    .iter()
                    .map(|(name, f)| {
                        let devices = f.devices.iter().map(|(id, d)| (id.clone(), device(d)));
                        (name.clone(), devices.collect())
                    })
                    .collect()
            }),
        }
    }

    /// The summary as text: a sentence, a table per fleet, and one per device if asked.
    pub fn render(&self) -> String {
        let mut out = format!(
            "probe of {} for {:.1}s: {} from {} in {}\n\
             loss is counted between each device's first and last seq seen; latency is receive time minus the payload's ts\n\n",
            self.source,
            self.duration_s,
            plural(self.counts.received, "message"),
            plural(self.counts.devices, "device"),
            plural(self.fleets.len() as u64, "fleet"),
        );
        let mut t = Table::new(&[
            "FLEET",
            "DEVICES",
            "RECEIVED",
            "LOST",
            "LOSS%",
            "DUPLICATES",
            "OUT OF ORDER",
            "P50",
            "P99",
            "MAX",
        ]);
        let mut row = |name: &str, c: &Counts, pct: f64, l: &LatencyMs| {
            let lat = |v: f64| {
                if l.count == 0 {
                    "-".to_string()
                } else {
                    micros((v * 1000.0) as u64)
                }
            };
            t.row(vec![
                name.to_string(),
                c.devices.to_string(),
                c.received.to_string(),
                c.lost.to_string(),
                format!("{pct:.2}"),
                c.duplicates.to_string(),
                c.out_of_order.to_string(),
                lat(l.p50),
                lat(l.p99),
                lat(l.max),
            ]);
        };
        for (name, f) in &self.fleets {
            row(name, &f.counts, f.loss_pct, &f.latency_ms);
        }
        if self.fleets.len() != 1 {
            row("TOTAL", &self.counts, self.loss_pct, &self.latency_ms);
        }
        out.push_str(&t.render());
        if let Some(per) = &self.per_device {
            let mut t = Table::new(&[
                "FLEET",
                "DEVICE",
                "RECEIVED",
                "FIRST",
                "LAST",
                "LOST",
                "DUPLICATES",
                "OUT OF ORDER",
                "MEAN",
                "MAX",
            ]);
            for (fleet, devices) in per {
                for (id, d) in devices {
                    let seq = |s: Option<u64>| s.map_or("-".into(), |s| s.to_string());
                    t.row(vec![
                        fleet.clone(),
                        id.clone(),
                        d.received.to_string(),
                        seq(d.first_seq),
                        seq(d.last_seq),
                        d.lost.to_string(),
                        d.duplicates.to_string(),
                        d.out_of_order.to_string(),
                        micros((d.latency_mean_ms * 1000.0) as u64),
                        micros((d.latency_max_ms * 1000.0) as u64),
                    ]);
                }
            }
            out.push('\n');
            out.push_str(&t.render());
        }
        if self.unparsed > 0 {
            out.push_str(&format!(
                "\n{} not read: a probe reads JSON with device_id, fleet, seq and ts\n",
                plural(self.unparsed, "message")
            ));
        }
        if self.clock_ahead > 0 {
            out.push_str(&format!(
                "\n{} had a ts ahead of this machine's clock (latency counted as 0): synchronise the clocks\n",
                plural(self.clock_ahead, "message")
            ));
        }
        out
    }
}

/// The live line on stderr: totals so far and the rate since the previous line.
pub fn live_line(state: &ProbeState, per_s: f64) -> String {
    let c = state.counts();
    let lat = state.latency_us();
    let latency = if lat.count() == 0 {
        String::new()
    } else {
        format!(
            ", latency p50 {} p99 {}",
            micros(lat.quantile(0.5)),
            micros(lat.quantile(0.99))
        )
    };
    // A few fleets: each one's received and lost too.
    let fleets = if (2..=MAX_LIVE_FLEETS).contains(&state.fleets.len()) {
        let each: Vec<String> = state
            .fleets
            .iter()
            .map(|(name, f)| {
                let c = f.counts();
                format!("{name}: {} lost {}", c.received, c.lost)
            })
            .collect();
        format!(" [{}]", each.join("; "))
    } else {
        String::new()
    };
    format!(
        "probe: {} received ({per_s:.0}/s) from {} in {}, lost {}, duplicates {}, out of order {}{latency}{fleets}",
        c.received,
        plural(c.devices, "device"),
        plural(state.fleets.len() as u64, "fleet"),
        c.lost,
        c.duplicates,
        c.out_of_order,
    )
}

/// Most fleets the live line details one by one.
const MAX_LIVE_FLEETS: usize = 4;

#[cfg(test)]
mod tests {
    use super::super::state::Observation;
    use super::*;

    #[test]
    fn the_summary_has_the_documented_fields() {
        let mut p = ProbeState::new("nats:t.>", 1_000);
        for seq in [0, 1, 3, 3] {
            let o = Observation {
                fleet: "f",
                device_id: "d",
                seq,
                ts_ms: Some(2_000),
            };
            p.record(&o, 2_004_000);
        }
        p.unreadable();
        p.ended_ms = 5_000;
        let s = Summary::of(&p, true);
        let j = serde_json::to_value(&s).unwrap();
        for k in [
            "received",
            "lost",
            "duplicates",
            "out_of_order",
            "devices",
            "unparsed",
        ] {
            assert!(j[k].is_u64(), "{k}: {j}");
        }
        assert_eq!(
            (j["received"].as_u64(), j["lost"].as_u64()),
            (Some(4), Some(1))
        );
        assert_eq!(j["duplicates"], 1);
        assert_eq!(j["duration_s"], 4.0);
        assert_eq!(j["loss_pct"], 25.0);
        assert!(j["latency_ms"]["p50"]
            .as_f64()
            .is_some_and(|v| (4.0..4.01).contains(&v)));
        assert_eq!(j["fleets"]["f"]["lost"], 1);
        assert_eq!(j["per_device"]["f"]["d"]["last_seq"], 3);
        let text = s.render();
        assert!(
            text.contains("probe of nats:t.> for 4.0s: 4 messages from 1 device in 1 fleet"),
            "{text}"
        );
        assert!(text.contains("1 message not read"), "{text}");
        assert!(live_line(&p, 2.0)
            .starts_with("probe: 4 received (2/s) from 1 device in 1 fleet, lost 1"));
        p.record(
            &Observation {
                fleet: "g",
                device_id: "e",
                seq: 0,
                ts_ms: None,
            },
            0,
        );
        assert!(live_line(&p, 2.0).ends_with("[f: 4 lost 1; g: 1 lost 0]"));
    }
}
