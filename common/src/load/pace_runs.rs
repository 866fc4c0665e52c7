//! Φ over runs of the grid in closed form: while the number of active devices holds (no
//! arrival shape, or between two moves of an arrival ramp), a wave rate sums as a cosine
//! series (while the per-device cap does not bind on part of the run), a ramp or stages
//! as arithmetic series between the points where they meet a bound, stairs as flat parts,
//! a constant rate as steps × rate. Where no form applies, the caller steps.

use super::{grid_s, Pace, STEP_MS};
use crate::load::Shape;

/// Σ cos(kδ) for k in k0..k0+n, or None where the closed form loses precision (δ/2 near
/// a non-zero multiple of π: a wave whose period nearly divides the step).
fn cos_sum(k0: u64, n: u64, delta: f64) -> Option<f64> {
    let h = delta / 2.0;
    let s = h.sin();
    // (NaN fails the test too.)
    if s.abs() < 1e-3 * h.abs() || s.is_nan() || h == 0.0 {
        return None;
    }
    let n_f = n as f64;
    // Dirichlet: Σ_{j<n} cos(θ + jδ) = sin(nδ/2) / sin(δ/2) · cos(θ + (n-1)δ/2).
    Some((n_f * h).sin() / s * ((k0 as f64 + (n_f - 1.0) / 2.0) * delta).cos())
}

/// A shape value moving linearly: `v0` at `t0` seconds, `slope` per second.
#[derive(Clone, Copy)]
struct Line {
    v0: f64,
    t0: f64,
    slope: f64,
}

impl Line {
    fn at(&self, t: f64) -> f64 {
        self.v0 + self.slope * (t - self.t0)
    }
}

/// Where a line's value is: on it, or held at a bound (the per-device rate there).
#[derive(PartialEq)]
enum Regime {
    Line,
    Flat(f64),
}

impl Pace {
    /// Σ of the per-device rate over grid points `k0..k1` (offsets from the origin, in
    /// steps) while `active` devices run throughout, in closed form; None if there is none
    /// for this rate (the caller steps).
    pub(super) fn run_sum(&self, k0: u64, k1: u64, active: u64) -> Option<f64> {
        let n = k1.checked_sub(k0)?;
        if n == 0 {
            return Some(0.0);
        }
        let rate = self.load.rate.as_ref()?;
        let (target, cap) = (rate.target, self.load.max_device_rate);
        let a = active.max(1) as f64;
        match &rate.shape {
            None => Some(self.rate_at(self.origin_ms + k0 * STEP_MS) * n as f64),
            Some(Shape::Wave {
                period,
                min,
                max: hi,
            }) if (0.0..=1.0).contains(min) && (*min..=1.0).contains(hi) => {
                let (lo, hi) = (target * min / a, target * hi / a);
                if lo >= cap {
                    return Some(cap * n as f64);
                }
                if hi > cap {
                    return None;
                }
                // As Shape::value: target · (min + (hi - min)(1 - cos φ)/2), φ = 2π t / P.
                let delta = STEP_MS as f64 / 1000.0 / period.as_secs_f64().max(1e-9)
                    * std::f64::consts::TAU;
                let c = cos_sum(k0, n, delta)?;
                let (mid, amp) = ((lo + hi) / 2.0, (hi - lo) / 2.0);
                Some(mid * n as f64 - amp * c)
            }
            Some(Shape::Ramp { to, over, from }) => {
                let to = to.unwrap_or(target);
                let over_s = over.as_secs_f64();
                let k_over = super::first_at_or_after(over_s);
                let mut sum = 0.0;
                if !over.is_zero() {
                    let line = Line {
                        v0: *from,
                        t0: 0.0,
                        slope: (to - from) / over_s,
                    };
                    sum += self.line_sum(k0, k1.min(k_over), line, a);
                }
                Some(sum + self.flat_sum(k0.max(k_over), k1))
            }
            Some(Shape::Stages(stages)) => {
                let (mut at, mut prev, mut sum, mut k) = (0.0f64, 0.0f64, 0.0, k0);
                for st in stages {
                    let d = st.duration.as_secs_f64();
                    let end = super::first_at_or_after(at + d);
                    if d > 0.0 && end > k {
                        let line = Line {
                            v0: prev,
                            t0: at,
                            slope: (st.target - prev) / d,
                        };
                        sum += self.line_sum(k, k1.min(end), line, a);
                        k = end;
                    }
                    if k >= k1 {
                        return Some(sum);
                    }
                    at += d;
                    prev = st.target;
                }
                Some(sum + self.flat_sum(k, k1))
            }
            // Stairs only go up (or down): equal at both ends of a part means flat all along.
            Some(Shape::Stairs { .. }) => Some(self.monotone_sum(k0, k1)),
            Some(_) => None,
        }
    }

    /// Σ over `k0..k1` of a rate that only moves one way there: a part whose ends agree
    /// is flat; others are halved until they do (or are short enough to step).
    fn monotone_sum(&self, k0: u64, k1: u64) -> f64 {
        let at = |k: u64| self.rate_at(self.origin_ms + k * STEP_MS);
        let n = k1.saturating_sub(k0);
        if n <= 8 {
            return (k0..k1).map(at).sum();
        }
        let first = at(k0);
        if first == at(k1 - 1) {
            return first * n as f64;
        }
        let mid = k0 + n / 2;
        self.monotone_sum(k0, mid) + self.monotone_sum(mid, k1)
    }

    /// Σ over `k0..k1` of a rate that holds there.
    fn flat_sum(&self, k0: u64, k1: u64) -> f64 {
        if k1 <= k0 {
            return 0.0;
        }
        self.rate_at(self.origin_ms + k0 * STEP_MS) * (k1 - k0) as f64
    }

    /// Σ over `k0..k1` of the per-device rate of a shape value that moves along `line`,
    /// over `active` devices: clamped to 0..target, divided, capped. The line crosses each
    /// bound at most once, so halves are taken until each part is wholly on the line or
    /// wholly at one bound; short parts are stepped.
    fn line_sum(&self, k0: u64, k1: u64, line: Line, active: f64) -> f64 {
        if k1 <= k0 {
            return 0.0;
        }
        let Some(rate) = self.load.rate.as_ref() else {
            return 0.0;
        };
        let (target, cap) = (rate.target, self.load.max_device_rate);
        let regime = |k: u64| -> Regime {
            let v = line.at(grid_s(k));
            let d = v.clamp(0.0, target) / active;
            if d >= cap {
                Regime::Flat(cap)
            } else if v <= 0.0 {
                Regime::Flat(0.0)
            } else if v >= target {
                Regime::Flat(d)
            } else {
                Regime::Line
            }
        };
        let n = k1 - k0;
        if n <= 8 {
            return (k0..k1)
                .map(|k| self.rate_at(self.origin_ms + k * STEP_MS))
                .sum();
        }
        match (regime(k0), regime(k1 - 1)) {
            (Regime::Line, Regime::Line) => {
                // Σ (v0 + slope (t_k - t0)) / active, t_k = k · step.
                let n_f = n as f64;
                let sum_t = STEP_MS as f64 / 1000.0 * (k0 + k1 - 1) as f64 * n_f / 2.0;
                (n_f * line.v0 + line.slope * (sum_t - n_f * line.t0)) / active
            }
            (Regime::Flat(x), Regime::Flat(y)) if x == y => x * n as f64,
            _ => {
                let mid = k0 + n / 2;
                self.line_sum(k0, mid, line, active) + self.line_sum(mid, k1, line, active)
            }
        }
    }

    /// Active devices at grid point `k`.
    pub(super) fn active_at(&self, k: u64) -> u64 {
        self.load.active(grid_s(k), self.count, self.seed)
    }

    /// The first grid point in `k+1..=end` where the number of active devices differs from
    /// that at `k` (`end` if none), for an arrival that never moves back (none, or a
    /// ramp); None for other arrivals. The ramp's formula gives a first guess, checked
    /// (and moved) against the count itself, so the run is exactly where it changes.
    pub(super) fn active_run_end(&self, k: u64, end: u64) -> Option<u64> {
        let (to, over, from) = match &self.load.arrival {
            None => return Some(end),
            Some(Shape::Ramp { to, over, from }) => (*to, *over, *from),
            Some(_) => return None,
        };
        if end <= k + 1 {
            return Some(end);
        }
        let a = self.active_at(k);
        let to = to.unwrap_or(self.count as f64);
        let over_s = over.as_secs_f64();
        // When the ramp's value reaches the next whole device (up) or drops below this
        // one (down).
        let next = if to >= from { a as f64 + 1.0 } else { a as f64 };
        let t = over_s * (next - from) / (to - from);
        let guess = if t.is_finite() && t > 0.0 {
            ((t * 1000.0 / STEP_MS as f64).ceil().min(end as f64) as u64).clamp(k + 1, end)
        } else {
            k + 1
        };
        let same = |j: u64| self.active_at(j) == a;
        // Gallop from the guess to bracket the change: lo holds a, hi (or end) does not.
        let (mut lo, mut hi) = if same(guess) {
            let (mut lo, mut step) = (guess, 1u64);
            loop {
                let j = lo.saturating_add(step);
                if j >= end {
                    break (lo, end);
                }
                if !same(j) {
                    break (lo, j);
                }
                lo = j;
                step = step.saturating_mul(2);
            }
        } else {
            let (mut hi, mut step) = (guess, 1u64);
            loop {
                let j = hi.saturating_sub(step).max(k);
                if j == k || same(j) {
                    break (j, hi);
                }
                hi = j;
                step = step.saturating_mul(2);
            }
        };
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if same(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Some(hi)
    }
}
