//! Φ, the integral of the per-device rate: what makes a fleet-wide rate the same `seq`
//! on every agent.
//!
//! Φ is a sum over a fixed 100 ms grid from the load's origin. Summed step by step, a
//! week-old fleet is 6M steps at every claim; instead the sum is taken in closed form past
//! the shapes' moving part, which is bounded by the shapes, not by the fleet's age:
//! - once every shape has settled (a ramp, stages or stairs past their end, no shape), the
//!   rate is constant: steps × rate;
//! - a wave rate over a number of devices that holds (no arrival shape, a settled one, or
//!   between two moves of an arrival ramp) is a cosine series, summed in closed form while
//!   the per-device cap does not bind on part of it (`pace_runs.rs`); runs of a constant
//!   rate the same way;
//! - otherwise a wave (in the rate or the arrival) repeats every `lcm(period, 100 ms)`:
//!   whole cycles are one cycle's sum times their number;
//! - bursts change the rate only where a burst starts or ends: the sum goes from one such
//!   change to the next (a few per burst, however long the fleet ran).
//!
//! The result equals the step-by-step sum up to float rounding (a property test compares
//! them).

use std::collections::VecDeque;

use super::{LoadSpec, Shape};

/// Grid step of Φ's integral, in ms.
const STEP_MS: u64 = 100;
/// The longest wave cycle summed once and repeated (100,000 steps: 10,000 s).
const MAX_CYCLE_STEPS: u64 = 100_000;
/// Advances this short go step by step (a running shard moves a few steps per tick).
const SHORT_STEPS: u64 = 64;

/// What the rate does once the settling shapes have settled.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tail {
    /// Constant.
    Constant,
    /// Repeats every `cycle_ms` (a multiple of the step).
    Periodic { cycle_ms: u64 },
    /// Bursts on the rate, the arrival settled.
    Bursts,
    /// None of the above: step by step.
    Steps,
}

/// The pace of a fleet with a fleet-wide rate (open model): Φ(t), the number of slots
/// each active device has had since the load started, is the integral of the per-device
/// rate over a fixed 100 ms grid. Every agent (and pluribusctl) computes the same
/// function on the same grid, so a device's slot `k` (sent when Φ reaches `k + phase`) is
/// the same `seq` whichever agent runs it, after failover too.
/// This is a cursor over Φ: it moves forward only.
#[derive(Debug, Clone)]
pub struct Pace {
    load: LoadSpec,
    origin_ms: u64,
    count: u64,
    seed: u64,
    cursor_ms: u64,
    phi: f64,
    /// Grid offset (ms from the origin) from which the rate follows `tail`.
    settled_ms: u64,
    tail: Tail,
    /// One wave cycle's sum, once computed.
    cycle_sum: Option<f64>,
}

/// `a` and `b`'s least common multiple, if it fits.
fn lcm(a: u64, b: u64) -> Option<u64> {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    (a / gcd(a, b)).checked_mul(b)
}

/// How a shape behaves for the plan: settles after (s), repeats every (ms), bursts, or
/// none of these (step by step).
enum Kind {
    Settles(f64),
    Repeats(Option<u64>),
    Bursts,
    Other,
}

fn kind(shape: Option<&Shape>, max: f64) -> Kind {
    let Some(s) = shape else {
        return Kind::Settles(0.0);
    };
    if let Some(t) = s.settles_after(max) {
        return Kind::Settles(t);
    }
    if let Some(p) = s.period() {
        let whole_ms = p.as_nanos() % 1_000_000 == 0 && !p.is_zero();
        return Kind::Repeats(whole_ms.then_some(p.as_millis() as u64));
    }
    if s.bursts(0).is_some() {
        return Kind::Bursts;
    }
    Kind::Other
}

/// The plan of a load: from which grid offset its tail holds, and what the tail is.
fn plan(load: &LoadSpec, count: u64) -> (u64, Tail) {
    let rate = load.rate.as_ref();
    let r = kind(
        rate.and_then(|r| r.shape.as_ref()),
        rate.map_or(0.0, |r| r.target),
    );
    let a = kind(load.arrival.as_ref(), count as f64);
    let settle = |k: &Kind| match k {
        Kind::Settles(t) => *t,
        _ => 0.0,
    };
    let secs = settle(&r).max(settle(&a));
    // The first grid point past the settle time, and one more step for rounding.
    let settled_ms = if secs.is_finite() && secs < 1e12 {
        ((secs * 1000.0).ceil() as u64).div_ceil(STEP_MS) * STEP_MS + STEP_MS
    } else {
        u64::MAX
    };
    let tail = match (&r, &a) {
        (Kind::Settles(_), Kind::Settles(_)) => Tail::Constant,
        (Kind::Bursts, Kind::Settles(_)) => Tail::Bursts,
        (Kind::Repeats(p), Kind::Settles(_)) | (Kind::Settles(_), Kind::Repeats(p)) => {
            periodic(&[*p])
        }
        (Kind::Repeats(p), Kind::Repeats(q)) => periodic(&[*p, *q]),
        _ => Tail::Steps,
    };
    (settled_ms, tail)
}

/// The tail of waves of these periods (ms): their cycle with the grid, if short enough.
fn periodic(periods: &[Option<u64>]) -> Tail {
    let mut cycle = STEP_MS;
    for p in periods {
        match p.and_then(|p| lcm(cycle, p)) {
            Some(c) => cycle = c,
            None => return Tail::Steps,
        }
    }
    if cycle / STEP_MS <= MAX_CYCLE_STEPS {
        Tail::Periodic { cycle_ms: cycle }
    } else {
        Tail::Steps
    }
}

/// The grid point `k` (seconds from the origin), exactly as the rate is evaluated there.
fn grid_s(k: u64) -> f64 {
    (k * STEP_MS) as f64 / 1000.0
}

/// The first grid point at or after `x` seconds.
fn first_at_or_after(x: f64) -> u64 {
    if x <= 0.0 {
        return 0;
    }
    let mut k = (x * 1000.0 / STEP_MS as f64)
        .ceil()
        .min(u64::MAX as f64 / 2.0) as u64;
    while k > 0 && grid_s(k - 1) >= x {
        k -= 1;
    }
    while grid_s(k) < x {
        k += 1;
    }
    k
}

impl Pace {
    /// Φ for a load that started at `origin_ms`, over `count` devices.
    pub fn new(load: LoadSpec, origin_ms: u64, count: u64, seed: u64) -> Self {
        let (settled_ms, tail) = plan(&load, count);
        Self {
            load,
            origin_ms,
            count,
            seed,
            cursor_ms: origin_ms,
            phi: 0.0,
            settled_ms,
            tail,
            cycle_sum: None,
        }
    }

    /// Slots per second per active device at `t_ms`.
    pub fn rate_at(&self, t_ms: u64) -> f64 {
        let t = t_ms.saturating_sub(self.origin_ms) as f64 / 1000.0;
        self.load
            .device_rate(t, self.count, self.seed)
            .unwrap_or(0.0)
    }

    /// Φ at `now_ms` (0 before the origin).
    pub fn phi(&mut self, now_ms: u64) -> f64 {
        if now_ms >= self.cursor_ms + STEP_MS {
            let steps = (now_ms - self.cursor_ms) / STEP_MS;
            self.advance(self.cursor_ms + steps * STEP_MS);
        }
        if now_ms <= self.cursor_ms {
            return self.phi;
        }
        self.phi + self.rate_at(self.cursor_ms) * (now_ms - self.cursor_ms) as f64 / 1000.0
    }

    /// One step of the grid.
    fn step(&mut self) {
        self.phi += self.rate_at(self.cursor_ms) * STEP_MS as f64 / 1000.0;
        self.cursor_ms += STEP_MS;
    }

    /// Moves the cursor to grid point `to_ms`, in runs of a number of active devices that
    /// holds while there are (see [`Pace::run_sum`]); None when some run has no closed form
    /// (the cursor stops at its start).
    fn advance_runs(&mut self, to_ms: u64) -> Option<()> {
        let (mut k, end) = (
            (self.cursor_ms - self.origin_ms) / STEP_MS,
            (to_ms - self.origin_ms) / STEP_MS,
        );
        while k < end {
            let run_end = self.active_run_end(k, end)?;
            let sum = self.run_sum(k, run_end, self.active_at(k))?;
            self.phi += sum * STEP_MS as f64 / 1000.0;
            self.cursor_ms = self.origin_ms + run_end * STEP_MS;
            k = run_end;
        }
        Some(())
    }

    /// Moves the cursor to grid point `to_ms`.
    fn advance(&mut self, to_ms: u64) {
        let settled = self.origin_ms.saturating_add(self.settled_ms).min(to_ms);
        if settled > self.cursor_ms + SHORT_STEPS * STEP_MS {
            // Only Φ before `settled` is summed here; the runs stop there.
            let _ = self.advance_runs(settled);
        }
        while self.cursor_ms < settled {
            self.step();
        }
        if self.cursor_ms >= to_ms {
            return;
        }
        let steps = (to_ms - self.cursor_ms) / STEP_MS;
        match self.tail {
            _ if steps <= SHORT_STEPS => {}
            Tail::Constant => {
                self.phi += self.rate_at(self.cursor_ms) * STEP_MS as f64 / 1000.0 * steps as f64;
                self.cursor_ms = to_ms;
            }
            Tail::Periodic { cycle_ms } => {
                if self.advance_runs(to_ms).is_none() {
                    self.sweep_cycles(to_ms, cycle_ms);
                }
            }
            Tail::Bursts => self.sweep_bursts(to_ms),
            Tail::Steps => {}
        }
        while self.cursor_ms < to_ms {
            self.step();
        }
    }

    /// Whole cycles of a periodic rate: one cycle's sum (computed once) times their number.
    fn sweep_cycles(&mut self, to_ms: u64, cycle_ms: u64) {
        let cycles = (to_ms - self.cursor_ms) / cycle_ms;
        if cycles == 0 {
            return;
        }
        let sum = match self.cycle_sum {
            Some(s) => s,
            None => {
                let start = self.cursor_ms;
                let s = (0..cycle_ms / STEP_MS)
                    .map(|j| self.rate_at(start + j * STEP_MS))
                    .sum::<f64>()
                    * STEP_MS as f64
                    / 1000.0;
                self.cycle_sum = Some(s);
                s
            }
        };
        self.phi += sum * cycles as f64;
        self.cursor_ms += cycles * cycle_ms;
    }

    /// Bursts on the rate (the arrival settled): the rate changes only where a burst
    /// starts or ends, so the sum goes from one change to the next, in one pass over the
    /// bursts in order (their ends come in the same order as their starts).
    fn sweep_bursts(&mut self, to_ms: u64) {
        let (Some(rate), from_k, to_k) = (
            self.load.rate.as_ref(),
            (self.cursor_ms - self.origin_ms) / STEP_MS,
            (to_ms - self.origin_ms) / STEP_MS,
        ) else {
            return;
        };
        let Some(((size, hold, base), starts)) =
            rate.shape.as_ref().and_then(|s| s.bursts(self.seed))
        else {
            return;
        };
        let target = rate.target;
        let active = self
            .load
            .active(grid_s(from_k), self.count, self.seed)
            .max(1) as f64;
        let cap = self.load.max_device_rate;
        // As LoadSpec::device_rate with `n` bursts on.
        let device =
            |n: i64| ((base + size * n.max(0) as f64).clamp(0.0, target) / active).min(cap);
        // n goes +1 at the first grid point at or after a start and -1 at the first at or
        // after its end (start + hold), exactly as Shape::value compares them.
        let mut sweep = Sweep {
            k: from_k,
            to_k,
            n: 0,
            sum: 0.0,
        };
        let mut ends: VecDeque<u64> = VecDeque::new();
        let (first, last) = (grid_s(from_k), grid_s(to_k));
        for start in starts {
            if start > last {
                break;
            }
            if start + hold <= first {
                // On and off before the sweep starts.
                continue;
            }
            let on = first_at_or_after(start);
            while let Some(&off) = ends.front().filter(|&&off| off <= on) {
                sweep.change(off, -1, &device);
                ends.pop_front();
            }
            sweep.change(on, 1, &device);
            ends.push_back(first_at_or_after(start + hold));
        }
        for off in ends {
            sweep.change(off, -1, &device);
        }
        sweep.change(to_k, 0, &device);
        self.phi += sweep.sum * STEP_MS as f64 / 1000.0;
        self.cursor_ms = to_ms;
    }
}

/// A sum over the grid whose rate changes with `n` at given points.
struct Sweep {
    k: u64,
    to_k: u64,
    n: i64,
    sum: f64,
}

impl Sweep {
    /// Sums up to grid point `at` (at most `to_k`) at the current `n`, then moves `n`.
    fn change(&mut self, at: u64, delta: i64, device: &impl Fn(i64) -> f64) {
        let end = at.min(self.to_k);
        if end > self.k {
            self.sum += device(self.n) * (end - self.k) as f64;
            self.k = end;
        }
        self.n += delta;
    }
}

#[path = "pace_runs.rs"]
mod runs;

#[cfg(test)]
#[path = "pace_tests.rs"]
mod pace_tests;
