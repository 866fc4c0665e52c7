//! Generating + serialising telemetry on one core: a 10-field profile against the generic
//! device. Plain std timing (no harness):
//!
//! ```text
//! cargo bench -p pluribus-agent --bench profile
//! ```
//!
//! Each run makes 1000 devices and sends them 1000 ticks each, the way a shard runner
//! does (every device once per round), writing into one reused buffer.

use std::hint::black_box;
use std::time::Instant;

use pluribus_agent::device::generic::GenericFactory;
use pluribus_agent::device::profile::ProfileFactory;
use pluribus_agent::device::{DeviceCtx, DeviceFactory, DeviceType, Tick};

const DEVICES: usize = 1000;
const ROUNDS: u64 = 1000;

fn ten_fields() -> serde_json::Value {
    serde_json::json!({
        "name": "bench",
        "fields": {
            "temperature": {"random_walk": {"start": 21, "step": 0.1, "min": -20, "max": 60}},
            "humidity": {"random_walk": {"start": 45, "step": 0.2, "min": 0, "max": 100, "decimals": 1}},
            "voltage": {"normal": {"mean": 230, "stddev": 2}},
            "power": {"sine": {"period": "24h", "amplitude": 500, "offset": 900, "phase": "per_device"}},
            "energy": {"counter": {"start": 0, "step": 3.75}},
            "state": {"state_machine": {"states": [
                {"name": "idle", "dwell": {"min": 10, "max": 60}, "next": {"running": 1}},
                {"name": "running", "dwell": {"min": 60, "max": 600}, "next": {"idle": 3, "fault": 1}},
                {"name": "fault", "dwell": {"min": 5, "max": 30}, "next": {"idle": 1}}]}},
            "door": {"choice": {"values": ["open", "closed"], "weights": [1, 9]}},
            "motion": {"bool": {"probability": 0.1}},
            "serial": {"template": "{fleet}-{index:06}"},
            "unit": "celsius"
        }
    })
}

fn run(label: &str, ty: &dyn DeviceType) {
    let ids: Vec<String> = (0..DEVICES).map(|i| format!("bench-{i:05}")).collect();
    let ctxs: Vec<DeviceCtx<'_>> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| DeviceCtx {
            device_id: id,
            fleet: "bench",
            device_type: label,
            index: i as u64,
            seed: 42,
        })
        .collect();
    let mut devices: Vec<_> = ctxs.iter().map(|c| ty.create(c)).collect();
    let mut out = Vec::with_capacity(1024);
    let (mut bytes, mut msgs) = (0usize, 0u64);
    let t0: u64 = 1_700_000_000_000;
    let start = Instant::now();
    for seq in 0..ROUNDS {
        for (d, c) in devices.iter_mut().zip(&ctxs) {
            out.clear();
            let tick = Tick {
                seq,
                scheduled_ms: t0 + seq * 1000,
                now_ms: t0 + seq * 1000 + 2,
            };
            d.telemetry(c, &tick, &mut out);
            bytes += black_box(&out).len();
            msgs += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{label:>8}: {msgs} msgs in {secs:.3}s = {:>6.1} ns/msg, {:>10.0} msgs/s, {:.0} bytes/msg",
        secs * 1e9 / msgs as f64,
        msgs as f64 / secs,
        bytes as f64 / msgs as f64,
    );
}

fn main() {
    let profile = match ProfileFactory.build(&ten_fields()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("the bench profile is invalid: {e}");
            std::process::exit(1);
        }
    };
    let generic = match GenericFactory.build(&serde_json::Value::Null) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    // A sample message, then three timed runs of each.
    let c = DeviceCtx {
        device_id: "bench-00000",
        fleet: "bench",
        device_type: "profile",
        index: 0,
        seed: 42,
    };
    let mut out = Vec::new();
    profile.create(&c).telemetry(
        &c,
        &Tick {
            seq: 1,
            scheduled_ms: 1_700_000_001_000,
            now_ms: 1_700_000_001_002,
        },
        &mut out,
    );
    println!("sample: {}", String::from_utf8_lossy(&out));
    for _ in 0..3 {
        run("profile", profile.as_ref());
        run("generic", generic.as_ref());
    }
}
