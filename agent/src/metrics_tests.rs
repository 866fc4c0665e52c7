//! A long-running fleet's heartbeat stays small.

use pluribus_common::hist::Hist;

use super::*;

/// A day of one fleet at 50k msg/s, a minute at a time: tick lags, acknowledgement and
/// receive latencies and added network delays that wander over the day (a quiet night, a
/// busy afternoon) with rare outliers up to minutes. Returns the heartbeat's encoded size
/// (its fleets map, as the agent ships it) after each hour, and the size of the cumulative
/// histograms at full precision (what Prometheus reads) at the end.
fn a_day() -> (Vec<usize>, usize) {
    let metrics = Metrics::default();
    let fleet = metrics.fleet("f");
    fleet.devices.store(50_000, Relaxed);
    let net = fleet.net.cohort(Some("edge"));
    let mut x = 7u64;
    let mut draw = move |typical: u64| {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let r = x >> 11;
        let v = typical / 2 + r % typical;
        match r % 10_000 {
            0 => v * 5_000,   // a stall: seconds to minutes
            1..=99 => v * 50, // a hiccup
            _ => v,
        }
    };
    let mut sizes = Vec::new();
    for minute in 0..24 * 60u64 {
        // The typical value follows the time of day: 200 µs at night, 5 ms at its busiest.
        let hour = minute / 60;
        let typical = 200 + 4_800 * (12 - (hour as i64 - 14).abs().min(12)) as u64 / 12;
        let lags: Vec<u64> = (0..500).map(|_| draw(typical)).collect();
        fleet.add_tick_lags(&lags);
        // 3M acknowledgements a minute, weighted into 500 draws.
        let mut acks = Hist::new();
        for _ in 0..500 {
            acks.record_n(draw(typical * 3), 6_000);
        }
        fleet.add_ack_latency(&acks);
        for _ in 0..200 {
            fleet.received(Some(draw(typical * 2)));
        }
        net.delayed.fetch_add(1, Relaxed);
        net.add_delays(&[draw(20_000), draw(50_000)]);
        if minute % 60 == 59 {
            let hb = metrics.snapshot();
            sizes.push(serde_json::to_vec(&hb).expect("encode").len());
        }
    }
    let full = serde_json::to_vec(&metrics.counters())
        .expect("encode")
        .len();
    (sizes, full)
}

#[test]
fn a_long_running_fleets_heartbeat_stays_under_a_bound() {
    let (sizes, full) = a_day();
    eprintln!("heartbeat bytes after each hour: {sizes:?}; at 3 digits: {full}");
    // Four histograms of 2 digits (each below MAX_WIRE_BYTES whatever it holds): here
    // under 12 KB all day.
    let bound = 12 * 1024;
    assert!(
        sizes.iter().all(|&s| s < bound),
        "a heartbeat above {bound} bytes: {sizes:?}"
    );
    // It levels off as the coarse buckets in use fill: the last six hours add under 5%.
    let (at_18, end) = (sizes[17], sizes[23]);
    assert!(
        end * 100 < at_18 * 105,
        "{at_18} bytes at 18 h, {end} at 24 h"
    );
    // And it is what makes the difference: at full precision it is several times larger.
    assert!(
        full > 3 * end,
        "cumulative at 3 digits {full}, heartbeat {end}"
    );
}

#[test]
fn prometheus_keeps_the_full_precision_and_the_heartbeat_the_same_counts() {
    let metrics = Metrics::default();
    let fleet = metrics.fleet("f");
    fleet.add_tick_lags(&[1_234, 5_678, 91_011]);
    let net = fleet.net.cohort(Some("edge"));
    net.delayed.fetch_add(1, Relaxed);
    net.add_delays(&[20_000]);
    let full = metrics.counters()["f"].tick_lag_us.clone().expect("lag");
    let beat = metrics.snapshot();
    let hb = beat["f"].tick_lag_us.clone().expect("lag");
    // Every histogram of the heartbeat is coarse: the fleet's injected delays and its
    // cohorts' too.
    let f = &beat["f"];
    let delays = f
        .network
        .iter()
        .chain(f.network_cohorts.values())
        .map(|n| n.added_delay_us.as_ref().expect("delay").digits());
    assert!(f.network_cohorts.contains_key("edge"));
    assert!(delays.into_iter().all(|d| d == 2));
    assert_eq!((full.digits(), hb.digits()), (3, 2));
    assert_eq!(full.count(), hb.count());
    // Each within its precision of the largest value: 0.1% and 1%.
    let near = |v: u64, within: f64| (v as f64 - 91_011.0).abs() <= 91_011.0 * within;
    assert!(near(full.max(), 0.001) && near(hb.max(), 0.01));
}
