//! The device's clock: an offset and a drift applied to the `ts` it reports. Its schedule
//! (and `scheduled_ts`) stay on the true clock.

use bytes::Bytes;
use pluribus_common::spec::network::ClockSpec;

use super::payload::find_uint;
use super::{rng::Rng, DevState, Impairment, Msg};

/// Skews `ts`.
#[derive(Debug)]
pub struct Clock {
    offset_ms: i64,
    drift_ppm: f64,
    start_ms: u64,
}

impl Clock {
    /// From its spec; drift counts from `start_ms`.
    pub fn new(s: &ClockSpec, start_ms: u64) -> Self {
        Self {
            offset_ms: s.offset_ms,
            drift_ppm: s.drift_ppm,
            start_ms,
        }
    }

    fn skewed(&self, ts: u64) -> u64 {
        let drift = ts.saturating_sub(self.start_ms) as f64 * self.drift_ppm / 1e6;
        (ts as i64)
            .saturating_add(self.offset_ms)
            .saturating_add(drift as i64)
            .max(0) as u64
    }
}

impl Impairment for Clock {
    fn apply(&self, msg: &mut Msg, _dev: &mut DevState, _rng: &mut Rng) {
        let Some((ts, at)) = find_uint(&msg.payload, b"ts\"") else {
            return;
        };
        let new = self.skewed(ts).to_string();
        let mut out = Vec::with_capacity(msg.payload.len() + 2);
        out.extend_from_slice(&msg.payload[..at.start]);
        out.extend_from_slice(new.as_bytes());
        out.extend_from_slice(&msg.payload[at.end..]);
        msg.payload = Bytes::from(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_moves_and_the_schedule_does_not() {
        let c = Clock::new(
            &ClockSpec {
                offset_ms: 30_000,
                drift_ppm: 1000.0,
            },
            1_000_000,
        );
        let mut m = Msg {
            payload: Bytes::from_static(br#"{"seq":1,"ts":2000000,"scheduled_ts":1999990}"#),
            now_us: 0,
            delay_us: 0,
            throttle_us: 0,
            dropped: false,
            duplicated: false,
            hold: 0,
            corrupted: false,
        };
        c.apply(
            &mut m,
            &mut DevState::default(),
            &mut Rng::for_message(0, 0),
        );
        // +30 s, and 1000 ppm of the 1000 s since the start: +1 s.
        assert_eq!(
            &m.payload[..],
            br#"{"seq":1,"ts":2031000,"scheduled_ts":1999990}"#
        );
    }
}
