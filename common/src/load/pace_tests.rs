//! Φ in closed form against Φ summed step by step, as it was computed before.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::load::{RateSpec, Shape, Stage};

fn load(shape: Option<Shape>) -> LoadSpec {
    LoadSpec {
        arrival: None,
        rate: Some(RateSpec {
            target: 1000.0,
            shape,
        }),
        max_device_rate: 1000.0,
    }
}

/// Φ summed over every 100 ms step from the origin: the definition.
fn reference(p: &Pace, now_ms: u64) -> f64 {
    let (mut cursor, mut phi) = (p.origin_ms, 0.0);
    while cursor + STEP_MS <= now_ms {
        phi += p.rate_at(cursor) * STEP_MS as f64 / 1000.0;
        cursor += STEP_MS;
    }
    if now_ms <= cursor {
        return phi;
    }
    phi + p.rate_at(cursor) * (now_ms - cursor) as f64 / 1000.0
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()) + 1e-6
}

#[test]
fn a_constant_rate_integrates_exactly() {
    let mut p = Pace::new(load(None), 10_000, 100, 0);
    assert_eq!(p.phi(5_000), 0.0);
    assert!((p.phi(20_000) - 100.0).abs() < 1e-9, "10 s at 10 slots/s");
    assert!((p.phi(20_050) - 100.5).abs() < 1e-9);
}

#[test]
fn two_cursors_agree_whatever_path_they_take() {
    let shape = Some(Shape::Wave {
        period: Duration::from_secs(7),
        min: 0.1,
        max: 1.0,
    });
    let mut a = Pace::new(load(shape.clone()), 0, 10, 3);
    let mut b = Pace::new(load(shape), 0, 10, 3);
    for t in (0..60_000).step_by(37) {
        a.phi(t);
    }
    assert!(close(a.phi(60_000), b.phi(60_000)));
}

#[test]
fn each_shape_takes_its_closed_form() {
    let d = Duration::from_secs;
    let plans = [
        (None, Tail::Constant),
        (
            Some(Shape::Ramp {
                to: None,
                over: d(60),
                from: 0.0,
            }),
            Tail::Constant,
        ),
        (
            Some(Shape::Wave {
                period: d(60),
                min: 0.2,
                max: 1.0,
            }),
            Tail::Periodic { cycle_ms: 60_000 },
        ),
        (
            Some(Shape::Bursts {
                every: d(30),
                size: 100.0,
                hold: d(5),
                base: 10.0,
            }),
            Tail::Bursts,
        ),
    ];
    for (shape, tail) in plans {
        assert_eq!(
            Pace::new(load(shape.clone()), 0, 10, 1).tail,
            tail,
            "{shape:?}"
        );
    }
}

/// A week-old fleet, claimed now: Φ by runs in closed form (not cycles, nor every step)
/// is the sum of its 6M steps.
#[test]
fn a_week_of_waves_ramps_and_stages_sums_by_runs() {
    let d = Duration::from_secs;
    let week = 7 * 24 * 3_600_000;
    let wave = |period| {
        Some(Shape::Wave {
            period,
            min: 0.2,
            max: 1.0,
        })
    };
    let ramp = |from: f64, to: Option<f64>| {
        Some(Shape::Ramp {
            to,
            over: d(3600),
            from,
        })
    };
    let cases = [
        (wave(d(3600)), None),
        (wave(Duration::from_millis(600_123)), ramp(1.0, None)),
        (wave(d(7)), ramp(1000.0, Some(10.0))),
        (None, ramp(1.0, None)),
        (ramp(10.0, Some(900.0)), None),
        (
            Some(Shape::Stages(vec![
                Stage {
                    target: 500.0,
                    duration: d(1800),
                },
                Stage {
                    target: 1500.0,
                    duration: d(3600),
                },
                Stage {
                    target: 0.0,
                    duration: Duration::from_millis(1_234_567),
                },
            ])),
            ramp(1.0, None),
        ),
    ];
    for (rate, arrival) in cases {
        let mut load = load(rate);
        load.arrival = arrival;
        let mut p = Pace::new(load.clone(), 5_000, 1000, 7);
        let now = 5_000 + week;
        assert_eq!(p.advance_runs(now), Some(()), "{load:?}");
        let want = reference(&p, now);
        assert!(
            close(p.phi(now), want),
            "{load:?}: {} vs {want}",
            p.phi(now)
        );
        assert!(close(
            Pace::new(load.clone(), 5_000, 1000, 7).phi(now),
            want
        ));
    }
}

#[test]
fn runs_follow_every_move_of_an_arrival_ramp() {
    let mut load = load(None);
    load.arrival = Some(Shape::Ramp {
        to: Some(3.0),
        over: Duration::from_millis(1_050),
        from: 9.0,
    });
    let p = Pace::new(load, 0, 10, 0);
    // 9 devices down to 3 over 1.05 s: one device less every 175 ms.
    let mut k = 0;
    let mut ends = Vec::new();
    while k < 20 {
        k = p.active_run_end(k, 20).expect("a ramp has runs");
        ends.push(k);
    }
    let changes: Vec<u64> = (1..=20)
        .filter(|&j| j == 20 || p.active_at(j) != p.active_at(j - 1))
        .collect();
    assert_eq!(ends, changes);
}

fn a_shape() -> impl Strategy<Value = Option<Shape>> {
    let ms = |lo: u64, hi: u64| (lo..hi).prop_map(Duration::from_millis);
    prop_oneof![
        Just(None),
        (ms(1, 600_000), 0.0..500.0f64).prop_map(|(over, from)| Some(Shape::Ramp {
            to: None,
            over,
            from
        })),
        (1.0..400.0f64, ms(1, 120_000))
            .prop_map(|(step, every)| Some(Shape::Stairs { step, every })),
        (ms(50, 300_000), 0.0..0.5f64, 0.5..1.0f64)
            .prop_map(|(period, min, max)| Some(Shape::Wave { period, min, max })),
        // Periods that divide the step or nearly (the cosine series loses precision there).
        (
            prop_oneof![
                Just(50u64),
                Just(100),
                Just(200),
                99..101u64,
                3_000_000..7_200_000u64
            ],
            0.0..0.5f64
        )
            .prop_map(|(ms, min)| Some(Shape::Wave {
                period: Duration::from_millis(ms),
                min,
                max: 1.0
            })),
        (
            ms(5_000, 120_000),
            1.0..600.0f64,
            ms(0, 60_000),
            0.0..200.0f64
        )
            .prop_map(|(every, size, hold, base)| Some(Shape::Bursts {
                every,
                size,
                hold,
                base
            })),
        proptest::collection::vec((0.0..1500.0f64, ms(0, 200_000)), 1..4).prop_map(|v| Some(
            Shape::Stages(
                v.into_iter()
                    .map(|(target, duration)| Stage { target, duration })
                    .collect()
            )
        )),
    ]
}

fn an_arrival() -> impl Strategy<Value = Option<Shape>> {
    let ms = |lo: u64, hi: u64| (lo..hi).prop_map(Duration::from_millis);
    prop_oneof![
        Just(None),
        ms(1, 300_000).prop_map(|over| Some(Shape::Ramp {
            to: None,
            over,
            from: 1.0
        })),
        // Ramps down, or to a count of their own (above the fleet's too: clamped).
        (ms(1, 300_000), 0.0..300.0f64, 0.0..300.0f64).prop_map(|(over, from, to)| Some(
            Shape::Ramp {
                to: Some(to),
                over,
                from
            }
        )),
        (ms(1_000, 100_000), 0.1..0.5f64).prop_map(|(period, min)| Some(Shape::Wave {
            period,
            min,
            max: 1.0
        })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the shapes, a claim at any age and the ticks after it give the sum of
    /// every step, up to float rounding.
    #[test]
    fn the_closed_form_is_the_step_by_step_sum(
        shape in a_shape(),
        arrival in an_arrival(),
        cap in prop_oneof![Just(1000.0f64), 0.5..50.0f64],
        count in 1u64..200,
        seed in any::<u64>(),
        origin in 0u64..10_000_000,
        claim in 0u64..1_500_000,
        ticks in proptest::collection::vec(0u64..30_000, 0..5),
    ) {
        let load = LoadSpec {
            arrival,
            rate: Some(RateSpec { target: 1000.0, shape }),
            max_device_rate: cap,
        };
        let mut p = Pace::new(load, origin, count, seed);
        let mut now = origin + claim;
        let got = p.phi(now);
        let want = reference(&p, now);
        prop_assert!(close(got, want), "claim at {claim} ms: {got} vs {want} ({:?})", p.tail);
        for dt in ticks {
            now += dt;
            let got = p.phi(now);
            let want = reference(&p, now);
            prop_assert!(close(got, want), "tick to {now}: {got} vs {want} ({:?})", p.tail);
        }
    }
}
