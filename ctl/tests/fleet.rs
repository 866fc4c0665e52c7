//! The core journey: two agents, a 1000-device fleet on the nats sink, an agent killed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn fleet_runs_on_two_agents_and_survives_a_sigkill() {
    let mut c = Cluster::new("core");
    c.agent("a1", &[]);
    c.agent("a2", &[]);
    c.wait_agents(2).await;
    let client = c.client().await;
    let mut sub = client.subscribe("core-tel.>").await.expect("subscribe");

    let out = c.ctl(&[
        "deploy-fleet",
        "f1",
        "--count",
        "1000",
        "--shard-size",
        "100",
        "--sink",
        "nats",
        "--subject",
        "core-tel.{fleet}.{device_id}",
        "--interval",
        "500ms",
        "--json",
    ]);
    let doc = out.ok().json();
    assert_eq!(doc["assigned"], 1000, "{doc}");
    assert!(
        out.stderr.contains("devices assigned"),
        "progress is shown: {}",
        out.stderr
    );

    // Every device sends, and each device's seq goes up by one.
    let seen = wait_sending(&mut sub, 1000, "all devices", Duration::from_secs(20)).await;
    let seen2 = collect(&mut sub, Duration::from_secs(2)).await;
    assert!(
        seen.gaps().is_empty(),
        "gaps: {:?}",
        &seen.gaps()[..seen.gaps().len().min(3)]
    );
    assert!(seen2.gaps().is_empty());
    assert!(seen.payloads.iter().all(|p| p["fleet"] == "f1"
        && p["device_type"] == "generic"
        && p["data"]["battery"].is_number()));

    // Status: 1000 running, split across both agents within ±20% of 500.
    let status = c.status();
    let f = fleet(&status, "f1");
    assert_eq!(f["desired"], 1000);
    assert_eq!(f["running"], 1000);
    let per_agent: Vec<u64> = status["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .map(|a| a["devices"].as_u64().expect("n"))
        .collect();
    assert_eq!(per_agent.len(), 2, "{status}");
    assert!(
        per_agent.iter().all(|&n| (400..=600).contains(&n)),
        "fair split: {per_agent:?}"
    );

    // Kill a1 without warning. Its devices come back on a2 within 3 lease TTLs.
    let before = collect(&mut sub, Duration::from_secs(1)).await;
    let killed = Instant::now();
    c.agents[0].kill();
    let after = wait_sending(
        &mut sub,
        1000,
        "devices after failover",
        Duration::from_secs(30),
    )
    .await;
    let failover = killed.elapsed();
    eprintln!("failover: all 1000 devices sending again {failover:?} after SIGKILL");

    // No device runs twice, and seq continues (a gap for the outage, never a reset).
    let steady = collect(&mut sub, Duration::from_secs(3)).await;
    assert_eq!(steady.seqs.len(), 1000);
    assert!(
        steady.repeats().is_empty(),
        "devices running twice: {:?}",
        steady.repeats()
    );
    for (id, seqs) in &before.seqs {
        let last_before = *seqs.last().expect("seq");
        let first_after = after
            .seqs
            .get(id)
            .and_then(|s| s.first())
            .copied()
            .expect("device is back");
        assert!(
            first_after > last_before,
            "{id}: seq {first_after} after failover, {last_before} before"
        );
    }
    let status = wait_status(
        &c,
        "status to show the survivor holds everything",
        Duration::from_secs(10),
        |s| {
            fleet(s, "f1")["running"] == 1000
                && s["agents"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|a| a["name"] == "a2" && a["devices"] == 1000))
        },
    )
    .await;
    let a2 = status["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .find(|a| a["name"] == "a2")
        .expect("a2");
    assert_eq!(a2["devices"], 1000);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_hands_devices_over_at_once_and_exits_zero() {
    let mut c = Cluster::new("term");
    c.agent("a1", &[]);
    c.agent("a2", &[]);
    c.wait_agents(2).await;
    let client = c.client().await;
    let mut sub = client.subscribe("term-tel.>").await.expect("subscribe");
    c.ctl(&[
        "deploy-fleet",
        "t1",
        "--count",
        "200",
        "--shard-size",
        "50",
        "--sink",
        "nats",
        "--subject",
        "term-tel.{fleet}.{device_id}",
        "--interval",
        "500ms",
    ])
    .ok();
    wait_sending(&mut sub, 200, "all devices", Duration::from_secs(20)).await;

    let stopped = Instant::now();
    let code = c.agents[0].terminate(Duration::from_secs(15));
    assert_eq!(
        code,
        Some(0),
        "graceful stop exits 0: {}",
        c.agents[0].stderr()
    );
    // Handed over at once: well before a lease TTL (10 s) could have expired.
    wait_status(&c, "a2 to hold all 200", Duration::from_secs(8), |s| {
        fleet(s, "t1")["running"] == 200
            && s["agents"]
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a["name"] == "a2" && a["devices"] == 200))
    })
    .await;
    eprintln!("graceful handover took {:?}", stopped.elapsed());
    let steady = wait_sending(
        &mut sub,
        200,
        "devices after handover",
        Duration::from_secs(10),
    )
    .await;
    assert!(steady.repeats().is_empty());
    assert!(
        c.agents[0].stderr().contains("stopped"),
        "{}",
        c.agents[0].stderr()
    );
}
