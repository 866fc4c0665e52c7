//! FIX tag=value framing, ours: messages out (BodyLength and CheckSum computed) and frames
//! in (bounded, checksum verified). Small on purpose: a device's session needs a dozen
//! message types, and the crates we looked at bring an engine (own tasks, stores, maps per
//! message) where we want a few hundred bytes per session. The tests check our bytes
//! against messages produced by QuickFIX itself.

use bytes::BytesMut;

/// The field separator.
pub const SOH: u8 = 1;
/// The largest message accepted from the acceptor; a bigger BodyLength ends the session.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Why a frame from the acceptor was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The bytes do not start with `8=...<SOH>9=...<SOH>`.
    #[error("garbled header")]
    Garbled,
    /// BodyLength above [`MAX_MESSAGE`].
    #[error("message too large")]
    TooLarge,
    /// The CheckSum field is missing or wrong.
    #[error("bad checksum")]
    Checksum,
}

/// The header values of an outgoing message.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    /// BeginString (8), e.g. `FIX.4.4`.
    pub begin: &'static str,
    /// MsgType (35).
    pub msg_type: &'a str,
    /// MsgSeqNum (34).
    pub seq: u64,
    /// SenderCompID (49).
    pub sender: &'a str,
    /// TargetCompID (56).
    pub target: &'a str,
    /// SendingTime (52), `YYYYMMDD-HH:MM:SS.sss`.
    pub time: &'a str,
}

/// Writes fields of one message body; [`Writer::finish`] frames it.
pub struct Writer<'a> {
    out: &'a mut BytesMut,
    begin: &'static str,
    start: usize,
    body: usize,
}

/// Appends `tag=value<SOH>`.
fn put(out: &mut BytesMut, tag: u32, value: &[u8]) {
    use std::fmt::Write;
    let _ = write!(out, "{tag}=");
    out.extend_from_slice(value);
    out.extend_from_slice(&[SOH]);
}

impl<'a> Writer<'a> {
    /// Starts a message at the end of `out`, with its standard header (35, 34, 49, 52, 56:
    /// QuickFIX's order).
    pub fn new(out: &'a mut BytesMut, h: &Header<'_>) -> Self {
        let start = out.len();
        // BodyLength is written at finish, when it is known: the body goes first, after a
        // gap that finish closes.
        let mut w = Self {
            out,
            begin: h.begin,
            start,
            body: start,
        };
        w.str(35, h.msg_type);
        w.num(34, h.seq);
        w.str(49, h.sender);
        w.str(52, h.time);
        w.str(56, h.target);
        w.body = w.start;
        w
    }

    /// A text field.
    pub fn str(&mut self, tag: u32, v: &str) -> &mut Self {
        put(self.out, tag, v.as_bytes());
        self
    }

    /// An integer field.
    pub fn num(&mut self, tag: u32, v: u64) -> &mut Self {
        use std::fmt::Write;
        let _ = write!(self.out, "{tag}={v}");
        self.out.extend_from_slice(&[SOH]);
        self
    }

    /// A ClOrdID, `<device_id>-<n>`.
    pub fn clordid(&mut self, tag: u32, device_id: &str, n: u64) -> &mut Self {
        use std::fmt::Write;
        let _ = write!(self.out, "{tag}={device_id}-{n}");
        self.out.extend_from_slice(&[SOH]);
        self
    }

    /// A price or quantity with `decimals` digits after the point.
    pub fn dec(&mut self, tag: u32, v: f64, decimals: usize) -> &mut Self {
        use std::fmt::Write;
        let _ = write!(self.out, "{tag}={v:.decimals$}");
        self.out.extend_from_slice(&[SOH]);
        self
    }

    /// Frames the message: `8=` and `9=` before the body, `10=` after it.
    pub fn finish(self) {
        let begin = self.begin;
        let body_len = self.out.len() - self.body;
        let mut head = BytesMut::with_capacity(32);
        put(&mut head, 8, begin.as_bytes());
        {
            use std::fmt::Write;
            let _ = write!(head, "9={body_len}");
            head.extend_from_slice(&[SOH]);
        }
        // Move the body right by the header's length and put the header in front.
        let body_end = self.out.len();
        self.out.extend_from_slice(&head);
        self.out[self.start..].rotate_right(head.len());
        debug_assert_eq!(self.out.len(), body_end + head.len());
        let sum = checksum(&self.out[self.start..]);
        self.out.extend_from_slice(b"10=");
        self.out
            .extend_from_slice(&[b'0' + sum / 100, b'0' + sum / 10 % 10, b'0' + sum % 10, SOH]);
    }
}

/// The FIX checksum: the sum of the bytes modulo 256.
pub fn checksum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |s, x| s.wrapping_add(*x))
}

/// One whole message from the acceptor, checksum verified.
#[derive(Debug, Clone)]
pub struct Frame {
    raw: bytes::Bytes,
}

impl Frame {
    /// The value of the first field `tag`.
    pub fn get(&self, tag: u32) -> Option<&[u8]> {
        self.raw.split(|b| *b == SOH).find_map(|f| {
            let eq = f.iter().position(|b| *b == b'=')?;
            let t = f[..eq]
                .iter()
                .try_fold(0u32, |n, d| {
                    d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
                })
                .filter(|_| eq <= 9)?;
            (t == tag).then(|| &f[eq + 1..])
        })
    }

    /// A field as text (lossy).
    pub fn text(&self, tag: u32) -> Option<std::borrow::Cow<'_, str>> {
        self.get(tag).map(String::from_utf8_lossy)
    }

    /// A field as an unsigned integer.
    pub fn num(&self, tag: u32) -> Option<u64> {
        std::str::from_utf8(self.get(tag)?).ok()?.parse().ok()
    }

    /// MsgType (35).
    pub fn msg_type(&self) -> &[u8] {
        self.get(35).unwrap_or_default()
    }
}

/// Takes one whole message off the front of `buf`, if there is one.
pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
    // 8=<begin><SOH>9=<len><SOH>
    if buf.len() < 2 {
        return Ok(None);
    }
    if &buf[..2] != b"8=" {
        return Err(FrameError::Garbled);
    }
    let Some(e1) = buf.iter().take(32).position(|b| *b == SOH) else {
        return if buf.len() >= 32 {
            Err(FrameError::Garbled)
        } else {
            Ok(None)
        };
    };
    let rest = &buf[e1 + 1..];
    if rest.len() < 2 {
        return Ok(None);
    }
    if &rest[..2] != b"9=" {
        return Err(FrameError::Garbled);
    }
    let Some(e2) = rest.iter().take(12).position(|b| *b == SOH) else {
        return if rest.len() >= 12 {
            Err(FrameError::Garbled)
        } else {
            Ok(None)
        };
    };
    let len: usize = std::str::from_utf8(&rest[2..e2])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(FrameError::Garbled)?;
    if len > MAX_MESSAGE {
        return Err(FrameError::TooLarge);
    }
    let body_start = e1 + 1 + e2 + 1;
    let total = body_start + len + 7;
    if buf.len() < total {
        return Ok(None);
    }
    let trailer = &buf[body_start + len..total];
    let sum = checksum(&buf[..body_start + len]);
    let ok = trailer.starts_with(b"10=")
        && trailer[6] == SOH
        && trailer[3..6] == [b'0' + sum / 100, b'0' + sum / 10 % 10, b'0' + sum % 10];
    if !ok {
        return Err(FrameError::Checksum);
    }
    let raw = buf.split_to(total).freeze();
    Ok(Some(Frame { raw }))
}

/// SendingTime now, `YYYYMMDD-HH:MM:SS.sss` (UTC).
pub fn now_utc() -> String {
    let ms = pluribus_common::time::now_ms();
    let (secs, milli) = (ms / 1000, ms % 1000);
    let days = (secs / 86_400) as i64;
    let sod = secs % 86_400;
    let (y, m, d) = civil(days);
    format!(
        "{y:04}{m:02}{d:02}-{:02}:{:02}:{:02}.{milli:03}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by QuickFIX 1.15 (the `quickfix2` Python binding): `fix.Message()` with these
    /// header fields and HeartBtInt 30, ResetSeqNumFlag Y; `toString()`.
    const QUICKFIX_LOGON: &[u8] = b"8=FIX.4.4\x019=73\x0135=A\x0134=1\x0149=GATEWAY\x0152=20261207-01:02:03.456\x0156=dev-1\x0198=0\x01108=30\x01141=Y\x0110=213\x01";
    /// An ExecutionReport made by QuickFIX the same way.
    const QUICKFIX_EXEC: &[u8] = b"8=FIX.4.4\x019=117\x0135=8\x0134=2\x0149=GATEWAY\x0152=20261207-01:02:03.456\x0156=dev-0\x016=0\x0111=dev-0-7\x0114=0\x0117=1\x0137=1\x0139=0\x0154=1\x0155=AAPL\x01150=0\x01151=100\x0110=094\x01";

    #[test]
    fn our_logon_is_byte_for_byte_quickfix_s() {
        let mut out = BytesMut::from(&b"junk before"[..]);
        let h = Header {
            begin: "FIX.4.4",
            msg_type: "A",
            seq: 1,
            sender: "GATEWAY",
            target: "dev-1",
            time: "20261207-01:02:03.456",
        };
        let mut w = Writer::new(&mut out, &h);
        w.num(98, 0).num(108, 30).str(141, "Y");
        w.finish();
        assert_eq!(&out[..11], b"junk before");
        assert_eq!(
            String::from_utf8_lossy(&out[11..]),
            String::from_utf8_lossy(QUICKFIX_LOGON)
        );
    }

    #[test]
    fn quickfix_messages_decode_and_a_bad_checksum_is_refused() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(QUICKFIX_EXEC);
        buf.extend_from_slice(&QUICKFIX_LOGON[..40]);
        let f = decode(&mut buf).expect("valid").expect("whole");
        assert_eq!(f.msg_type(), b"8");
        assert_eq!(f.text(11).as_deref(), Some("dev-0-7"));
        assert_eq!(f.num(34), Some(2));
        assert!(decode(&mut buf).expect("partial").is_none());
        buf.extend_from_slice(&QUICKFIX_LOGON[40..]);
        assert_eq!(
            decode(&mut buf).expect("valid").expect("whole").num(108),
            Some(30)
        );
        assert!(buf.is_empty());

        let mut bad = QUICKFIX_EXEC.to_vec();
        let n = bad.len();
        bad[n - 2] = b'5';
        let mut buf = BytesMut::from(&bad[..]);
        assert_eq!(decode(&mut buf).expect_err("sum"), FrameError::Checksum);
        let mut buf = BytesMut::from(&b"8=FIX.4.4\x019=999999999\x01"[..]);
        assert_eq!(decode(&mut buf).expect_err("big"), FrameError::TooLarge);
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
        assert_eq!(decode(&mut buf).expect_err("http"), FrameError::Garbled);
    }

    #[test]
    fn sending_time_is_utc_text() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(20_794), (2026, 12, 7));
        let t = now_utc();
        assert_eq!(t.len(), 21, "{t}");
        assert_eq!(&t[8..9], "-");
    }
}
