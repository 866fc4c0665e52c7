//! Latency percentiles and how they read: what the figures of fleets, agents and the
//! injected network faults share.

use pluribus_common::hist::Hist;
use serde::Serialize;

/// Latency percentiles, in µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Quantiles {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest value.
    pub max: u64,
    /// Number of values.
    pub count: u64,
}

impl Quantiles {
    /// The quantiles of `h`; None when it is empty.
    pub fn of(h: &Hist) -> Option<Self> {
        (h.count() > 0).then(|| Self {
            p50: h.quantile(0.5),
            p90: h.quantile(0.9),
            p99: h.quantile(0.99),
            max: h.max(),
            count: h.count(),
        })
    }
}

/// Latency in µs as text: `850µs`, `12.3ms`, `4.21s`.
pub fn micros(us: u64) -> String {
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 100_000 {
        format!("{:.1}ms", us as f64 / 1e3)
    } else if us < 1_000_000 {
        format!("{:.0}ms", us as f64 / 1e3)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}
