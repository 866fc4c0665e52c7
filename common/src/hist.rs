//! Mergeable latency histograms (HDR). Agents ship histograms, never percentiles, so that
//! `pluribusctl` can merge many agents' data and compute exact cluster-wide percentiles.
//! On the wire a histogram is a base64 string of HDR's compressed V2 format.

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest value a histogram records (larger values are clamped): one hour in µs.
pub const MAX_VALUE: u64 = 3_600_000_000;

/// Significant digits of the histograms a heartbeat carries ([`Hist::coarse`]): 1% steps.
/// At 3 digits a cumulative histogram's encoding grows for hours as rare values fill more
/// of its ~45,000 buckets (to tens of KB); at 2 it has ~3,300 and stays a few KB.
pub const WIRE_DIGITS: u8 = 2;

/// The most a coarse histogram takes on the wire (base64), whatever it holds: every
/// bucket of the whole range filled with counts up to 10^10 each (a test checks it).
pub const MAX_WIRE_BYTES: usize = 24 * 1024;

/// A histogram of non-negative values (µs or ms, as its field says), 3 significant digits.
#[derive(Debug, Clone, PartialEq)]
pub struct Hist(Histogram<u64>);

impl Default for Hist {
    fn default() -> Self {
        Self::new()
    }
}

impl Hist {
    /// An empty histogram.
    pub fn new() -> Self {
        // 1..=MAX_VALUE with 3 significant figures is a valid configuration.
        Self(
            Histogram::new_with_bounds(1, MAX_VALUE, 3)
                .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable_hist())),
        )
    }

    /// Records one value (clamped into range).
    pub fn record(&mut self, v: u64) {
        let _ = self.0.record(v.clamp(1, MAX_VALUE));
    }

    /// Records `n` times one value (clamped into range).
    pub fn record_n(&mut self, v: u64, n: u64) {
        let _ = self.0.record_n(v.clamp(1, MAX_VALUE), n);
    }

    /// The same values at [`WIRE_DIGITS`] significant digits (each within 1% of where it
    /// was): what a heartbeat ships, so that its size stays bounded however long the
    /// agent runs. A reader decodes it back into a histogram of 3 digits, each value at
    /// the middle of its coarse bucket; two coarse copies of one cumulative histogram still
    /// subtract exactly.
    pub fn coarse(&self) -> Self {
        let Ok(mut out) = Histogram::new_with_bounds(1, MAX_VALUE, WIRE_DIGITS) else {
            return self.clone();
        };
        for v in self.0.iter_recorded() {
            if out
                .record_n(v.value_iterated_to(), v.count_at_value())
                .is_err()
            {
                return self.clone();
            }
        }
        Self(out)
    }

    /// Significant digits of its buckets (3, or [`WIRE_DIGITS`] for a coarse copy).
    pub fn digits(&self) -> u8 {
        self.0.sigfig()
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Hist) {
        let _ = self.0.add(&other.0);
    }

    /// Adds `h` to `into`, which takes it as it is when empty (so that a row with no
    /// histogram costs nothing).
    pub fn merge_into(into: &mut Option<Hist>, h: Hist) {
        match into {
            Some(i) => i.merge(&h),
            None => *into = Some(h),
        }
    }

    /// Removes every value of `earlier`, an earlier copy of the same cumulative histogram,
    /// leaving the values recorded in between. False (and unchanged) when `earlier` has
    /// values this one lacks (the recorder restarted).
    pub fn subtract(&mut self, earlier: &Hist) -> bool {
        let mut out = self.0.clone();
        if out.subtract(&earlier.0).is_err() {
            return false;
        }
        self.0 = out;
        true
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The value at quantile `q` (0.0..=1.0); 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.0.is_empty() {
            0
        } else {
            self.0.value_at_quantile(q)
        }
    }

    /// Largest value; 0 when empty.
    pub fn max(&self) -> u64 {
        if self.0.is_empty() {
            0
        } else {
            self.0.max()
        }
    }

    /// Empties it.
    pub fn clear(&mut self) {
        self.0.reset();
    }

    /// The same values in a histogram only as large as they need (it grows when more is
    /// added): ~40-60 KB for latencies of milliseconds instead of ~190 KB for the full range, for
    /// readers that keep many (the dashboard keeps one per agent and fleet).
    pub fn compacted(&self) -> Self {
        let mut small = Histogram::new(3).unwrap_or_else(|_| unreachable_hist());
        for v in self.0.iter_recorded() {
            if small
                .record_n(v.value_iterated_to(), v.count_at_value())
                .is_err()
            {
                return self.clone();
            }
        }
        Self(small)
    }

    /// The buckets that hold values, lowest first: (the highest value the bucket stands
    /// for, its count). With [`Hist::from_recorded`], a form of the same values a few
    /// hundred bytes long where the histogram is tens of KB.
    pub fn recorded(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
    }

    /// A histogram of `(value, count)` pairs (as [`Hist::recorded`] gives them), only as
    /// large as its values need. Values are clamped into range.
    pub fn from_recorded(pairs: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut h = Histogram::new(3).unwrap_or_else(|_| unreachable_hist());
        for (v, n) in pairs {
            let _ = h.record_n(v.clamp(1, MAX_VALUE), n);
        }
        Self(h)
    }

    /// The inner HDR histogram.
    pub fn inner(&self) -> &Histogram<u64> {
        &self.0
    }

    fn encode(&self) -> String {
        let mut buf = Vec::new();
        let _ = V2DeflateSerializer::new().serialize(&self.0, &mut buf);
        base64::engine::general_purpose::STANDARD.encode(buf)
    }

    /// Decodes a histogram from bytes anyone may have written: the sizes its header claims
    /// are checked before anything is allocated for them (hdrhistogram would allocate a
    /// payload buffer as long as the header says, and counts for up to 5 digits).
    fn decode(s: &str) -> Result<Self, String> {
        use std::io::Read;
        if s.len() > MAX_ENCODED {
            return Err(format!(
                "a histogram of {} bytes, above the limit of {MAX_ENCODED}",
                s.len()
            ));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| e.to_string())?;
        // V2 compressed: cookie, compressed length, zlib(V2 cookie, payload length, offset,
        // digits, low, high, ratio, payload).
        let zlib = bytes
            .get(8..)
            .ok_or("a histogram shorter than its header")?;
        let mut v2 = Vec::new();
        flate2::read::ZlibDecoder::new(zlib)
            .take((V2_HEADER + MAX_PAYLOAD + 1) as u64)
            .read_to_end(&mut v2)
            .map_err(|e| format!("a histogram that does not inflate: {e}"))?;
        let field = |at: usize| -> Result<u32, String> {
            v2.get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_be_bytes)
                .ok_or_else(|| "a histogram shorter than its header".to_string())
        };
        let (payload, digits) = (field(4)? as usize, field(12)?);
        if payload > MAX_PAYLOAD || v2.len() != V2_HEADER + payload {
            return Err(format!(
                "a histogram whose header claims {payload} bytes of counts ({} present, at most {MAX_PAYLOAD})",
                v2.len().saturating_sub(V2_HEADER)
            ));
        }
        if digits > 3 {
            return Err(format!(
                "a histogram of {digits} significant digits (at most 3)"
            ));
        }
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut v2.as_slice())
            .map_err(|e| format!("{e:?}"))?;
        // Only as large as its values need (readers keep many; it grows when merged into).
        let mut out = Self(Histogram::new(3).map_err(|e| format!("{e:?}"))?);
        if digits >= 3 {
            out.0.add(&h).map_err(|e| format!("{e:?}"))?;
        } else {
            // A coarse histogram (a heartbeat's): each value at the middle of its bucket.
            for v in h.iter_recorded() {
                let at = h.median_equivalent(v.value_iterated_to());
                out.record_n(at, v.count_at_value());
            }
        }
        Ok(out)
    }
}

/// The longest base64 histogram accepted (a full one of ours is a few KB).
const MAX_ENCODED: usize = 256 * 1024;
/// The most bytes of counts an inflated histogram may have.
const MAX_PAYLOAD: usize = 1024 * 1024;
/// Bytes of an uncompressed V2 header.
const V2_HEADER: usize = 40;

// new_with_bounds(1, MAX_VALUE, 3) cannot fail: the bounds and precision are constants
// inside hdrhistogram's limits.
#[allow(clippy::panic)]
fn unreachable_hist() -> Histogram<u64> {
    panic!("hdrhistogram refused a 3-digit configuration")
}

impl Serialize for Hist {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.encode())
    }
}

impl<'de> Deserialize<'de> for Hist {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Hist::decode(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacted_histograms_are_smaller_and_merge_the_same() {
        let mut a = Hist::new();
        (1..=5_000u64).for_each(|v| a.record(v * 7));
        let small = a.compacted();
        assert!(small.inner().distinct_values() < a.inner().distinct_values() / 3);
        assert_eq!(small.quantile(0.99), a.quantile(0.99));
        let (mut m1, mut m2) = (Hist::new(), Hist::new());
        m1.merge(&a);
        m2.merge(&small);
        assert_eq!(
            (m1.quantile(0.5), m1.count()),
            (m2.quantile(0.5), m2.count())
        );
    }

    #[test]
    fn recorded_pairs_make_the_same_histogram_again() {
        let mut a = Hist::new();
        for v in [1, 7, 999, 1_000, 1_001, 123_456, 9_999_999, MAX_VALUE] {
            a.record(v);
            a.record(v);
        }
        let pairs: Vec<(u64, u64)> = a.recorded().collect();
        assert_eq!(pairs.iter().map(|p| p.1).sum::<u64>(), 16);
        let b = Hist::from_recorded(pairs);
        assert_eq!(b.count(), a.count());
        for q in [0.01, 0.5, 0.9, 0.99, 1.0] {
            assert_eq!(b.quantile(q), a.quantile(q), "q {q}");
        }
        assert_eq!(b.max(), a.max());
    }

    #[test]
    fn merged_percentiles_equal_those_of_the_combined_samples() {
        let (mut a, mut b, mut all) = (Hist::new(), Hist::new(), Hist::new());
        for i in 0..10_000u64 {
            let v = (i * 7919) % 5000 + 1;
            if i % 3 == 0 {
                a.record(v)
            } else {
                b.record(v * 3)
            }
            all.record(if i % 3 == 0 { v } else { v * 3 });
        }
        // Through the wire, as two agents would ship them.
        let a: Hist = serde_json::from_str(&serde_json::to_string(&a).expect("ser")).expect("de");
        let b: Hist = serde_json::from_str(&serde_json::to_string(&b).expect("ser")).expect("de");
        let mut merged = Hist::new();
        merged.merge(&a);
        merged.merge(&b);
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(merged.quantile(q), all.quantile(q), "q={q}");
        }
        assert_eq!(merged.count(), 10_000);
        assert_eq!(merged.max(), all.max());
    }

    #[test]
    fn subtracting_an_earlier_copy_leaves_what_came_after() {
        let mut h = Hist::new();
        (1..=100).for_each(|v| h.record(v));
        let earlier = h.clone();
        (1000..1100).for_each(|v| h.record(v));
        let mut window = h.clone();
        assert!(window.subtract(&earlier));
        assert_eq!(window.count(), 100);
        assert!(window.quantile(0.0) >= 1000);
        let mut back = earlier.clone();
        assert!(!back.subtract(&h), "a later copy cannot be taken away");
        assert_eq!(back, earlier);
    }

    #[test]
    fn coarse_copies_are_small_within_a_percent_and_subtract_exactly() {
        let mut h = Hist::new();
        let mut x = 12_345u64;
        let mut draw = || {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            // 1 µs to ~1 h, spread over every order of magnitude.
            let exp = (x >> 59) as u32 % 10;
            ((x >> 20) % 1_000 + 1) * 10u64.pow(exp) / 1_000 + 1
        };
        for _ in 0..200_000 {
            h.record(draw());
        }
        let earlier = h.clone();
        for _ in 0..100_000 {
            h.record(draw());
        }
        let wire = |h: &Hist| -> (usize, Hist) {
            let s = serde_json::to_string(h).expect("ser");
            (s.len(), serde_json::from_str(&s).expect("de"))
        };
        let ((full, _), (small, back)) = (wire(&h), wire(&h.coarse()));
        assert!(small < full, "coarse {small} bytes, full {full}");
        assert_eq!((h.coarse().digits(), back.digits()), (WIRE_DIGITS, 3));
        assert_eq!(back.count(), h.count());
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            let (a, b) = (h.quantile(q) as f64, back.quantile(q) as f64);
            assert!((a - b).abs() <= 0.011 * a + 1.0, "q={q}: {a} vs {b}");
        }
        let (_, before) = wire(&earlier.coarse());
        let mut window = back.clone();
        assert!(window.subtract(&before));
        assert_eq!(window.count(), 100_000);
    }

    /// The most a coarse histogram can take on the wire: every bucket of the whole range
    /// filled, with counts of a busy year. A full-precision one is ~5 times that (half its buckets filled here).
    #[test]
    fn a_coarse_histogram_is_bounded_whatever_it_holds() {
        let mut h = Hist::new();
        let mut x = 99u64;
        let mut v = 1u64;
        while v < MAX_VALUE {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            h.record_n(v, (x >> 30) % 10_000_000_000 + 1);
            v += (v / 1_000).max(1);
        }
        let full = serde_json::to_string(&h).expect("ser").len();
        let coarse = serde_json::to_string(&h.coarse()).expect("ser").len();
        eprintln!("every bucket filled: {coarse} bytes coarse, {full} at 3 digits");
        assert!(coarse < MAX_WIRE_BYTES, "{coarse} bytes");
        assert!(full > 4 * coarse);
    }

    /// A histogram in the wire format with a header of our choosing.
    fn forged(payload_len: u32, digits: u32, payload: &[u8]) -> String {
        use std::io::Write;
        let mut v2 = Vec::new();
        v2.extend_from_slice(&0x1c84_9303u32.to_be_bytes());
        v2.extend_from_slice(&payload_len.to_be_bytes());
        v2.extend_from_slice(&0u32.to_be_bytes());
        v2.extend_from_slice(&digits.to_be_bytes());
        v2.extend_from_slice(&1u64.to_be_bytes());
        v2.extend_from_slice(&MAX_VALUE.to_be_bytes());
        v2.extend_from_slice(&1.0f64.to_be_bytes());
        v2.extend_from_slice(payload);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&v2).expect("deflate");
        let z = z.finish().expect("deflate");
        let mut out = 0x1c84_9304u32.to_be_bytes().to_vec();
        out.extend_from_slice(&(z.len() as u32).to_be_bytes());
        out.extend_from_slice(&z);
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    #[test]
    fn forged_headers_are_refused_before_allocating() {
        // Claims 4 GB of counts.
        let e = Hist::decode(&forged(u32::MAX - 16, 3, &[])).expect_err("huge");
        assert!(e.contains("claims"), "{e}");
        // 5 digits would mean ~100 MB of counts.
        let e = Hist::decode(&forged(0, 5, &[])).expect_err("digits");
        assert!(e.contains("significant digits"), "{e}");
        // A deflate bomb: a megabyte of zeros past the limit is cut off, not inflated.
        let e = Hist::decode(&forged(
            2 * MAX_PAYLOAD as u32,
            3,
            &vec![0; 2 * MAX_PAYLOAD],
        ))
        .expect_err("bomb");
        assert!(e.contains("claims"), "{e}");
        // Truncated and garbage input.
        assert!(Hist::decode("AAAA").is_err());
        assert!(Hist::decode(&"A".repeat(MAX_ENCODED + 4)).is_err());
        // A real one still decodes.
        let mut h = Hist::new();
        h.record(42);
        assert_eq!(Hist::decode(&h.encode()).expect("real").count(), 1);
    }
}
