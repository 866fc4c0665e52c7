//! Failover and fencing end to end: a frozen agent (SIGSTOP) whose devices another agent
//! took never sends one of them again, and a slow stop on one agent (a replaced fleet whose
//! HTTP server hangs) holds up none of its other shards. A third-party subscriber checks
//! that no `(device, seq)` is ever sent twice.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use support::*;

/// Every periodic `(device, seq)` a subscriber saw, and how often.
#[derive(Default, Clone)]
struct Tally(Arc<Mutex<HashMap<(String, u64), u32>>>);

impl Tally {
    /// Counts everything on `sub` until the test ends.
    fn follow(mut sub: async_nats::Subscriber) -> Self {
        let t = Self::default();
        let inner = t.0.clone();
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let v: serde_json::Value = serde_json::from_slice(&msg.payload).expect("JSON");
                if let (Some(id), Some(seq), true) = (
                    v["device_id"].as_str(),
                    v["seq"].as_u64(),
                    v["event"].is_null(),
                ) {
                    *inner
                        .lock()
                        .unwrap()
                        .entry((id.to_string(), seq))
                        .or_default() += 1;
                }
            }
        });
        t
    }

    fn twice(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(k, _)| k.clone())
            .collect();
        v.sort();
        v
    }

    fn messages(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

fn devices_on(status: &serde_json::Value, name: &str) -> u64 {
    status["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == name))
        .and_then(|a| a["devices"].as_u64())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_agent_never_sends_for_a_device_another_agent_took() {
    let mut c = Cluster::new("frz");
    let a1 = c.agent("a1", &[]);
    c.agent("a2", &[]);
    c.wait_agents(2).await;
    let client = c.client().await;
    let mut sub = client.subscribe("frz-tel.>").await.expect("subscribe");
    c.ctl(&[
        "deploy-fleet",
        "f",
        "--count",
        "200",
        "--shard-size",
        "25",
        "--sink",
        "nats",
        "--subject",
        "frz-tel.{fleet}.{device_id}",
        "--interval",
        "200ms",
    ])
    .ok();
    wait_sending(&mut sub, 200, "all devices", Duration::from_secs(30)).await;
    let s = wait_status(
        &c,
        "both agents run devices",
        Duration::from_secs(30),
        |s| devices_on(s, "a1") > 0 && devices_on(s, "a2") > 0,
    )
    .await;
    let frozen_share = devices_on(&s, "a1");
    let tally = Tally::follow(sub);

    // Freeze a1 (its process does nothing, its NATS connection stays open): a2 takes every
    // device over once a1's liveness entry expires.
    c.agents[a1].freeze();
    wait_status(&c, "a2 to run all 200", Duration::from_secs(45), |s| {
        devices_on(s, "a2") == 200
    })
    .await;
    // a1 wakes up with its shards still started: it must send none of them.
    c.agents[a1].thaw();
    // It takes work again (rebalance), handed over with a stop before each lease moves.
    wait_status(
        &c,
        "a1 to run devices again",
        Duration::from_secs(60),
        |s| devices_on(s, "a1") > 0 && fleet(s, "f")["running"] == 200,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let twice = tally.twice();
    assert!(
        twice.is_empty(),
        "{} (device, seq) sent twice (a1 held {frozen_share} before the freeze), e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    assert!(tally.messages() > 1000, "telemetry was seen");
    let log = c.agents[a1].stderr();
    assert!(
        log.contains("liveness entry expired") || log.contains("fenced"),
        "a1 says it fenced itself: {log}"
    );
}

/// A TCP listener that accepts connections and never answers (a hung HTTP server).
async fn hanging_server() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_stop_holds_up_no_other_shard_of_the_agent() {
    let mut c = Cluster::new("slow");
    let a1 = c.agent("a1", &[]);
    c.wait_agents(1).await;
    let client = c.client().await;
    let sub = client.subscribe("slow-tel.>").await.expect("subscribe");
    let mut fenced = client
        .subscribe(c.namespace().event("shard_fenced"))
        .await
        .expect("subscribe");
    c.ctl(&[
        "deploy-fleet",
        "n",
        "--count",
        "200",
        "--shard-size",
        "25",
        "--sink",
        "nats",
        "--subject",
        "slow-tel.{fleet}.{device_id}",
        "--interval",
        "200ms",
    ])
    .ok();
    let (port, _server) = hanging_server().await;
    let url = format!("http://127.0.0.1:{port}/t/{{device_id}}");
    let http = |count: &'static str, interval: &'static str| {
        vec![
            "deploy-fleet".to_string(),
            "h".into(),
            "--count".into(),
            count.into(),
            "--shard-size".into(),
            "10".into(),
            "--sink".into(),
            "http".into(),
            "--url".into(),
            url.clone(),
            "--http-timeout".into(),
            "30s".into(),
            "--interval".into(),
            interval.into(),
        ]
    };
    let first = http("40", "200ms");
    c.ctl(&first.iter().map(String::as_str).collect::<Vec<_>>())
        .ok();
    wait_status(&c, "both fleets running", Duration::from_secs(30), |s| {
        fleet(s, "n")["running"] == 200 && fleet(s, "h")["running"] == 40
    })
    .await;
    // Let requests pile up on the hung server, then follow the nats fleet's telemetry.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tally = Tally::follow(sub);
    let mut tel = client.subscribe("slow-tel.>").await.expect("subscribe");

    // Replace h with fewer devices at another interval: two shards restart and two are
    // released, each stop waiting on requests the server never answers.
    let mut replace = http("20", "300ms");
    replace.push("--replace".into());
    replace.push("--no-wait".into());
    c.ctl(&replace.iter().map(String::as_str).collect::<Vec<_>>())
        .ok();
    let seen = collect(&mut tel, Duration::from_secs(12)).await;

    assert_eq!(seen.seqs.len(), 200, "every device of n kept sending");
    let gaps = seen.gaps();
    assert!(
        gaps.is_empty(),
        "devices of n skipped slots while h was replaced: {:?}",
        &gaps[..gaps.len().min(3)]
    );
    let twice = tally.twice();
    assert!(
        twice.is_empty(),
        "sent twice: {:?}",
        &twice[..twice.len().min(5)]
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), fenced.next())
            .await
            .is_err(),
        "no shard was fenced"
    );
    let log = c.agents[a1].stderr();
    assert!(!log.contains("fenced"), "{log}");
    assert!(
        !log.contains("took back our lease"),
        "a lease released while its stop ran was taken back: {log}"
    );
    wait_status(
        &c,
        "h replaced with 20 devices",
        Duration::from_secs(60),
        |s| fleet(s, "h")["assigned"] == 20 && fleet(s, "n")["running"] == 200,
    )
    .await;
}
