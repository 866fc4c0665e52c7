//! Deploy, re-deploy, scale, stop, delete and expire, through pluribusctl.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::*;

fn nats_sink(ns: &str) -> [String; 4] {
    [
        "--sink".into(),
        "nats".into(),
        "--subject".into(),
        format!("{ns}-tel.{{fleet}}.{{device_id}}"),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn single_devices_are_idempotent_by_id_and_random_without() {
    let mut c = Cluster::new("single");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let client = c.client().await;
    let mut sub = client.subscribe("single-tel.>").await.expect("sub");
    let sink = nats_sink("single");
    let s: Vec<&str> = sink.iter().map(String::as_str).collect();

    let mut args = vec![
        "deploy",
        "--device-id",
        "dev-1",
        "--interval",
        "300ms",
        "--json",
    ];
    args.extend(&s);
    let doc = c.ctl(&args).ok().json();
    assert_eq!(doc["device_id"], "dev-1");
    assert_eq!(doc["agent_name"], "a1");
    assert_eq!(doc["unchanged"], false);
    let again = c.ctl(&args).ok().json();
    assert_eq!(again["unchanged"], true, "same spec twice changes nothing");

    // Human output names the device and the agent.
    let mut plain = vec!["deploy", "--interval", "300ms"];
    plain.extend(&s);
    let out = c.ctl(&plain);
    out.ok();
    assert!(out.stdout.contains("running on agent a1"), "{}", out.stdout);
    let seen = wait_sending(&mut sub, 2, "both devices", Duration::from_secs(15)).await;
    assert!(seen.seqs.contains_key("dev-1"));
    let other = seen.seqs.keys().find(|k| *k != "dev-1").expect("random id");
    assert_eq!(other.len(), 36, "a UUID: {other}");

    // A command changes the device's interval: 300 ms → 100 ms, seq carrying on.
    let r = client
        .request(
            c.namespace().device_cmd("dev-1", "dev-1"),
            r#"{"interval":"100ms"}"#.into(),
        )
        .await
        .expect("the device answers");
    let reply: serde_json::Value = serde_json::from_slice(&r.payload).expect("json");
    assert!(reply["error"].is_null(), "{reply}");
    collect(&mut sub, Duration::from_millis(300)).await;
    let fast = collect(&mut sub, Duration::from_secs(2)).await;
    let n = fast.seqs.get("dev-1").map_or(0, Vec::len);
    assert!(
        (15..=25).contains(&n),
        "about 20 messages in 2 s at 100 ms: {n}"
    );
    assert!(
        fast.gaps().is_empty() && fast.repeats().is_empty(),
        "{:?}",
        fast.seqs.get("dev-1")
    );

    c.ctl(&["stop", "dev-1"]).ok();
    let seen = wait_sending(&mut sub, 1, "dev-1 stopped", Duration::from_secs(15)).await;
    assert!(!seen.seqs.contains_key("dev-1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn scale_redeploy_replace_stop_and_delete() {
    let mut c = Cluster::new("life");
    c.agent("a1", &[]);
    c.agent("a2", &[]);
    c.wait_agents(2).await;
    let client = c.client().await;
    let mut sub = client.subscribe("life-tel.>").await.expect("sub");
    let sink = nats_sink("life");
    let s: Vec<&str> = sink.iter().map(String::as_str).collect();
    let mut deploy = vec![
        "deploy-fleet",
        "s1",
        "--count",
        "100",
        "--shard-size",
        "30",
        "--interval",
        "400ms",
    ];
    deploy.extend(&s);
    c.ctl(&deploy).ok();
    wait_sending(&mut sub, 100, "100 devices", Duration::from_secs(15)).await;

    // The same spec again: nothing changes.
    let mut again = deploy.clone();
    again.push("--json");
    assert_eq!(c.ctl(&again).ok().json()["unchanged"], true);

    // A different spec under the same name is refused without --replace.
    let mut other = vec![
        "deploy-fleet",
        "s1",
        "--count",
        "100",
        "--shard-size",
        "30",
        "--interval",
        "1s",
    ];
    other.extend(&s);
    let out = c.ctl(&other);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("--replace"), "{}", out.stderr);

    // Scale up: new devices start (ids continue the template), old ones keep their seq.
    let before = collect(&mut sub, Duration::from_secs(1)).await;
    c.ctl(&["scale", "s1", "--count", "250"]).ok();
    let seen = wait_sending(&mut sub, 250, "250 devices", Duration::from_secs(20)).await;
    assert!(seen.seqs.contains_key("s1-00249"));
    let old_first = seen.seqs["s1-00000"][0];
    assert!(
        old_first > *before.seqs["s1-00000"].last().expect("seq"),
        "seq continues across a scale"
    );
    // Auto-rebalance may be moving a shard right now: wait for it to settle.
    wait_status(&c, "250 running", Duration::from_secs(15), |s| {
        fleet(s, "s1")["running"] == 250
    })
    .await;

    // Scale down: the highest indices stop.
    c.ctl(&["scale", "s1", "--count", "40"]).ok();
    let seen = wait_sending(&mut sub, 40, "40 devices", Duration::from_secs(20)).await;
    assert!(
        seen.seqs.keys().all(|k| k.as_str() < "s1-00040"),
        "{:?}",
        seen.seqs.keys().max()
    );

    // Stop one device of the fleet.
    c.ctl(&["stop", "s1-00007"]).ok();
    let seen = wait_sending(&mut sub, 39, "39 devices", Duration::from_secs(15)).await;
    assert!(!seen.seqs.contains_key("s1-00007"));
    assert_eq!(fleet(&c.status(), "s1")["desired"], 39);

    // Replace with a slower interval: devices restart with the new spec.
    let mut replace = vec![
        "deploy-fleet",
        "s1",
        "--count",
        "40",
        "--shard-size",
        "30",
        "--interval",
        "1s",
        "--replace",
    ];
    replace.extend(&s);
    let last_before = *collect(&mut sub, Duration::from_secs(1)).await.seqs["s1-00001"]
        .last()
        .expect("seq");
    c.ctl(&replace).ok();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Drop what queued up while we slept (the last messages of the old spec among them).
    collect(&mut sub, Duration::from_millis(300)).await;
    let seen = collect(&mut sub, Duration::from_secs(3)).await;
    assert_eq!(seen.seqs.len(), 40, "the replace brings back every index");
    let seqs = &seen.seqs["s1-00001"];
    assert!(
        (2..=4).contains(&seqs.len()),
        "about 3 messages in 3 s at 1s: {seqs:?}"
    );
    assert!(
        seqs[0] > last_before,
        "seq carries on above {last_before} after a replace: {seqs:?}"
    );
    assert!(seen.gaps().is_empty(), "{:?}", seen.gaps());

    // Delete: everything stops and the fleet is gone.
    let out = c.ctl(&["delete-fleet", "s1"]);
    out.ok();
    assert!(out.stdout.contains("deleted"), "{}", out.stdout);
    collect(&mut sub, Duration::from_millis(500)).await;
    let seen = collect(&mut sub, Duration::from_secs(2)).await;
    assert!(
        seen.seqs.is_empty(),
        "no telemetry after delete: {:?}",
        seen.seqs.keys().take(3).collect::<Vec<_>>()
    );
    let status = c.status();
    assert!(
        status["fleets"].as_array().expect("fleets").is_empty(),
        "{status}"
    );
    let out = c.ctl(&["delete-fleet", "s1"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("no fleet named s1"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_with_a_duration_stops_and_deletes_itself() {
    let mut c = Cluster::new("dur");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let client = c.client().await;
    let mut sub = client.subscribe("dur-tel.>").await.expect("sub");
    let sink = nats_sink("dur");
    let mut args = vec![
        "deploy-fleet",
        "d1",
        "--count",
        "20",
        "--interval",
        "300ms",
        "--duration",
        "4s",
    ];
    args.extend(sink.iter().map(String::as_str));
    c.ctl(&args).ok();
    wait_sending(&mut sub, 20, "20 devices", Duration::from_secs(10)).await;
    wait_status(
        &c,
        "the fleet to delete itself",
        Duration::from_secs(20),
        |s| s["fleets"].as_array().is_some_and(|f| f.is_empty()),
    )
    .await;
    // Drop what queued up on the subscription while we polled status, then listen.
    collect(&mut sub, Duration::from_millis(500)).await;
    let late = collect(&mut sub, Duration::from_secs(2)).await;
    assert!(
        late.seqs.is_empty(),
        "telemetry after the fleet expired: {:?}",
        late.seqs
    );
}
