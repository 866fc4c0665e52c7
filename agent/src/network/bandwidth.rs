//! A byte rate cap per device: a token bucket (as GCRA: one timestamp per device).
//! Messages over the rate wait; none is dropped.

use pluribus_common::spec::network::BandwidthSpec;

use super::{rng::Rng, DevState, Impairment, Msg};

/// Caps a device's byte rate.
#[derive(Debug)]
pub struct Bandwidth {
    /// µs per byte.
    us_per_byte: f64,
    /// How far ahead the bucket may run before messages wait (µs): the burst.
    allowance_us: u64,
}

impl Bandwidth {
    /// From its spec.
    pub fn new(s: &BandwidthSpec) -> Self {
        let rate = s.bytes_per_s.max(1) as f64;
        let burst = s.burst_bytes.unwrap_or(s.bytes_per_s).max(1) as f64;
        Self {
            us_per_byte: 1e6 / rate,
            allowance_us: (burst * 1e6 / rate) as u64,
        }
    }
}

impl Impairment for Bandwidth {
    fn apply(&self, msg: &mut Msg, dev: &mut DevState, _rng: &mut Rng) {
        let cost = (msg.payload.len() as f64 * self.us_per_byte) as u64;
        dev.tat_us = dev.tat_us.max(msg.now_us) + cost;
        let wait = dev
            .tat_us
            .saturating_sub(msg.now_us)
            .saturating_sub(self.allowance_us);
        msg.delay_us += wait;
        msg.throttle_us += wait;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn a_burst_passes_then_messages_wait_at_the_rate() {
        let b = Bandwidth::new(&BandwidthSpec {
            bytes_per_s: 1000,
            burst_bytes: Some(200),
        });
        let mut dev = DevState::default();
        let mut rng = Rng::for_message(0, 0);
        let waits: Vec<u64> = (0..4)
            .map(|_| {
                let mut m = Msg {
                    payload: Bytes::from(vec![0u8; 100]),
                    now_us: 1_000_000,
                    delay_us: 0,
                    throttle_us: 0,
                    dropped: false,
                    duplicated: false,
                    hold: 0,
                    corrupted: false,
                };
                b.apply(&mut m, &mut dev, &mut rng);
                m.delay_us
            })
            .collect();
        // 100 bytes take 100 ms at 1000 B/s; 200 bytes of burst go at once.
        assert_eq!(waits, [0, 0, 100_000, 200_000]);
    }
}
