//! Every decoder of untrusted bytes in `common` returns an error, never panics, on any
//! input: random bytes, and valid messages, records and files with bytes flipped, cut or
//! inserted. A record that decodes and validates can be used (its shard arithmetic runs).
//! `bench/fuzz.sh` runs these with many more cases (PROPTEST_CASES).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use pluribus_common::hist::Hist;
use pluribus_common::messages::{
    AgentAnswer, AgentCommand, Event, FleetCounters, Heartbeat, LeaseRecord, Reply, ShardOffer,
};
use pluribus_common::profile::parse_profile_text;
use pluribus_common::record::{FleetRecord, RecordKind};
use pluribus_common::spec::{parse_fleet_text, FileFormat, FleetSpec};
use pluribus_common::wire::{decode, encode};
use proptest::prelude::*;

/// A valid heartbeat with a histogram, as an agent sends it.
fn heartbeat() -> Vec<u8> {
    let mut h = Hist::new();
    for v in [1u64, 10, 100, 1000, 10_000] {
        h.record(v);
    }
    let mut counters = serde_json::to_value(FleetCounters::default()).unwrap();
    counters["tick_lag_us"] = serde_json::to_value(&h).unwrap();
    serde_json::to_vec(&serde_json::json!({
        "v": 1, "id": "a", "name": "a", "labels": {"zone": "a"}, "version": "0.1.0",
        "uptime_s": 5, "devices": 10, "capacity": null, "draining": false,
        "device_types": ["generic"], "sink_types": ["nats"],
        "fleets": {"f": counters}, "interval_ms": 2000, "ts_ms": 1
    }))
    .unwrap()
}

/// A valid fleet record with a load shape and a network rule.
fn record() -> Vec<u8> {
    let spec = parse_fleet_text("f.yaml", FLEET, FileFormat::Yaml, None).unwrap();
    encode(&FleetRecord::new(
        RecordKind::Fleet,
        spec,
        1_000,
        Duration::ZERO,
    ))
    .to_vec()
}

const FLEET: &str = "name: meters\ncount: 2000\nshard_size: 500\ndevice:\n  interval: 10s\n  jitter: 500ms\nsink:\n  type: nats\n  subject: \"t.{fleet}.{device_id}\"\nload:\n  arrival: {ramp: {over: 60s}}\n  rate: {target: 2000, shape: {wave: {period: 60s, min: 0.2, max: 1.0}}}\n";

/// Flips, cuts and inserts bytes of `base` at positions chosen by `edits`.
fn mutate(base: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut b = base.to_vec();
    for &(at, kind, byte) in edits {
        if b.is_empty() {
            b.push(byte);
            continue;
        }
        let i = at % b.len();
        match kind % 4 {
            0 => b[i] ^= byte.max(1),
            1 => b.truncate(i),
            2 => b.insert(i, byte),
            _ => {
                b.remove(i);
            }
        }
    }
    b
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..8)
}

/// Every bus and KV message type, decoded from `bytes`: errors are fine, panics are not.
fn decode_all(bytes: &[u8]) {
    let _ = decode::<ShardOffer>(bytes);
    let _ = decode::<LeaseRecord>(bytes);
    let _ = decode::<pluribus_common::messages::Liveness>(bytes);
    let _ = decode::<AgentCommand>(bytes);
    let _ = decode::<Reply<AgentAnswer>>(bytes);
    let _ = decode::<Event>(bytes);
    let _ = decode::<pluribus_common::peer::Peer>(bytes);
    if let Ok(hb) = decode::<Heartbeat>(bytes) {
        for h in hb.fleets.values().filter_map(|c| c.tick_lag_us.as_ref()) {
            let _ = (h.quantile(0.99), h.count(), h.max());
        }
    }
    if let Ok(r) = decode::<FleetRecord>(bytes) {
        if r.validate().is_ok() {
            for s in 0..r.shard_count().min(4) {
                let _ = r.shard_range(s);
            }
            let _ = (r.count(), r.desired(), r.active_at(2_000));
        }
    }
}

/// Fleet files in the three formats, and profiles.
fn parse_all(text: &str) {
    for f in [FileFormat::Yaml, FileFormat::Toml, FileFormat::Json] {
        let _ = parse_fleet_text("f", text, f, None);
        let _ = parse_profile_text("p", text, f);
    }
}

proptest! {
    #[test]
    fn bus_messages_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        decode_all(&bytes);
    }

    #[test]
    fn mutated_heartbeats_and_records_never_panic(e in edits(), which in 0u8..2) {
        let base = if which == 0 { heartbeat() } else { record() };
        decode_all(&mutate(&base, &e));
    }

    #[test]
    fn histograms_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), e in edits()) {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let _ = serde_json::from_value::<Hist>(serde_json::Value::String(b64.encode(&bytes)));
        let mut h = Hist::new();
        h.record(42);
        let valid = serde_json::to_value(&h).unwrap();
        if let Some(Ok(raw)) = valid.as_str().map(|s| b64.decode(s)) {
            let bad = b64.encode(mutate(&raw, &e));
            let _ = serde_json::from_value::<Hist>(serde_json::Value::String(bad));
        }
    }

    #[test]
    fn fleet_and_profile_files_never_panic(text in ".{0,400}") {
        parse_all(&text);
    }

    #[test]
    fn mutated_fleet_and_profile_files_never_panic(e in edits(), which in 0usize..6) {
        let base = match which {
            0 => FLEET.to_string(),
            1 => serde_json::to_string(&parse_fleet_text("f.yaml", FLEET, FileFormat::Yaml, None).unwrap()).unwrap(),
            n => pluribus_common::profile::builtin()[n - 2].1.to_string(),
        };
        if let Ok(text) = String::from_utf8(mutate(base.as_bytes(), &e)) {
            parse_all(&text);
        }
    }
}

/// The corpus above is valid before it is mutated (else the mutations prove little).
#[test]
fn the_seeds_are_valid() {
    assert!(decode::<Heartbeat>(&heartbeat()).is_ok());
    let r = decode::<FleetRecord>(&record()).unwrap();
    r.validate().unwrap();
    let _: FleetSpec = r.spec;
}
