//! Load shapes, checked by a real subscriber counting over time windows.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use pluribus_common::load::LoadSpec;
use pluribus_common::record::FleetRecord;
use pluribus_common::time::now_ms;
use support::*;

async fn record(c: &Cluster, name: &str) -> FleetRecord {
    let js = async_nats::jetstream::new(c.client().await);
    let kv = js
        .get_key_value(c.namespace().fleets_bucket())
        .await
        .expect("bucket");
    let v = kv.get(name).await.expect("get").expect("record");
    pluribus_common::wire::decode(&v).expect("record")
}

/// Distinct devices (and messages) per window of `window_ms`, keyed by the window's
/// midpoint in seconds since the load started, for `total`.
async fn windows(
    sub: &mut async_nats::Subscriber,
    origin_ms: u64,
    window_ms: u64,
    total: Duration,
) -> Vec<(f64, usize, usize)> {
    let mut per: HashMap<u64, (HashSet<String>, usize)> = HashMap::new();
    let deadline = tokio::time::Instant::now() + total;
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, sub.next()).await {
        let v: serde_json::Value = serde_json::from_slice(&msg.payload).expect("json");
        let at = now_ms();
        if at < origin_ms {
            continue;
        }
        let w = (at - origin_ms) / window_ms;
        let e = per.entry(w).or_default();
        e.0.insert(v["device_id"].as_str().unwrap_or_default().to_string());
        e.1 += 1;
    }
    let mut out: Vec<(f64, usize, usize)> = per
        .into_iter()
        .map(|(w, (d, n))| ((w * window_ms + window_ms / 2) as f64 / 1000.0, d.len(), n))
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    // The first and last windows are partial.
    if out.len() > 2 {
        out.remove(0);
        out.pop();
    }
    out
}

/// How far `devices` (distinct senders in the window centred on `t` s) is from the
/// devices the arrival shape has active at some point of that window (of 100, `seed`).
fn arrival_off(load: &LoadSpec, seed: u64, t: f64, window_ms: u64, devices: usize) -> f64 {
    let (a, b) = (t - window_ms as f64 / 2000.0, t + window_ms as f64 / 2000.0);
    let lo = load.active(a, 100, seed).min(load.active(b, 100, seed)) as f64;
    let hi = (0..=10)
        .map(|i| load.active(a + (b - a) * i as f64 / 10.0, 100, seed))
        .max()
        .unwrap_or(0) as f64;
    let d = devices as f64;
    if d < lo {
        lo - d
    } else if d > hi {
        d - hi
    } else {
        0.0
    }
}

/// How far `msgs` in the window centred on `t` s is from the integral of the target rate
/// over it, as a fraction of that integral.
fn rate_off(load: &LoadSpec, seed: u64, t: f64, window_ms: u64, msgs: usize) -> f64 {
    let a = t - window_ms as f64 / 2000.0;
    let span = window_ms as f64 / 1000.0;
    let want: f64 = (0..100)
        .map(|i| {
            load.rate(a + (i as f64 + 0.5) * span / 100.0, seed)
                .unwrap_or(0.0)
        })
        .sum::<f64>()
        / 100.0
        * span;
    (msgs as f64 - want).abs() / want.max(1.0)
}

/// Deploys a 100-device fleet on the nats sink with `extra` flags (the load shape) and
/// subscribes to it; returns the subscription, the load's origin (Unix ms), the load and
/// the seed.
async fn deploy_shaped(
    c: &Cluster,
    name: &str,
    extra: &[&str],
) -> (async_nats::Subscriber, u64, LoadSpec, u64) {
    let client = c.client().await;
    let sub = client
        .subscribe(format!("{}-tel.{name}.>", c.ns))
        .await
        .expect("sub");
    let subject = format!("{}-tel.{{fleet}}.{{device_id}}", c.ns);
    let mut args = vec!["deploy-fleet", name, "--count", "100"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--sink", "nats", "--subject", &subject]);
    c.ctl(&args).ok();
    let rec = record(c, name).await;
    let origin = rec.load_since_ms.unwrap_or(rec.epochs[0].epoch_ms);
    let load = rec.spec.load.clone().expect("load");
    (sub, origin, load, rec.spec.seed.unwrap_or(0))
}

async fn check_arrival(
    c: &Cluster,
    name: &str,
    shape_flag: &str,
    shape: &str,
    window_ms: u64,
    run: Duration,
    tolerance: f64,
) {
    let (mut sub, origin, load, _) = deploy_shaped(
        c,
        name,
        &[
            "--shard-size",
            "25",
            "--interval",
            "100ms",
            "--seed",
            "3",
            shape_flag,
            shape,
        ],
    )
    .await;
    let seen = windows(&mut sub, origin, window_ms, run).await;
    assert!(seen.len() >= 5, "{name}: too few windows: {seen:?}");
    let worst = seen
        .iter()
        .map(|(t, devices, _)| arrival_off(&load, 3, *t, window_ms, *devices))
        .fold(0.0, f64::max);
    eprintln!("{name}: windows (t, devices, msgs) {seen:?}; worst deviation {worst} devices");
    assert!(
        worst <= tolerance,
        "{name}: active devices off the shape by {worst} (tolerance {tolerance}): {seen:?}"
    );
    c.ctl(&["delete-fleet", name]).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn arrival_shapes_ramp_stairs_wave_and_bursts() {
    let mut c = Cluster::new("arrive");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    // Tolerance: 3 of 100 devices per window (boundary effects of 100 ms slots).
    check_arrival(
        &c,
        "ramp",
        "--ramp",
        "100/6s",
        1000,
        Duration::from_secs(9),
        3.0,
    )
    .await;
    check_arrival(
        &c,
        "stairs",
        "--stairs",
        "25/2s",
        1000,
        Duration::from_secs(9),
        3.0,
    )
    .await;
    check_arrival(
        &c,
        "wave",
        "--wave",
        "period=6s,min=0.2,max=1.0",
        500,
        Duration::from_secs(9),
        3.0,
    )
    .await;
    check_arrival(
        &c,
        "bursts",
        "--bursts",
        "every=2s,size=30,hold=1s,base=10",
        500,
        Duration::from_secs(10),
        3.0,
    )
    .await;
    // k6-style stages: up to 60, on to 100, down to 0.
    check_arrival(
        &c,
        "stages",
        "--stages",
        "60:3s,100:3s,0:3s",
        1000,
        Duration::from_secs(10),
        3.0,
    )
    .await;
}

/// Deploys a fleet with a fleet-wide `rate` modulated by `shape`, and checks the messages
/// counted in each window against the integral of the target rate over it.
async fn check_rate_shape(c: &Cluster, name: &str, rate: &str, shape: (&str, &str)) {
    let (mut sub, origin, load, seed) =
        deploy_shaped(c, name, &["--rate", rate, shape.0, shape.1]).await;
    let window_ms = 1000;
    let seen = windows(&mut sub, origin, window_ms, Duration::from_secs(9)).await;
    assert!(seen.len() >= 5, "{name}: too few windows: {seen:?}");
    let worst = seen
        .iter()
        .map(|(t, _, msgs)| rate_off(&load, seed, *t, window_ms, *msgs))
        .fold(0.0, f64::max);
    eprintln!("{name}: windows (t, devices, msgs) {seen:?}; worst deviation {worst:.3}");
    // Messages are counted on arrival here, scheduled by the agent: allow 10% per window.
    assert!(
        worst <= 0.10,
        "{name}: the rate is off its shape by {worst:.3}: {seen:?}"
    );
    c.ctl(&["delete-fleet", name]).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rate_follows_a_ramp_and_a_wave() {
    let mut c = Cluster::new("rshape");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    check_rate_shape(&c, "rramp", "800/s", ("--ramp", "800/8s")).await;
    check_rate_shape(
        &c,
        "rwave",
        "800/s",
        ("--wave", "period=6s,min=0.25,max=1.0"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_arrival_and_the_rate_take_shapes_of_their_own() {
    let mut c = Cluster::new("both");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    // Devices ramp up over 6 s while the fleet's rate follows a wave: one command line.
    let flags = [
        "--rate",
        "600/s",
        "--wave",
        "period=6s,min=0.5,max=1.0",
        "--arrival",
        "ramp:100/6s",
    ];
    let (mut sub, origin, load, seed) = deploy_shaped(&c, "both", &flags).await;
    assert!(load.arrival.is_some() && load.rate.as_ref().is_some_and(|r| r.shape.is_some()));
    let status = c.status();
    let shown = fleet(&status, "both")["load"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        shown.contains("devices") && shown.contains("msg/s"),
        "{shown}"
    );
    let window_ms = 1000;
    let seen = windows(&mut sub, origin, window_ms, Duration::from_secs(9)).await;
    assert!(seen.len() >= 5, "too few windows: {seen:?}");
    let devices = seen
        .iter()
        .map(|(t, d, _)| arrival_off(&load, seed, *t, window_ms, *d))
        .fold(0.0, f64::max);
    let rate = seen
        .iter()
        .map(|(t, _, m)| rate_off(&load, seed, *t, window_ms, *m))
        .fold(0.0, f64::max);
    eprintln!("both: windows {seen:?}; worst: {devices} devices, rate {rate:.3}");
    assert!(
        devices <= 3.0,
        "active devices off the ramp by {devices}: {seen:?}"
    );
    assert!(
        rate <= 0.10,
        "the rate is off its wave by {rate:.3}: {seen:?}"
    );
}

/// Messages per second over `window` on the fleet's subject.
async fn rate(sub: &mut async_nats::Subscriber, window: Duration) -> f64 {
    collect(sub, Duration::from_millis(300)).await; // drop what queued up
    let seen = collect(sub, window).await;
    seen.payloads.len() as f64 / window.as_secs_f64()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_wide_rate_splits_across_agents_changes_live_and_survives_failover() {
    let mut c = Cluster::new("rate");
    c.agent("r1", &["--lease-ttl", "5s"]);
    c.agent("r2", &["--lease-ttl", "5s"]);
    c.wait_agents(2).await;
    let client = c.client().await;
    let mut sub = client.subscribe("rate-tel.>").await.expect("sub");
    c.ctl(&[
        "deploy-fleet",
        "rf",
        "--count",
        "200",
        "--shard-size",
        "50",
        "--rate",
        "1000/s",
        "--sink",
        "nats",
        "--subject",
        "rate-tel.{fleet}.{device_id}",
    ])
    .ok();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = c.status();
    let split = fleet(&status, "rf")["agents"]
        .as_array()
        .expect("split")
        .len();
    assert_eq!(split, 2, "both agents run part of the fleet: {status}");
    assert!(
        fleet(&status, "rf")["load"]
            .as_str()
            .is_some_and(|l| l.contains("1000 msg/s")),
        "{status}"
    );
    // watch shows the current target too.
    let out = c.ctl(&["watch", "rf", "--json", "--count", "1"]);
    let frame: serde_json::Value =
        serde_json::from_str(out.ok().stdout.lines().last().expect("a frame")).expect("json");
    assert!(
        frame["loads"]["rf"]
            .as_str()
            .is_some_and(|l| l.contains("1000 msg/s")),
        "{frame}"
    );
    let r = rate(&mut sub, Duration::from_secs(4)).await;
    eprintln!("1000/s across 2 agents: measured {r:.1} msg/s");
    assert!((r - 1000.0).abs() <= 50.0, "within 5% of 1000: {r}");

    c.ctl(&["set-load", "rf", "--rate", "400/s"]).ok();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = rate(&mut sub, Duration::from_secs(4)).await;
    eprintln!("after set-load 400/s: measured {r:.1} msg/s");
    assert!((r - 400.0).abs() <= 20.0, "within 5% of 400: {r}");
    let seen = collect(&mut sub, Duration::from_secs(2)).await;
    assert!(
        seen.repeats().is_empty(),
        "seq carries on after a load change"
    );

    c.agents[0].kill();
    wait_status(&c, "r2 to hold all 200", Duration::from_secs(20), |s| {
        fleet(s, "rf")["agents"]
            .as_array()
            .is_some_and(|a| a.len() == 1 && a[0]["agent_name"] == "r2" && a[0]["assigned"] == 200)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = rate(&mut sub, Duration::from_secs(4)).await;
    eprintln!("after failover: measured {r:.1} msg/s");
    assert!((r - 400.0).abs() <= 20.0, "the rate survives failover: {r}");
    let seen = collect(&mut sub, Duration::from_secs(2)).await;
    assert!(
        seen.repeats().is_empty(),
        "no device runs twice after failover"
    );
}
