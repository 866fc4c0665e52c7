//! Writing JSON numbers and strings straight into a byte buffer, without an intermediate
//! `serde_json::Value`: the profile device's hot path.

const POW10: [f64; 10] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
const POW10_INT: [u64; 10] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
];

/// Writes `v` in decimal.
pub fn write_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Writes `v` in decimal with at least `width` digits (zero-padded).
pub fn write_u64_padded(out: &mut Vec<u8>, v: u64, width: usize) {
    let digits = if v == 0 { 1 } else { v.ilog10() as usize + 1 };
    out.extend(std::iter::repeat_n(b'0', width.saturating_sub(digits)));
    write_u64(out, v);
}

/// Writes `v` rounded to `decimals` (at most 9) places, trailing zeros dropped: `21.4`,
/// `230`, `-0.05`. Infinities and NaN are written as `null` (JSON has no such numbers).
pub fn write_f64(out: &mut Vec<u8>, v: f64, decimals: u8) {
    if !v.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    let d = usize::from(decimals.min(9));
    let scaled = (v * POW10[d]).round();
    if scaled.abs() >= 9.0e18 {
        // Too large for the fixed-point path: std's shortest round-trip form (no exponent).
        use std::io::Write;
        let _ = write!(out, "{v}");
        return;
    }
    let n = scaled as i64;
    if n < 0 {
        out.push(b'-');
    }
    let abs = n.unsigned_abs();
    let unit = POW10_INT[d];
    write_u64(out, abs / unit);
    let mut frac = abs % unit;
    if frac == 0 {
        return;
    }
    let mut width = d;
    while frac.is_multiple_of(10) {
        frac /= 10;
        width -= 1;
    }
    out.push(b'.');
    write_u64_padded(out, frac, width);
}

/// Writes `s` as a JSON string, quotes included.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    write_str_inner(out, s);
    out.push(b'"');
}

/// Writes the escaped content of a JSON string, without quotes.
pub fn write_str_inner(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\') {
        out.extend_from_slice(bytes);
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let b = c as u8;
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

/// Writes 16 bytes as a UUID string (quotes included): `"8-4-4-4-12"` lowercase hex.
pub fn write_uuid(out: &mut Vec<u8>, b: [u8; 16]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push(b'-');
        }
        out.push(HEX[usize::from(x >> 4)]);
        out.push(HEX[usize::from(x & 0xf)]);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: f64, d: u8) -> String {
        let mut out = Vec::new();
        write_f64(&mut out, v, d);
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn numbers_round_and_drop_trailing_zeros() {
        assert_eq!(f(21.4049, 2), "21.4");
        assert_eq!(f(230.0, 2), "230");
        assert_eq!(f(-0.05, 2), "-0.05");
        assert_eq!(f(-0.004, 2), "0");
        assert_eq!(f(0.30000000000000004, 9), "0.3");
        assert_eq!(f(1.005, 3), "1.005");
        assert_eq!(f(12345.678, 0), "12346");
        assert_eq!(f(1e300, 2), format!("{}", 1e300));
        assert_eq!(f(f64::NAN, 2), "null");
        for v in [0.001, 123.456789, -9.87654321, 1e9 + 0.5] {
            let s = f(v, 6);
            let back: f64 = serde_json::from_str(&s).expect("valid json number");
            assert!((back - v).abs() < 1e-6, "{v} -> {s}");
        }
        let mut out = Vec::new();
        write_u64_padded(&mut out, 42, 5);
        write_u64(&mut out, 0);
        assert_eq!(out, b"000420");
    }

    #[test]
    fn strings_are_escaped() {
        let mut out = Vec::new();
        write_str(&mut out, "a\"b\\c\nd\u{1}é");
        let back: String = serde_json::from_slice(&out).expect("valid json string");
        assert_eq!(back, "a\"b\\c\nd\u{1}é");
    }
}
