//! Devices described by profiles: values from (seed, device, seq) on any agent, events,
//! commands, and on_start/on_stop in every way a device can start and stop.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use pluribus_agent::device::profile::ProfileFactory;
use pluribus_agent::device::{DeviceCtx, DeviceFactory, Tick};
use support::*;

const PROFILE: &str = r#"
name: test-sensor
interval: 300ms
fields:
  temperature: {random_walk: {start: 20, step: 0.5, min: -10, max: 50, decimals: 2}}
  humidity: {uniform: {min: 30, max: 70, decimals: 1}}
  wave: {sine: {period: 10s, amplitude: 5, offset: 10, phase: per_device, decimals: 3}}
  site: {template: "{fleet}/{index}"}
  nested:
    ok: {bool: {probability: 0.9}}
    mode: {choice: {values: [a, b, c], weights: [1, 1, 1]}}
events:
  - name: door_open
    probability: 0.2
    fields:
      open: true
commands:
  set: [humidity]
  interval: true
on_start:
  fields: {status: online}
on_stop:
  fields: {status: offline}
"#;

fn profile_file(dir: &std::path::Path) -> String {
    let p = dir.join("test-sensor.yaml");
    std::fs::write(&p, PROFILE).expect("write profile");
    p.to_str().expect("utf8").to_string()
}

/// What the device with this id would send at `seq`, computed here with the agent library.
fn expected_data(
    options: &serde_json::Value,
    fleet: &str,
    id: &str,
    index: u64,
    seed: u64,
    seq: u64,
    scheduled_ms: u64,
) -> serde_json::Value {
    let ty = ProfileFactory.build(options).expect("profile builds");
    let ctx = DeviceCtx {
        device_id: id,
        fleet,
        device_type: "test-sensor",
        index,
        seed,
    };
    let mut dev = ty.create(&ctx);
    let mut out = Vec::new();
    dev.telemetry(
        &ctx,
        &Tick {
            seq,
            scheduled_ms,
            now_ms: scheduled_ms,
        },
        &mut out,
    );
    let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
    v["data"].clone()
}

/// How long a lifecycle step may take on a slow CI machine (it takes well under a second
/// here), and how long to keep listening afterwards for anything extra.
const T: Duration = Duration::from_secs(10);
const TAIL: Duration = Duration::from_millis(700);

fn lifecycle(seen: &Seen, status: &str) -> usize {
    seen.payloads
        .iter()
        .filter(|p| p["lifecycle"].is_string() && p["data"]["status"] == status)
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn profile_devices_are_deterministic_and_run_their_lifecycle_everywhere() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = profile_file(dir.path());
    let mut c = Cluster::new("prof");
    c.agent("p1", &[]);
    c.agent("p2", &[]);
    c.wait_agents(2).await;
    let client = c.client().await;
    let mut sub = client.subscribe("prof-tel.>").await.expect("sub");

    let out = c.ctl(&[
        "deploy-fleet",
        "pf",
        "--count",
        "40",
        "--shard-size",
        "10",
        "--profile",
        &file,
        "--seed",
        "42",
        "--sink",
        "nats",
        "--subject",
        "prof-tel.{fleet}.{device_id}",
    ]);
    out.ok();
    // Devices start (on_start) when claimed, and send from their schedule's start, 2 s on.
    let seen = collect_until(&mut sub, "every device online and sending", T, TAIL, |s| {
        s.seqs.len() >= 40 && lifecycle(s, "online") >= 40 && s.payloads.len() > 200
    })
    .await;
    assert_eq!(seen.seqs.len(), 40, "every device sends");
    assert_eq!(
        lifecycle(&seen, "online"),
        40,
        "on_start ran once per device"
    );

    // Values are a function of (seed, device, seq): recompute a few here.
    let options = serde_json::to_value(
        pluribus_common::profile::load_profile(std::path::Path::new(&file)).expect("load"),
    )
    .expect("json");
    let telemetry: Vec<&serde_json::Value> = seen
        .payloads
        .iter()
        .filter(|p| p["seq"].is_u64() && p["event"].is_null())
        .collect();
    assert!(telemetry.len() > 100);
    for p in telemetry.iter().take(50) {
        let id = p["device_id"].as_str().expect("id");
        let index: u64 = id
            .rsplit('-')
            .next()
            .and_then(|s| s.parse().ok())
            .expect("index");
        let want = expected_data(
            &options,
            "pf",
            id,
            index,
            42,
            p["seq"].as_u64().expect("seq"),
            p["scheduled_ts"].as_u64().expect("ts"),
        );
        assert_eq!(p["data"], want, "{id} seq {}", p["seq"]);
        assert_eq!(p["device_type"], "test-sensor");
    }
    // Events come alongside the telemetry, at about their probability.
    let events = seen
        .payloads
        .iter()
        .filter(|p| p["event"] == "door_open")
        .count();
    let ticks = telemetry.len();
    assert!(
        events > ticks / 10 && events < ticks * 3 / 10,
        "{events} events for {ticks} ticks at p=0.2"
    );

    // A command sets a field; the next telemetry shows it.
    let r = client
        .request(
            c.namespace().device_cmd("pf", "pf-00003"),
            r#"{"set":{"humidity":99.5}}"#.into(),
        )
        .await
        .expect("the device answers");
    let reply: serde_json::Value = serde_json::from_slice(&r.payload).expect("reply");
    assert!(reply["error"].is_null(), "{reply}");
    let after = collect(&mut sub, Duration::from_secs(1)).await;
    let last = after
        .payloads
        .iter()
        .rev()
        .find(|p| p["device_id"] == "pf-00003" && p["seq"].is_u64() && p["event"].is_null())
        .expect("telemetry");
    assert_eq!(last["data"]["humidity"], 99.5);

    // Scale down: the 10 highest devices say goodbye.
    c.ctl(&["scale", "pf", "--count", "30"]).ok();
    let seen = collect_until(&mut sub, "on_stop on scale-down", T, TAIL, |s| {
        lifecycle(s, "offline") >= 10
    })
    .await;
    assert_eq!(lifecycle(&seen, "offline"), 10, "on_stop on scale-down");

    // Drain p1: its shards are released, their devices stop there and start on p2. The
    // split is read once every shard is held at the fleet's current generation (right after
    // the scale-down a shard restarting at the new generation is not counted yet).
    let settled = wait_status(&c, "all 30 devices assigned", T, |s| {
        let f = fleet(s, "pf");
        f["assigned"] == 30 && f["pending"] == 0
    })
    .await;
    let on_p1 = fleet(&settled, "pf")["agents"]
        .as_array()
        .expect("split")
        .iter()
        .find(|a| a["agent_name"] == "p1")
        .and_then(|a| a["assigned"].as_u64())
        .unwrap_or(0) as usize;
    assert!(on_p1 > 0);
    c.ctl(&["drain", "p1"]).ok();
    let seen = collect_until(&mut sub, "the drained devices moving", T, TAIL, |s| {
        lifecycle(s, "offline") >= on_p1 && lifecycle(s, "online") >= on_p1
    })
    .await;
    assert_eq!(
        lifecycle(&seen, "offline"),
        on_p1,
        "on_stop when a shard is released"
    );
    assert_eq!(lifecycle(&seen, "online"), on_p1, "on_start where it lands");
    // Seq carries on after the move, and values are still the same function.
    let moved: HashMap<String, Vec<u64>> = seen.seqs.clone();
    assert!(moved.values().all(|s| s.windows(2).all(|w| w[1] > w[0])));

    // Agent shutdown: p2 holds everything now; SIGTERM makes all 30 say goodbye.
    assert_eq!(c.agents[1].terminate(Duration::from_secs(15)), Some(0));
    let seen = collect_until(&mut sub, "on_stop on shutdown", T, TAIL, |s| {
        lifecycle(s, "offline") >= 30
    })
    .await;
    assert_eq!(lifecycle(&seen, "offline"), 30, "on_stop on agent shutdown");

    // Delete: p1 (drained) takes work again, runs all 30, then the delete says goodbye.
    c.ctl(&["drain", "p1", "--undo"]).ok();
    wait_sending(&mut sub, 30, "devices back on p1", Duration::from_secs(20)).await;
    c.ctl(&["delete-fleet", "pf"]).ok();
    let seen = collect_until(&mut sub, "on_stop on delete", T, TAIL, |s| {
        lifecycle(s, "offline") >= 30
    })
    .await;
    assert_eq!(lifecycle(&seen, "offline"), 30, "on_stop on delete");
}

#[test]
fn profiles_are_listed_and_bad_ones_refused_with_file_line_and_field() {
    let c = Cluster::new("plist");
    let out = c.ctl(&["profiles", "--json"]);
    let names: Vec<String> = out.ok().json()["profiles"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|p| p["name"].as_str().map(String::from))
        .collect();
    for n in [
        "temperature-humidity",
        "smart-meter",
        "gps-tracker",
        "door-motion",
        "industrial-machine",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} in {names:?}");
    }
    let out = c.ctl(&["profiles", "show", "smart-meter"]);
    assert!(out.ok().stdout.contains("name: smart-meter"));
    let out = c.ctl(&["profiles", "show", "nope"]);
    assert!(
        out.code != 0 && out.stderr.contains("smart-meter"),
        "{}",
        out.stderr
    );

    let dir = tempfile::tempdir().expect("tmp");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: bad\ninterval: 1s\nfields:\n  t:\n    normal: {mean: 1, stddev: -2}\n",
    )
    .expect("write");
    let out = c.ctl(&[
        "deploy-fleet",
        "b",
        "--count",
        "2",
        "--profile",
        bad.to_str().expect("utf8"),
    ]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("bad.yaml:") && out.stderr.contains("stddev"),
        "{}",
        out.stderr
    );
    let out = c.ctl(&[
        "deploy-fleet",
        "b",
        "--count",
        "2",
        "--profile",
        "no-such-profile",
    ]);
    assert!(
        out.code != 0 && out.stderr.contains("door-motion"),
        "{}",
        out.stderr
    );
}
