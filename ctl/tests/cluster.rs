//! Growing past one machine is NATS clustering: agents and pluribusctl on different nodes of
//! a 3-node cluster, buckets with 3 replicas, and a node killed under a running fleet.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use pluribus_testkit::{spawn_agent_at, NatsCluster, Proc};
use support::*;

const NS: &str = "clu";

fn ctl_on(cluster: &NatsCluster, node: usize, args: &[&str]) -> pluribus_testkit::Output {
    let mut all = vec!["--kv-replicas", "3"];
    all.extend_from_slice(args);
    ctl_at(&cluster.nodes[node].url(), NS, &all)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_keeps_running_when_a_nats_node_dies() {
    let (mut cluster, a1, a2) = cluster_with_two_agents().await;
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
}

/// A 3-node cluster with the namespace's buckets made (through node 3) and agents a1 and
/// a2 on nodes 1 and 2. Each agent knows one node only; the cluster tells it about the
/// others.
async fn cluster_with_two_agents() -> (NatsCluster, Proc, Proc) {
    let cluster = NatsCluster::start(3);
    buckets_made(&cluster, 2).await;
    let a1 = spawn_agent_at(&cluster.nodes[0].url(), NS, "a1", &["--kv-replicas", "3"]);
    let a2 = spawn_agent_at(&cluster.nodes[1].url(), NS, "a2", &["--kv-replicas", "3"]);
    (cluster, a1, a2)
}

/// The first process to open the namespace creates its buckets: here pluribusctl through
/// node `node`, with 3 replicas (as deploy/README.md says to). A cluster that just started
/// may still be electing its JetStream leader: status is retried until it answers.
async fn buckets_made(cluster: &NatsCluster, node: usize) {
    status_answers(&format!("status through node {}", node + 1), || {
        ctl_on(cluster, node, &["status"])
    })
    .await;
}

/// Runs `status` (through `ctl`) until it exits 0; panics naming `what` after 90 s. A
/// cluster that just lost a node answers "JetStream temporarily unavailable" until the
/// others elect a meta leader: 5-26 s in runs of `a_comma_separated_...` on a quiet
/// machine, and more than 30 s once in CI.
async fn status_answers(what: &str, status: impl Fn() -> pluribus_testkit::Output) {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let out = status();
        if out.code == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: no answer within 90 s: {}",
            out.stderr
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The node (`n1`, `n2`, ...) leading a stream, as the server says now.
async fn leader(js: &async_nats::jetstream::Context, stream: &str) -> Option<String> {
    let mut s = js.get_stream(stream).await.ok()?;
    s.info().await.ok()?.cluster.as_ref()?.leader.clone()
}

/// Each agent keeps its liveness key in two buckets whose streams the agents keep led by
/// different nodes. Killing the node that leads the first one stops its renewals for the
/// length of an election (longer than the fence, 75% of the 3 s TTL); those of the second
/// go on, so no agent fences and no device stops (before the second bucket, every device
/// paused for 7-11 s: BENCHMARKS.md, "On a NATS cluster").
#[tokio::test(flavor = "multi_thread")]
async fn no_device_stops_when_the_node_leading_the_liveness_stream_dies() {
    let (mut cluster, a1, a2) = cluster_with_two_agents().await;
    let _logs = LogsOnPanic(vec![("a1", &a1), ("a2", &a2)]);
    let urls: Vec<async_nats::ServerAddr> = cluster
        .nodes
        .iter()
        .map(|n| n.url().parse().unwrap())
        .collect();
    let client = async_nats::connect(urls).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let ns = pluribus_common::subjects::Namespace::new(NS).unwrap();
    let [live, live2] = ns.live_buckets().map(|b| format!("KV_{b}"));

    // The agents' reconcile leader moves the second stream's leader off the first one's
    // node (it checks every 10 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    let node = loop {
        let (a, b) = (leader(&js, &live).await, leader(&js, &live2).await);
        match (a, b) {
            (Some(a), Some(b)) if a != b => break a,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "the two liveness streams are still led by one node after 45 s: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let killed: usize = node.trim_start_matches('n').parse::<usize>().unwrap() - 1;
    let other = (killed + 1) % 3;

    // Telemetry is read through a node that stays up.
    let reader = async_nats::connect(cluster.nodes[other].url())
        .await
        .unwrap();
    let mut sub = reader.subscribe("clu-live.>").await.unwrap();
    ctl_on(
        &cluster,
        other,
        &[
            "deploy-fleet",
            "lf",
            "--count",
            "200",
            "--shard-size",
            "50",
            "--interval",
            "500ms",
            "--sink",
            "nats",
            "--subject",
            "clu-live.{fleet}.{device_id}",
        ],
    )
    .ok();
    wait_sending(&mut sub, 200, "all devices", Duration::from_secs(20)).await;

    cluster.nodes[killed].kill();
    // Telemetry from the kill until the first stream has a new leader (the election is
    // over: the agents' renewals of the first key failed all along) and 4 s more, past
    // where a fence would have come and gone.
    let elected = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
        loop {
            match leader(&js, &live).await {
                Some(n) if n != node => break,
                _ => assert!(
                    tokio::time::Instant::now() < deadline,
                    "no new leader for {live} within 45 s"
                ),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tokio::time::sleep(Duration::from_secs(4)).await;
    };
    let seen = collect_until_done(&mut sub, elected).await;
    assert!(seen.repeats().is_empty(), "{:?}", seen.repeats());
    // A fence stops every device of its agent for seconds (its slots pass unsent: a jump
    // in seq). Two slots (1 s) may be lost in flight on a connection to the dead node.
    let jumps: Vec<(String, u64)> = seen
        .seqs
        .iter()
        .filter_map(|(id, s)| {
            let jump = s.windows(2).map(|w| w[1].saturating_sub(w[0])).max()?;
            (jump > 3).then(|| (id.clone(), jump))
        })
        .collect();
    assert_eq!(seen.seqs.len(), 200, "every device sent after {node} died");
    for (name, agent) in [("a1", &a1), ("a2", &a2)] {
        let log = agent.stderr();
        assert!(
            jumps.is_empty() && !log.contains("(fenced)") && !log.contains("every shard stops here"),
            "devices stopped when {node} died ({} with a gap in seq, e.g. {:?}); {name}'s log:\n{log}",
            jumps.len(),
            jumps.first()
        );
    }
    // Nor did an agent on a cluster hear that it needs a longer TTL.
    assert!(!a1.stderr().contains("--lease-ttl 30s"), "{}", a1.stderr());
}

/// Collects telemetry until `done` finishes.
async fn collect_until_done(
    sub: &mut async_nats::Subscriber,
    done: impl std::future::Future<Output = ()>,
) -> Seen {
    use futures::StreamExt;
    let mut seen = Seen::default();
    tokio::pin!(done);
    loop {
        tokio::select! {
            _ = &mut done => return seen,
            Some(msg) = sub.next() => seen.add(&msg),
        }
    }
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
    status_answers(&format!("status through {urls}"), || {
        let out = ctl(&["status"]);
        assert!(
            !out.stderr.contains("invalid port"),
            "the list is parsed: {}",
            out.stderr
        );
        out
    })
    .await;
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
