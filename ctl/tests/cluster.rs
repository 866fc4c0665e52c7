//! Growing past one machine is NATS clustering: agents and pluribusctl on different nodes of
//! a 3-node cluster, buckets with 3 replicas, and a node killed under a running fleet.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use pluribus_testkit::{spawn_agent_at, NatsCluster};
use support::*;

const NS: &str = "clu";

fn ctl_on(cluster: &NatsCluster, node: usize, args: &[&str]) -> pluribus_testkit::Output {
    let mut all = vec!["--kv-replicas", "3"];
    all.extend_from_slice(args);
    ctl_at(&cluster.nodes[node].url(), NS, &all)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_keeps_running_when_a_nats_node_dies() {
    let mut cluster = NatsCluster::start(3);
    // The first process to open the namespace creates its buckets: here pluribusctl, with
    // 3 replicas (as deploy/README.md says to). A cluster that just started may still be
    // electing its JetStream leader: status is retried until it answers.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = ctl_on(&cluster, 2, &["status"]);
        if out.code == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the buckets were not created within 30 s: {}",
            out.stderr
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Each agent knows one node only; the cluster tells it about the others.
    let a1 = spawn_agent_at(&cluster.nodes[0].url(), NS, "a1", &["--kv-replicas", "3"]);
    let a2 = spawn_agent_at(&cluster.nodes[1].url(), NS, "a2", &["--kv-replicas", "3"]);
    let _logs = LogsOnPanic(vec![("a1", &a1), ("a2", &a2)]);
    let agents_up = |s: &serde_json::Value| {
        s["agents"]
            .as_array()
            .is_some_and(|a| a.iter().filter(|a| a["alive"] == true).count() == 2)
    };
    wait_for(
        &cluster,
        2,
        "2 live agents",
        Duration::from_secs(20),
        agents_up,
    )
    .await;

    // The buckets have 3 replicas.
    let client = async_nats::connect(cluster.nodes[2].url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let ns = pluribus_common::subjects::Namespace::new(NS).unwrap();
    for bucket in [ns.fleets_bucket(), ns.leases_bucket(), ns.agents_bucket()] {
        let mut stream = js.get_stream(format!("KV_{bucket}")).await.unwrap();
        let info = stream.info().await.unwrap();
        assert_eq!(info.config.num_replicas, 3, "{bucket}");
    }

    // Deploy through the third node; telemetry is read there too.
    let mut sub = client.subscribe("clu-tel.>").await.unwrap();
    ctl_on(
        &cluster,
        2,
        &[
            "deploy-fleet",
            "cf",
            "--count",
            "300",
            "--shard-size",
            "50",
            "--interval",
            "500ms",
            "--sink",
            "nats",
            "--subject",
            "clu-tel.{fleet}.{device_id}",
        ],
    )
    .ok();
    wait_sending(&mut sub, 300, "all devices", Duration::from_secs(20)).await;

    // The node a1 is connected to dies without a word; the fleet runs on.
    cluster.nodes[0].kill();
    let killed = std::time::Instant::now();
    let after = wait_sending(
        &mut sub,
        300,
        "every device after a NATS node died",
        Duration::from_secs(45),
    )
    .await;
    eprintln!(
        "all 300 devices sending {:?} after the node was killed",
        killed.elapsed()
    );
    assert!(after.repeats().is_empty(), "{:?}", after.repeats());
    let s = wait_for(
        &cluster,
        1,
        "status through a surviving node: 300 running on 2 agents",
        Duration::from_secs(30),
        |s| {
            let f = s["fleets"].as_array().and_then(|f| f.first());
            agents_up(s) && f.is_some_and(|f| f["running"] == 300)
        },
    )
    .await;
    let split: Vec<u64> = s["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["devices"].as_u64().unwrap())
        .collect();
    assert_eq!(split.iter().sum::<u64>(), 300, "{s}");
    let steady = wait_sending(&mut sub, 300, "a steady window", Duration::from_secs(10)).await;
    assert!(
        steady.repeats().is_empty(),
        "no device runs twice: {:?}",
        steady.repeats()
    );
    // An agent on a cluster with the default 3 s lease TTL says that an election can
    // outlast its fence.
    assert!(a1.stderr().contains("--lease-ttl 30s"), "{}", a1.stderr());
}

/// Polls `status --json` through node `node` until `check` holds.
async fn wait_for(
    cluster: &NatsCluster,
    node: usize,
    what: &str,
    timeout: Duration,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_status_at(&cluster.nodes[node].url(), NS, what, timeout, check).await
}

#[test]
fn a_cluster_without_a_leader_is_reported_as_such() {
    let mut cluster = NatsCluster::start(3);
    ctl_on(&cluster, 2, &["status"]).ok();
    cluster.nodes[0].kill();
    cluster.nodes[1].kill();
    let out = ctl_on(&cluster, 2, &["status"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("does not answer") || out.stderr.contains("electing a leader"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("not enabled"),
        "JetStream is on; it has no leader: {}",
        out.stderr
    );
}

/// `--nats-url` takes the cluster's nodes comma-separated, as NATS clients do: pluribusctl
/// and the agent connect through the list even when its first node is down.
#[tokio::test(flavor = "multi_thread")]
async fn a_comma_separated_nats_url_reaches_the_cluster_past_a_dead_node() {
    let mut cluster = NatsCluster::start(3);
    let urls = cluster.urls();
    assert_eq!(urls.matches(',').count(), 2, "{urls}");
    cluster.nodes[0].kill();
    let ctl = |args: &[&str]| {
        let mut all = vec!["--kv-replicas", "3"];
        all.extend_from_slice(args);
        ctl_at(&urls, NS, &all)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = ctl(&["status"]);
        assert!(
            !out.stderr.contains("invalid port"),
            "the list is parsed: {}",
            out.stderr
        );
        if out.code == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "status through {urls} within 30 s: {}",
            out.stderr
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let a1 = spawn_agent_at(&urls, NS, "a1", &["--kv-replicas", "3"]);
    let _logs = LogsOnPanic(vec![("a1", &a1)]);
    wait_status_at(&urls, NS, "the agent alive", Duration::from_secs(30), |s| {
        s["agents"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["alive"] == true))
    })
    .await;
    ctl(&["deploy-fleet", "mu", "--count", "5", "--interval", "500ms"]).ok();
    wait_status_at(
        &urls,
        NS,
        "5 running through the URL list",
        Duration::from_secs(30),
        |s| {
            s["fleets"]
                .as_array()
                .and_then(|f| f.first())
                .is_some_and(|f| f["running"] == 5)
        },
    )
    .await;
}
