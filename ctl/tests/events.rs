//! Events as any NATS client sees them: devices started, stopped (with why) and failed,
//! alongside the fleet and shard events, and `pluribusctl events` printing them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use pluribus_testkit::{bin_path, free_port, wait_until, Proc};
use serde_json::Value;
use support::*;

/// Reads events until `done` holds on all read so far; panics naming `what` at `timeout`.
async fn events_until(
    sub: &mut async_nats::Subscriber,
    seen: &mut Vec<Value>,
    what: &str,
    timeout: Duration,
    done: impl Fn(&[Value]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done(seen) {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(m)) => seen.push(serde_json::from_slice(&m.payload).expect("event JSON")),
            _ => panic!("{what}: not seen within {timeout:?}; events: {seen:#?}"),
        }
    }
}

/// Device ids of the `kind` events (`devices_started`/`devices_stopped`) with `reason`.
fn ids(seen: &[Value], kind: &str, reason: Option<&str>) -> BTreeSet<String> {
    seen.iter()
        .filter(|e| e["event"] == kind && reason.is_none_or(|r| e["reason"] == r))
        .flat_map(|e| e["device_ids"].as_array().cloned().unwrap_or_default())
        .map(|v| v.as_str().expect("id").to_string())
        .collect()
}

fn names(range: std::ops::Range<u32>) -> BTreeSet<String> {
    range.map(|i| format!("ev-{i:05}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn devices_started_stopped_and_failed_are_events() {
    let mut c = Cluster::new("evt");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let client = c.client().await;
    let mut sub = client.subscribe(c.namespace().event_all()).await.unwrap();
    client.flush().await.unwrap();
    let mut text = Proc::spawn(
        &bin_path("pluribusctl"),
        &["events", "--follow", "--since", "0s", "--count", "3"],
        &[
            ("PLURIBUS_NATS_URL", &c.nats.url()),
            ("PLURIBUS_NAMESPACE", &c.ns),
        ],
    );
    wait_until("events to subscribe", Duration::from_secs(15), || {
        let listening = text.stderr().contains("listening for events");
        async move { listening }
    })
    .await;
    let sink = ["--sink", "nats", "--subject", "evt-tel.{fleet}.{device_id}"];
    let mut deploy = vec!["deploy-fleet", "ev", "--count", "12", "--shard-size", "5"];
    deploy.extend(sink);
    c.ctl(&deploy).ok();

    let mut seen = Vec::new();
    events_until(
        &mut sub,
        &mut seen,
        "12 devices started",
        Duration::from_secs(15),
        |s| ids(s, "devices_started", None).len() == 12,
    )
    .await;
    assert_eq!(ids(&seen, "devices_started", None), names(0..12));
    let shards: BTreeSet<u64> = seen
        .iter()
        .filter(|e| e["event"] == "devices_started")
        .map(|e| e["shard"].as_u64().unwrap())
        .collect();
    assert_eq!(shards, BTreeSet::from([0, 1, 2]), "one event per shard");
    assert!(seen.iter().any(|e| e["event"] == "fleet_created"));

    // One device stopped by hand, then a scale-down: each stop says why.
    c.ctl(&["stop", "ev-00003"]).ok();
    c.ctl(&["scale", "ev", "--count", "8"]).ok();
    events_until(
        &mut sub,
        &mut seen,
        "stop and scale-down",
        Duration::from_secs(15),
        |s| {
            ids(s, "devices_stopped", Some("scaled down")).len() == 4
                && !ids(s, "devices_stopped", Some("stopped")).is_empty()
        },
    )
    .await;
    assert_eq!(
        ids(&seen, "devices_stopped", Some("stopped")),
        BTreeSet::from(["ev-00003".to_string()])
    );
    assert_eq!(
        ids(&seen, "devices_stopped", Some("scaled down")),
        names(8..12)
    );

    // Delete: the 7 devices left stop with their shards.
    c.ctl(&["delete-fleet", "ev"]).ok();
    events_until(
        &mut sub,
        &mut seen,
        "the delete",
        Duration::from_secs(15),
        |s| ids(s, "devices_stopped", Some("fleet deleted")).len() == 7,
    )
    .await;
    let mut left = names(0..8);
    left.remove("ev-00003");
    assert_eq!(ids(&seen, "devices_stopped", Some("fleet deleted")), left);

    // MQTT devices pointed at a port nobody listens on: each device's failure is told once
    // (not every retry), at most FAILURES_PER_SECOND a second per agent; the ones left out
    // are counted in the next event's `suppressed` and told at their next failure.
    let dead = format!("mqtt://127.0.0.1:{}", free_port());
    let mut deploy = vec!["deploy-fleet", "dead", "--count", "60", "--sink", "mqtt"];
    deploy.extend(["--broker", &dead, "--no-wait"]);
    c.ctl(&deploy).ok();
    seen.clear();
    let started = std::time::Instant::now();
    let failed_ids = |s: &[Value]| -> Vec<String> {
        s.iter()
            .filter(|e| e["event"] == "device_failed")
            .map(|e| e["device_id"].as_str().unwrap().to_string())
            .collect()
    };
    events_until(
        &mut sub,
        &mut seen,
        "a device_failed event for each of the 60 devices",
        Duration::from_secs(30),
        |s| failed_ids(s).into_iter().collect::<BTreeSet<_>>().len() == 60,
    )
    .await;
    let took = started.elapsed();
    let failed: Vec<&Value> = seen
        .iter()
        .filter(|e| e["event"] == "device_failed")
        .collect();
    let suppressed: u64 = failed.iter().filter_map(|e| e["suppressed"].as_u64()).sum();
    eprintln!(
        "{} device_failed events for 60 devices in {took:?} ({suppressed} left out and counted)",
        failed.len()
    );
    let f = failed[0];
    assert_eq!(f["fleet"], "dead", "{f}");
    assert!(
        f["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("mqtt connect failed")),
        "{f}"
    );
    assert_eq!(failed.len(), 60, "one event per device, not one per retry");
    assert!(suppressed > 0, "60 failures at once exceed the budget");
    let budget = pluribus_agent::events::FAILURES_PER_SECOND as f64;
    assert!(
        took.as_secs_f64() > 60.0 / budget - 1.5,
        "60 events at most {budget}/s cannot all come in {took:?}"
    );

    // `pluribusctl events` prints them as lines (it saw the first three).
    let code = text.terminate(Duration::from_secs(10));
    let out = text.stdout();
    assert!(out.contains("fleet_created"), "{out}\n{code:?}");
    assert!(
        out.contains("devices_started") || out.contains("shard_claimed"),
        "{out}"
    );
}
