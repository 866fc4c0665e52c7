//! Named network presets users recognise. `pluribusctl network presets` lists them with
//! their parameters.

use std::time::Duration;

use super::{
    BandwidthSpec, ChanceSpec, Distribution, DurationDist, FlapSpec, GilbertSpec, Impairments,
    LatencySpec, LossSpec, ReorderSpec,
};

/// A named set of impairments.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    /// Its name (`preset: 3g`, `--preset 3g`).
    pub name: &'static str,
    /// What link it imitates.
    pub about: &'static str,
    make: fn() -> Impairments,
}

impl Preset {
    /// Its impairments.
    pub fn impairments(&self) -> Impairments {
        (self.make)()
    }
}

fn latency(delay_ms: u64, jitter_ms: u64, distribution: Distribution, corr: f64) -> LatencySpec {
    LatencySpec {
        delay: Duration::from_millis(delay_ms),
        jitter: Duration::from_millis(jitter_ms),
        distribution,
        correlation: corr,
    }
}

fn loss(p: f64) -> LossSpec {
    LossSpec {
        probability: p,
        gilbert: None,
    }
}

/// Every preset.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "3g",
        about: "a fair 3G link: 200 ms ± 80 ms (normal, correlated), 2% loss, 384 kbit/s",
        make: || Impairments {
            latency: Some(latency(200, 80, Distribution::Normal, 0.25)),
            loss: Some(loss(0.02)),
            bandwidth: Some(BandwidthSpec {
                bytes_per_s: 48_000,
                burst_bytes: None,
            }),
            ..Impairments::default()
        },
    },
    Preset {
        name: "edge",
        about: "2G/EDGE: 600 ms ± 200 ms (normal), 5% loss, 64 kbit/s",
        make: || Impairments {
            latency: Some(latency(600, 200, Distribution::Normal, 0.25)),
            loss: Some(loss(0.05)),
            bandwidth: Some(BandwidthSpec {
                bytes_per_s: 8_000,
                burst_bytes: None,
            }),
            ..Impairments::default()
        },
    },
    Preset {
        name: "lossy-wifi",
        about: "crowded Wi-Fi: 5 ms + pareto jitter (mean 20 ms), bursty loss (Gilbert-Elliott: about 5% overall, mostly in bursts), 0.5% duplicates, 1% reordered",
        make: || Impairments {
            latency: Some(latency(5, 20, Distribution::Pareto, 0.0)),
            loss: Some(LossSpec {
                probability: 0.0,
                gilbert: Some(GilbertSpec {
                    enter_bad: 0.02,
                    leave_bad: 0.25,
                    loss_good: 0.01,
                    loss_bad: 0.6,
                }),
            }),
            duplicate: Some(ChanceSpec { probability: 0.005 }),
            reorder: Some(ReorderSpec {
                probability: 0.01,
                gap: 2,
            }),
            ..Impairments::default()
        },
    },
    Preset {
        name: "satellite",
        about: "geostationary satellite: 600 ms ± 50 ms (normal), 1% loss, 1 Mbit/s",
        make: || Impairments {
            latency: Some(latency(600, 50, Distribution::Normal, 0.5)),
            loss: Some(loss(0.01)),
            bandwidth: Some(BandwidthSpec {
                bytes_per_s: 125_000,
                burst_bytes: None,
            }),
            ..Impairments::default()
        },
    },
    Preset {
        name: "flapping",
        about: "an unstable cellular link: each device's connection drops after 60 s ± 20 s up and stays down 10 s ± 5 s (messages buffered meanwhile, sent on reconnect), 100 ms ± 30 ms (normal)",
        make: || Impairments {
            latency: Some(latency(100, 30, Distribution::Normal, 0.25)),
            flap: Some(FlapSpec {
                uptime: Some(DurationDist::ms(60_000, 20_000)),
                per_minute: None,
                downtime: DurationDist::ms(10_000, 5_000),
                offline: None,
            }),
            ..Impairments::default()
        },
    },
];

/// The preset called `name`.
pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}
