//! How long claiming a shard of a 7-day-old rate-shaped fleet spends on its pace (Φ at
//! now, from the load's origin), per shape: the closed form the agents use, and the
//! step-by-step sum over every 100 ms of the week it replaced. Run by bench/pace.sh:
//!
//!     cargo run --release -p pluribus-common --example pace_claim
//!
//! Prints Markdown rows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use pluribus_common::load::{LoadSpec, Pace, RateSpec, Shape, Stage};

const AGE: Duration = Duration::from_secs(7 * 24 * 3600);
const RUNS: usize = 21;

/// Φ over every 100 ms step from the origin, as it was computed before.
fn step_by_step(p: &Pace, origin: u64, now: u64) -> f64 {
    let (mut cursor, mut phi) = (origin, 0.0);
    while cursor + 100 <= now {
        phi += p.rate_at(cursor) * 0.1;
        cursor += 100;
    }
    phi + p.rate_at(cursor) * (now - cursor) as f64 / 1000.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let s = Duration::from_secs;
    let shapes: Vec<(&str, Option<Shape>, Option<Shape>)> = vec![
        ("constant rate", None, None),
        (
            "ramp over 1h",
            Some(Shape::Ramp {
                to: None,
                over: s(3600),
                from: 0.0,
            }),
            None,
        ),
        (
            "stairs of 10% every 10 min",
            Some(Shape::Stairs {
                step: 100.0,
                every: s(600),
            }),
            None,
        ),
        (
            "stages (3 over 2h)",
            Some(Shape::Stages(vec![
                Stage {
                    target: 500.0,
                    duration: s(1800),
                },
                Stage {
                    target: 1000.0,
                    duration: s(3600),
                },
                Stage {
                    target: 200.0,
                    duration: s(1800),
                },
            ])),
            None,
        ),
        (
            "wave, 1 h period",
            Some(Shape::Wave {
                period: s(3600),
                min: 0.2,
                max: 1.0,
            }),
            None,
        ),
        (
            "bursts every 30 s, held 5 s",
            Some(Shape::Bursts {
                every: s(30),
                size: 300.0,
                hold: s(5),
                base: 100.0,
            }),
            None,
        ),
        (
            "wave rate, ramp arrival over 1h",
            Some(Shape::Wave {
                period: s(600),
                min: 0.2,
                max: 1.0,
            }),
            Some(Shape::Ramp {
                to: None,
                over: s(3600),
                from: 1.0,
            }),
        ),
    ];
    let now = 1_800_000_000_000u64;
    let origin = now - AGE.as_millis() as u64;
    println!("| shape (7-day-old fleet, 1000 devices) | Φ at claim, closed form (median of {RUNS}) | step by step (before) |");
    println!("|---|---|---|");
    for (name, rate, arrival) in shapes {
        let load = LoadSpec {
            arrival,
            rate: Some(RateSpec {
                target: 1000.0,
                shape: rate,
            }),
            max_device_rate: 1000.0,
        };
        let mut times = Vec::new();
        let mut phi = 0.0;
        for _ in 0..RUNS {
            let t0 = Instant::now();
            let mut p = Pace::new(load.clone(), origin, 1000, 42);
            phi = std::hint::black_box(p.phi(now));
            times.push(t0.elapsed());
        }
        // Bursts were O(t) per step (each evaluation walks every burst since the origin):
        // a week step by step is out of reach, so the old way is timed on a 1-hour-old
        // fleet, and compared there.
        let bursts = name.starts_with("bursts");
        let from = if bursts { now - 3_600_000 } else { origin };
        let p = Pace::new(load.clone(), from, 1000, 42);
        let t0 = Instant::now();
        let old = step_by_step(&p, from, now);
        let old_t = t0.elapsed();
        let new = if bursts {
            Pace::new(load, from, 1000, 42).phi(now)
        } else {
            phi
        };
        let rel = (new - old).abs() / old.abs().max(1e-9);
        assert!(rel < 1e-6, "{name}: {new} vs {old}");
        println!(
            "| {name} | {:.3} ms | {:.1} ms{} (same Φ within {rel:.0e}) |",
            median(times).as_secs_f64() * 1e3,
            old_t.as_secs_f64() * 1e3,
            if bursts {
                " for a 1-hour-old fleet"
            } else {
                ""
            }
        );
    }
}
