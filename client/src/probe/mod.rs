//! The end-to-end probe: subscribes where the system under test delivers telemetry (an MQTT
//! broker, or a NATS subject), reads `device_id`, `fleet`, `seq` and `ts` from each JSON
//! payload, and counts latency, loss, duplicates and order ([`state`]).
//!
//! Each source runs in a task of its own and hands [`Delivery`]s, stamped with the time
//! they arrived, to the command over a channel.

pub mod checks;
pub mod injected;
pub mod mqtt;
pub mod nats;
pub mod seqset;
pub mod state;
pub mod summary;
pub mod tls;

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Deserialize;

use state::{Observation, ProbeState};

/// Deliveries a source may queue before it waits for the probe.
pub const QUEUE: usize = 65_536;

/// One message as it arrived.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The payload.
    pub payload: Bytes,
    /// When it arrived (Unix µs).
    pub recv_us: u64,
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The fields the probe reads; anything else in the payload is skipped.
#[derive(Debug, Deserialize)]
struct Telemetry<'a> {
    #[serde(borrow)]
    device_id: Cow<'a, str>,
    #[serde(borrow, default)]
    fleet: Option<Cow<'a, str>>,
    seq: u64,
    #[serde(default)]
    ts: Option<u64>,
}

/// Counts one delivery into `state`: a telemetry message, or an unreadable one.
pub fn ingest(state: &mut ProbeState, d: &Delivery) {
    match serde_json::from_slice::<Telemetry<'_>>(&d.payload) {
        Ok(t) => state.record(
            &Observation {
                fleet: t.fleet.as_deref().unwrap_or("-"),
                device_id: &t.device_id,
                seq: t.seq,
                ts_ms: t.ts,
            },
            d.recv_us,
        ),
        Err(_) => state.unreadable(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliver(state: &mut ProbeState, json: &str) {
        ingest(
            state,
            &Delivery {
                payload: Bytes::from(json.to_string()),
                recv_us: 1_000_000,
            },
        );
    }

    #[test]
    fn telemetry_is_read_and_the_rest_counted_as_unreadable() {
        let mut s = ProbeState::new("t", 0);
        deliver(
            &mut s,
            r#"{"device_id":"f-00001","fleet":"f","device_type":"generic","seq":7,"ts":999,"data":{"t":[1,{"x":2}]}}"#,
        );
        deliver(&mut s, r#"{"device_id":"esc\"aped","seq":1}"#);
        deliver(&mut s, r#"{"device_id":"d","seq":-1}"#);
        deliver(&mut s, "not json");
        assert_eq!(s.counts().received, 2);
        assert_eq!(s.unparsed, 2);
        assert_eq!(s.fleets["f"].devices["f-00001"].latency_max_us, 1_000);
        assert!(s.fleets["-"].devices.contains_key("esc\"aped"));
    }
}
