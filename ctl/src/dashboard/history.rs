//! The figures of the last minutes, one point a second for the cluster and each fleet:
//! what the page's charts start from and what a report covers. A fleet's points older than
//! [`FINE`] are folded into one point per [`COARSE`] (a chart is ~340 pixels wide: 15
//! minutes at 5 s is 180 points), so a fleet costs ~20 KB for 15 minutes, not ~80 KB.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::Serialize;

use super::model::{Injected, Model};
use crate::connections::Connections;
use crate::figures::Figures;

/// The series of the whole cluster (kept at one point a second).
pub const CLUSTER: &str = "";

/// How long a fleet's points stay one a second.
pub const FINE: Duration = Duration::from_secs(60);
/// One point per this much for a fleet's older points.
pub const COARSE: Duration = Duration::from_secs(5);

/// One second of one series. Small on purpose (f32, about 64 bytes): 15 minutes of 1000
/// fleets is ~58 MB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Point {
    /// When (Unix ms).
    pub ts_ms: u64,
    /// Devices running.
    pub devices: u32,
    /// Messages per second the schedule asks for.
    pub scheduled: f32,
    /// Messages per second achieved.
    pub achieved: f32,
    /// Tick lag p50 and p99 (µs; cumulative since the agents started, as in `watch`).
    pub lag_p50: Option<f32>,
    /// See `lag_p50`.
    pub lag_p99: Option<f32>,
    /// Acknowledgement latency p50 and p99 (µs), for sinks with acknowledgements.
    pub ack_p50: Option<f32>,
    /// See `ack_p50`.
    pub ack_p99: Option<f32>,
    /// Devices connected now (MQTT).
    pub connected: u32,
    /// Failed connection attempts per second (all reasons).
    pub connect_failures: f32,
    /// Send errors per second.
    pub errors: f32,
    /// Saturated: the generator is the bottleneck.
    pub saturated: bool,
    /// Messages dropped on purpose per second (network impairments).
    pub dropped: f32,
    /// Messages sent twice on purpose per second.
    pub duplicated: f32,
    /// Messages delayed on purpose per second.
    pub delayed: f32,
    /// Devices offline on purpose (partitions).
    pub offline: u32,
}

/// Counters kept to turn totals into rates.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    ts_ms: u64,
    failures: u64,
    errors: u64,
    injected: Injected,
}

/// One series: coarse points first, then one a second.
#[derive(Debug, Default)]
struct Series {
    points: VecDeque<Point>,
    /// How many points at the front are coarse.
    coarse: usize,
    /// Points folded into the last coarse one.
    folded: u32,
    last: Totals,
}

impl Series {
    /// Folds the points older than `fine_from` into coarse ones.
    fn coarsen(&mut self, fine_from: u64) {
        let step = COARSE.as_millis() as u64;
        while self
            .points
            .get(self.coarse)
            .is_some_and(|p| p.ts_ms < fine_from)
        {
            let Some(p) = self.points.remove(self.coarse) else {
                break;
            };
            match self
                .coarse
                .checked_sub(1)
                .and_then(|i| self.points.get_mut(i))
            {
                Some(c) if c.ts_ms / step == p.ts_ms / step => {
                    self.folded += 1;
                    fold(c, &p, self.folded);
                }
                _ => {
                    self.points.insert(self.coarse, p);
                    self.coarse += 1;
                    self.folded = 1;
                }
            }
        }
    }
}

/// Folds `p` into `c`, which then stands for `n` points: rates averaged, latency
/// percentiles the highest, gauges the latest.
fn fold(c: &mut Point, p: &Point, n: u32) {
    let mean = |a: f32, b: f32| a + (b - a) / n as f32;
    let high = |a: Option<f32>, b: Option<f32>| match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    c.scheduled = mean(c.scheduled, p.scheduled);
    c.achieved = mean(c.achieved, p.achieved);
    c.connect_failures = mean(c.connect_failures, p.connect_failures);
    c.errors = mean(c.errors, p.errors);
    c.dropped = mean(c.dropped, p.dropped);
    c.duplicated = mean(c.duplicated, p.duplicated);
    c.delayed = mean(c.delayed, p.delayed);
    c.lag_p50 = high(c.lag_p50, p.lag_p50);
    c.lag_p99 = high(c.lag_p99, p.lag_p99);
    c.ack_p50 = high(c.ack_p50, p.ack_p50);
    c.ack_p99 = high(c.ack_p99, p.ack_p99);
    c.saturated |= p.saturated;
    c.devices = p.devices;
    c.connected = p.connected;
    c.offline = p.offline;
}

/// Points per series.
#[derive(Debug)]
pub struct History {
    keep_ms: u64,
    series: BTreeMap<String, Series>,
}

fn rate(now: u64, before: u64, dt_ms: u64) -> f32 {
    if dt_ms == 0 {
        return 0.0;
    }
    (now.saturating_sub(before) as f64 * 1000.0 / dt_ms as f64) as f32
}

/// A total's rate since the last point (0 for a series' first point).
fn since(first: bool, now: u64, before: u64, dt_ms: u64) -> f32 {
    if first {
        0.0
    } else {
        rate(now, before, dt_ms)
    }
}

impl History {
    /// Keeping `keep_ms` of points.
    pub fn new(keep_ms: u64) -> Self {
        Self {
            keep_ms,
            series: BTreeMap::new(),
        }
    }

    /// Records the model's figures: one point for the cluster and one per fleet.
    pub fn record(&mut self, m: &Model) {
        self.push(
            CLUSTER,
            m.ts_ms,
            Some(&m.total),
            Some(&m.connections),
            &m.injected,
        );
        for f in &m.fleets {
            self.push(
                &f.status.name,
                m.ts_ms,
                f.figures.as_ref(),
                f.connections.as_ref(),
                &f.injected,
            );
        }
        let oldest = m.ts_ms.saturating_sub(self.keep_ms);
        let fine_from = m.ts_ms.saturating_sub(FINE.as_millis() as u64);
        self.series.retain(|name, s| {
            if name != CLUSTER {
                s.coarsen(fine_from);
            }
            while s.points.front().is_some_and(|p| p.ts_ms < oldest) {
                s.points.pop_front();
                s.coarse = s.coarse.saturating_sub(1);
            }
            !s.points.is_empty()
        });
    }

    fn push(
        &mut self,
        name: &str,
        ts_ms: u64,
        f: Option<&Figures>,
        c: Option<&Connections>,
        i: &Injected,
    ) {
        let zero = Figures::default();
        let f = f.unwrap_or(&zero);
        let failures: u64 = c.map_or(0, |c| c.connect_failures.values().sum());
        let Series { points, last, .. } = self.series.entry(name.to_string()).or_default();
        let dt = ts_ms.saturating_sub(last.ts_ms);
        let first = last.ts_ms == 0;
        let p = Point {
            ts_ms,
            devices: u32::try_from(f.devices).unwrap_or(u32::MAX),
            scheduled: f.scheduled_per_s as f32,
            achieved: f.msgs_per_s as f32,
            lag_p50: f.tick_lag_us.map(|q| q.p50 as f32),
            lag_p99: f.tick_lag_us.map(|q| q.p99 as f32),
            ack_p50: f.ack_latency_us.map(|q| q.p50 as f32),
            ack_p99: f.ack_latency_us.map(|q| q.p99 as f32),
            connected: c.map_or(0, |c| u32::try_from(c.connected).unwrap_or(u32::MAX)),
            connect_failures: if first {
                0.0
            } else {
                rate(failures, last.failures, dt)
            },
            errors: if first {
                0.0
            } else {
                rate(f.errors_total, last.errors, dt)
            },
            saturated: f.saturated,
            dropped: since(first, i.dropped, last.injected.dropped, dt),
            duplicated: since(first, i.duplicated, last.injected.duplicated, dt),
            delayed: since(first, i.delayed, last.injected.delayed, dt),
            offline: u32::try_from(i.offline).unwrap_or(u32::MAX),
        };
        *last = Totals {
            ts_ms,
            failures,
            errors: f.errors_total,
            injected: *i,
        };
        points.push_back(p);
    }

    /// The points of series `name` (CLUSTER or a fleet) since `since_ms`.
    pub fn points(&self, name: &str, since_ms: u64) -> Vec<Point> {
        self.series.get(name).map_or_else(Vec::new, |s| {
            s.points
                .iter()
                .filter(|p| p.ts_ms >= since_ms)
                .copied()
                .collect()
        })
    }

    /// The last point of series `name`.
    pub fn last(&self, name: &str) -> Option<Point> {
        self.series.get(name).and_then(|s| s.points.back().copied())
    }

    /// Points kept, in all series.
    pub fn kept(&self) -> usize {
        self.series.values().map(|s| s.points.len()).sum()
    }

    /// The fleets with points since `since_ms`.
    pub fn fleets(&self, since_ms: u64) -> Vec<String> {
        self.series
            .iter()
            .filter(|(k, s)| !k.is_empty() && s.points.back().is_some_and(|p| p.ts_ms >= since_ms))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(ts_ms: u64, errors_total: u64, failures: u64) -> Model {
        let mut m = Model {
            ts_ms,
            ..Default::default()
        };
        m.total.errors_total = errors_total;
        m.total.msgs_per_s = 10.0;
        m.connections
            .connect_failures
            .insert("refused".into(), failures);
        m.injected.dropped = failures * 10;
        m.injected.offline = 3;
        m
    }

    #[test]
    fn totals_become_rates_and_old_points_go() {
        let mut h = History::new(10_000);
        h.record(&model(1_000, 5, 7));
        h.record(&model(2_000, 9, 9));
        h.record(&model(3_000, 9, 9));
        let p = h.points(CLUSTER, 0);
        assert_eq!(p.len(), 3);
        assert_eq!((p[0].errors, p[0].connect_failures), (0.0, 0.0));
        assert_eq!((p[1].errors, p[1].connect_failures), (4.0, 2.0));
        assert_eq!((p[0].dropped, p[1].dropped, p[1].offline), (0.0, 20.0, 3));
        assert_eq!(p[2].errors, 0.0);
        assert_eq!(h.points(CLUSTER, 2_500).len(), 1);
        h.record(&model(13_500, 9, 9));
        assert_eq!(h.points(CLUSTER, 0).len(), 1, "older than 10 s dropped");
        assert_eq!(h.last(CLUSTER).map(|p| p.achieved), Some(10.0));
    }

    #[test]
    fn a_fleets_older_points_are_folded_the_clusters_are_not() {
        let mut h = History::new(15 * 60_000);
        let start = 1_000_000u64; // on a 5 s boundary
        let record = pluribus_common::record::FleetRecord::new(
            pluribus_common::record::RecordKind::Fleet,
            pluribus_common::spec::FleetSpec::counted("f", 1),
            0,
            Duration::ZERO,
        );
        let status = crate::state::fleet_status(&record, &Default::default(), &[]);
        for s in 0..300u64 {
            let mut m = model(start + s * 1_000, 0, 0);
            let mut f = m.total.clone();
            // 10 msg/s on even seconds, 20 on odd ones; a lag spike at 100 s.
            f.msgs_per_s = if s % 2 == 0 { 10.0 } else { 20.0 };
            f.tick_lag_us = Some(crate::figures::Quantiles {
                p50: 10,
                p90: 10,
                p99: if s == 100 { 9_000 } else { 10 },
                max: 10,
                count: 1,
            });
            m.fleets.push(super::super::model::FleetView {
                status: status.clone(),
                sink: "nats".into(),
                figures: Some(f),
                connections: None,
                injected: Injected::default(),
            });
            h.record(&m);
        }
        assert_eq!(h.points(CLUSTER, 0).len(), 300);
        let p = h.points("f", 0);
        // 240 s folded into 48 points of 5 s, then the last 60 s one a second.
        assert_eq!(p.len(), 48 + 61, "{}", p.len());
        assert!(p.windows(2).all(|w| w[0].ts_ms < w[1].ts_ms));
        assert!(
            (p[0].achieved - 14.0).abs() < 1e-3,
            "mean of 10, 20, 10, 20, 10: {}",
            p[0].achieved
        );
        assert_eq!(p[20].lag_p99, Some(9_000.0), "the spike is kept");
        assert_eq!(p[21].lag_p99, Some(10.0));
        assert_eq!(h.last("f").map(|p| p.ts_ms), Some(start + 299_000));
    }
}
