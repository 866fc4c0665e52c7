//! Deterministic randomness: hashes of (device key, generator salt, n), and a bounded random
//! walk built from smooth gradient noise over seq, so that any value is O(1) to compute from
//! seq alone (no state to replay after a failover).

use crate::shard::schedule::mix;

/// The golden-ratio increment of SplitMix64.
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// A well-mixed 64-bit value from a stream `ks` (device key ^ generator salt) and index `n`.
#[inline]
pub fn rand(ks: u64, n: u64) -> u64 {
    mix(mix(ks).wrapping_add(n.wrapping_mul(GOLDEN)))
}

/// A uniform f64 in `[0, 1)` from 53 bits of `h`.
#[inline]
pub fn unit(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A standard normal value from the two halves of `h` (Box-Muller).
#[inline]
pub fn gauss(h: u64) -> f64 {
    const TWO32: f64 = 4_294_967_296.0;
    let u1 = ((h >> 32) as f64 + 1.0) / TWO32; // (0, 1]
    let u2 = (h & 0xffff_ffff) as f64 / TWO32;
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// 1-D gradient (Perlin) noise at `x >= 0`: smooth, zero at integers, within about ±0.5.
#[inline]
fn gradient_noise(ks: u64, x: f64) -> f64 {
    let i = x as u64;
    let t = x - i as f64;
    let g0 = unit(mix(ks.wrapping_add(i.wrapping_mul(GOLDEN)))) * 2.0 - 1.0;
    let g1 = unit(mix(ks.wrapping_add((i + 1).wrapping_mul(GOLDEN)))) * 2.0 - 1.0;
    let fade = t * t * t * (t * (t * 6.0 - 15.0) + 10.0);
    let a = g0 * t;
    a + fade * (g1 * (t - 1.0) - a)
}

/// Wavelength, in ticks, of the finest octave: consecutive values are correlated over a few
/// ticks, like a sensor drifting rather than jumping.
const FINEST: f64 = 8.0;
/// Each octave is this many times longer than the previous one (and twice as tall: the
/// amplitudes grow like √wavelength, as a random walk's spread does).
const LACUNARITY: f64 = 4.0;
/// Most octaves: the longest wavelength is 8 × 4⁷ = 131072 ticks.
const MAX_OCTAVES: usize = 8;
/// Ticks sampled to calibrate the step size.
const CALIBRATION: u64 = 4096;

/// A bounded random walk: `start + scale × (noise(seq) - noise(0))`, reflected into
/// `[min, max]`. The noise is a sum of octaves of gradient noise; the scale is calibrated so
/// that consecutive values differ by `step` on average.
#[derive(Debug, Clone)]
pub struct Walk {
    octaves: Vec<Octave>,
    scale: f64,
    start: f64,
    min: f64,
    max: f64,
}

#[derive(Debug, Clone, Copy)]
struct Octave {
    inv_len: f64,
    amp: f64,
    salt: u64,
}

impl Walk {
    /// A walk from `start` with steps of about `step`, inside `[min, max]`; `salt` is the
    /// generator's. Enough octaves that the walk can roam the range, as a random walk of
    /// that step would in (range / 2 step)² ticks.
    pub fn new(salt: u64, start: f64, step: f64, min: f64, max: f64) -> Self {
        let half_range_steps = ((max - min) / (2.0 * step)).max(1.0);
        let ticks = half_range_steps * half_range_steps;
        let mut n = 1;
        let mut len = FINEST;
        while n < MAX_OCTAVES && len < ticks {
            n += 1;
            len *= LACUNARITY;
        }
        let octaves = (0..n)
            .map(|k| Octave {
                inv_len: 1.0 / (FINEST * LACUNARITY.powi(k as i32)),
                amp: 2f64.powi(k as i32),
                salt: mix(salt ^ (k as u64 + 1)),
            })
            .collect();
        let mut w = Self {
            octaves,
            scale: 1.0,
            start,
            min,
            max,
        };
        // Calibrate on a fixed stream: the statistics do not depend on the device.
        let key = 0x5eed_cafe_f00d_d00d;
        let mut prev = w.raw(key, 0);
        let mut total = 0.0;
        for s in 1..=CALIBRATION {
            let v = w.raw(key, s);
            total += (v - prev).abs();
            prev = v;
        }
        let mean = total / CALIBRATION as f64;
        w.scale = if mean > 0.0 { step / mean } else { 0.0 };
        w
    }

    /// The unscaled noise of device `key` at `seq`.
    #[inline]
    pub fn raw(&self, key: u64, seq: u64) -> f64 {
        let mut sum = 0.0;
        for o in &self.octaves {
            // An offset per device and octave, so lattice points do not line up.
            let ks = key ^ o.salt;
            let offset = (ks >> 44) as f64; // 0 .. 2^20
            sum += o.amp * gradient_noise(ks, offset + seq as f64 * o.inv_len);
        }
        sum
    }

    /// The walk's value at `seq`, given the device's `origin` (= `raw(key, 0)`) and an
    /// extra starting offset.
    #[inline]
    pub fn value(&self, key: u64, seq: u64, origin: f64, shift: f64) -> f64 {
        let v = self.start + shift + self.scale * (self.raw(key, seq) - origin);
        reflect(v, self.min, self.max)
    }
}

/// Folds `v` back into `[min, max]` as if it bounced off the bounds.
#[inline]
pub fn reflect(v: f64, min: f64, max: f64) -> f64 {
    let w = max - min;
    if w.is_nan() || w <= 0.0 || (min..=max).contains(&v) {
        return v.clamp(min.min(max), max.max(min));
    }
    let u = (v - min).rem_euclid(2.0 * w);
    min + if u > w { 2.0 * w - u } else { u }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflection_folds_into_the_range() {
        assert_eq!(reflect(5.0, 0.0, 10.0), 5.0);
        assert_eq!(reflect(12.0, 0.0, 10.0), 8.0);
        assert_eq!(reflect(-3.0, 0.0, 10.0), 3.0);
        assert_eq!(reflect(23.0, 0.0, 10.0), 3.0);
    }

    #[test]
    fn gauss_has_unit_spread() {
        let n = 20_000u64;
        let xs: Vec<f64> = (0..n).map(|i| gauss(rand(7, i))).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.03, "{mean}");
        assert!((var.sqrt() - 1.0).abs() < 0.03, "{var}");
    }
}
