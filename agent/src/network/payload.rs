//! Reading and rewriting the few envelope fields impairments need (`seq`, `ts`) in a
//! JSON payload without parsing it whole. Payloads that are not the Pluribus envelope are
//! left alone.

/// The unsigned integer after `"key":` (optional spaces), and where its digits are.
pub fn find_uint(payload: &[u8], key: &[u8]) -> Option<(u64, std::ops::Range<usize>)> {
    let mut from = 0;
    while let Some(p) = find(&payload[from..], key).map(|p| p + from) {
        let mut i = p + key.len();
        // The key must be a whole key: preceded by a quote that opens it.
        let whole = p > 0 && payload[p - 1] == b'"';
        while i < payload.len() && payload[i] == b' ' {
            i += 1;
        }
        let colon = i < payload.len() && payload[i] == b':';
        if whole && colon {
            i += 1;
            while i < payload.len() && payload[i] == b' ' {
                i += 1;
            }
            let start = i;
            while i < payload.len() && payload[i].is_ascii_digit() {
                i += 1;
            }
            let n = std::str::from_utf8(&payload[start..i]).ok()?.parse().ok()?;
            return Some((n, start..i));
        }
        from = p + key.len();
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The message's `seq`, if the payload has one.
pub fn seq(payload: &[u8]) -> Option<u64> {
    find_uint(payload, b"seq\"").map(|(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_whole_keys_only() {
        let p = br#"{"scheduled_ts":5,"seq": 17,"ts":1234,"data":{}}"#;
        assert_eq!(seq(p), Some(17));
        let (ts, at) = find_uint(p, b"ts\"").expect("ts");
        assert_eq!((ts, &p[at]), (1234, &b"1234"[..]));
        assert_eq!(seq(b"not json"), None);
    }
}
