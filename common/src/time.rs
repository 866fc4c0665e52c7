//! Wall-clock helpers. Timestamps on the wire are Unix milliseconds.
//!
//! An agent follows the NATS server's clock rather than its own: it learns the offset
//! between the two from the server's timestamps on its own KV writes
//! ([`set_clock_offset_ms`]), and every time below includes it. Device schedules, fleet
//! durations and heartbeats then agree across agents whose clocks disagree. A process that
//! never sets it (pluribusctl) uses its own clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds to add to the local clock to get the server's (process-wide: the clock is).
static OFFSET_US: AtomicI64 = AtomicI64::new(0);

/// Sets the offset (ms) of the NATS server's clock from the local one.
pub fn set_clock_offset_ms(ms: i64) {
    OFFSET_US.store(ms.saturating_mul(1000), Ordering::Relaxed);
}

/// The offset (ms) of the NATS server's clock from the local one, as last set.
pub fn clock_offset_ms() -> i64 {
    OFFSET_US.load(Ordering::Relaxed) / 1000
}

/// Microseconds since the Unix epoch on the local clock alone.
pub fn local_now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Microseconds since the Unix epoch, now (server time once the offset is known).
pub fn now_us() -> u64 {
    shifted(local_now_us(), OFFSET_US.load(Ordering::Relaxed))
}

fn shifted(local_us: u64, offset_us: i64) -> u64 {
    local_us.saturating_add_signed(offset_us)
}

/// Milliseconds since the Unix epoch, now (server time once the offset is known).
pub fn now_ms() -> u64 {
    now_us() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_moves_the_clock_either_way() {
        assert_eq!(shifted(1_000_000, 90_000_000), 91_000_000);
        assert_eq!(shifted(100_000_000, -90_000_000), 10_000_000);
        assert_eq!(shifted(1, -5), 0);
    }
}
