//! Shapes and load specs against their definitions.

use std::time::Duration;

use super::*;

fn d(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn ramp_stairs_wave_and_stages_follow_their_definitions() {
    let ramp = Shape::Ramp {
        to: Some(1000.0),
        over: d(60),
        from: 0.0,
    };
    assert_eq!(ramp.value(30.0, 2000.0, 0), 500.0);
    assert_eq!(ramp.value(90.0, 2000.0, 0), 1000.0);
    let stairs = Shape::Stairs {
        step: 100.0,
        every: d(10),
    };
    assert_eq!(stairs.value(0.0, 1000.0, 0), 100.0);
    assert_eq!(stairs.value(25.0, 1000.0, 0), 300.0);
    assert_eq!(stairs.value(1e6, 1000.0, 0), 1000.0);
    let wave = Shape::Wave {
        period: d(60),
        min: 0.2,
        max: 1.0,
    };
    assert!((wave.value(0.0, 100.0, 0) - 20.0).abs() < 1e-9);
    assert!((wave.value(30.0, 100.0, 0) - 100.0).abs() < 1e-9);
    assert!((wave.value(15.0, 100.0, 0) - 60.0).abs() < 1e-9);
    let stages = Shape::Stages(vec![
        Stage {
            target: 1000.0,
            duration: d(60),
        },
        Stage {
            target: 5000.0,
            duration: d(120),
        },
        Stage {
            target: 0.0,
            duration: d(30),
        },
    ]);
    assert_eq!(stages.value(30.0, 1e9, 0), 500.0);
    assert_eq!(stages.value(120.0, 1e9, 0), 3000.0);
    assert_eq!(stages.value(195.0, 1e9, 0), 2500.0);
    assert_eq!(stages.value(500.0, 1e9, 0), 0.0);
}

#[test]
fn bursts_are_poisson_spread_and_repeatable() {
    let b = Shape::Bursts {
        every: d(10),
        size: 50.0,
        hold: d(5),
        base: 10.0,
    };
    let series: Vec<f64> = (0..10_000)
        .map(|i| b.value(i as f64 * 0.1, 1e9, 7))
        .collect();
    assert_eq!(
        series,
        (0..10_000)
            .map(|i| b.value(i as f64 * 0.1, 1e9, 7))
            .collect::<Vec<_>>()
    );
    let on = series.iter().filter(|&&v| v > 10.0).count() as f64 / series.len() as f64;
    // Mean gap 10 s and hold 5 s: some burst is on about 1 - e^-0.5 = 39% of the time.
    assert!((0.25..0.55).contains(&on), "{on}");
    assert!(series
        .iter()
        .all(|&v| v >= 10.0 && (v - 10.0) % 50.0 == 0.0));
}

#[test]
fn impossible_shapes_are_refused_with_the_field() {
    let bad = |l: LoadSpec, field: &str| assert_eq!(l.validate(100).expect_err("bad").field, field);
    let base = LoadSpec {
        arrival: None,
        rate: None,
        max_device_rate: 1000.0,
    };
    bad(
        LoadSpec {
            arrival: Some(Shape::Wave {
                period: d(10),
                min: 0.8,
                max: 0.2,
            }),
            ..base.clone()
        },
        "load.arrival.max",
    );
    bad(
        LoadSpec {
            arrival: Some(Shape::Ramp {
                to: None,
                over: Duration::ZERO,
                from: 0.0,
            }),
            ..base.clone()
        },
        "load.arrival.over",
    );
    bad(
        LoadSpec {
            arrival: Some(Shape::Ramp {
                to: Some(500.0),
                over: d(1),
                from: 0.0,
            }),
            ..base.clone()
        },
        "load.arrival.to",
    );
    bad(
        LoadSpec {
            rate: Some(RateSpec {
                target: 200_000.0,
                shape: None,
            }),
            ..base.clone()
        },
        "load.rate.target",
    );
    bad(
        LoadSpec {
            rate: Some(RateSpec {
                target: -1.0,
                shape: None,
            }),
            ..base.clone()
        },
        "load.rate.target",
    );
    bad(
        LoadSpec {
            arrival: Some(Shape::Stages(vec![])),
            ..base.clone()
        },
        "load.arrival",
    );
    let ok = LoadSpec {
        rate: Some(RateSpec {
            target: 20_000.0,
            shape: Some(Shape::Wave {
                period: d(60),
                min: 0.2,
                max: 1.0,
            }),
        }),
        ..base
    };
    ok.validate(100)
        .expect("20k msg/s over 100 devices is 200 each");
    assert_eq!(ok.device_rate(0.0, 100, 0), Some(40.0));
}

#[test]
fn the_rate_is_shared_by_active_devices_and_capped() {
    let l = LoadSpec {
        arrival: Some(Shape::Ramp {
            to: None,
            over: d(10),
            from: 0.0,
        }),
        rate: Some(RateSpec {
            target: 1000.0,
            shape: None,
        }),
        max_device_rate: 50.0,
    };
    assert_eq!(l.active(5.0, 100, 0), 50);
    assert_eq!(l.device_rate(5.0, 100, 0), Some(20.0));
    assert_eq!(
        l.device_rate(0.1, 100, 0),
        Some(50.0),
        "capped while few devices are on"
    );
    assert!(l.describe(5.0, 100, 0).contains("50 of 100 devices"));
}
