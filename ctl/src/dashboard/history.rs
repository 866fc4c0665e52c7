//! The figures of the last minutes, one point a second for the cluster and each fleet:
//! what the page's charts start from and what a report covers.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use super::model::{Injected, Model};
use crate::connections::Connections;
use crate::figures::Figures;

/// The series of the whole cluster.
pub const CLUSTER: &str = "";

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

/// Points per series.
#[derive(Debug)]
pub struct History {
    keep_ms: u64,
    series: BTreeMap<String, (VecDeque<Point>, Totals)>,
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
        self.series.retain(|_, (points, _)| {
            while points.front().is_some_and(|p| p.ts_ms < oldest) {
                points.pop_front();
            }
            !points.is_empty()
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
        let (points, last) = self.series.entry(name.to_string()).or_default();
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
        self.series.get(name).map_or_else(Vec::new, |(p, _)| {
            p.iter().filter(|p| p.ts_ms >= since_ms).copied().collect()
        })
    }

    /// The last point of series `name`.
    pub fn last(&self, name: &str) -> Option<Point> {
        self.series.get(name).and_then(|(p, _)| p.back().copied())
    }

    /// The fleets with points since `since_ms`.
    pub fn fleets(&self, since_ms: u64) -> Vec<String> {
        self.series
            .iter()
            .filter(|(k, (p, _))| !k.is_empty() && p.back().is_some_and(|p| p.ts_ms >= since_ms))
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
}
