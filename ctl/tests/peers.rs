//! What agents follow of each other (issue 9, section 8): a peer record per agent in the
//! peers bucket, written only when it changes, instead of every heartbeat. At rest the
//! agents keep heartbeating (for pluribusctl) and write no peer record at all; a killed
//! agent's devices come back on the others and its record is removed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::*;

/// The last sequence of a bucket's stream (how many writes it has had).
async fn writes(js: &async_nats::jetstream::Context, bucket: &str) -> u64 {
    let mut s = js
        .get_stream(format!("KV_{bucket}"))
        .await
        .expect("the bucket's stream");
    s.info().await.expect("stream info").state.last_sequence
}

/// The keys of the peers bucket that hold a record.
async fn peer_keys(js: &async_nats::jetstream::Context, bucket: &str) -> Vec<String> {
    use futures::TryStreamExt;
    let kv = js.get_key_value(bucket).await.expect("peers bucket");
    let mut keys: Vec<String> = kv
        .keys()
        .await
        .expect("keys")
        .try_collect()
        .await
        .expect("keys");
    keys.sort();
    keys
}

fn active(status: &serde_json::Value, name: &str) -> u64 {
    fleet(status, name)["active"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_at_rest_write_no_peer_records_and_a_killed_agents_record_goes() {
    let mut c = Cluster::new("prs");
    let ns = c.namespace();
    for name in ["p1", "p2", "p3"] {
        c.agent(name, &[]);
    }
    c.wait_agents(3).await;
    let js = async_nats::jetstream::new(c.client().await);
    let (peers, agents) = (ns.peers_bucket(), ns.agents_bucket());
    // Every agent wrote its record once it could take work.
    wait_until_keys(&js, &peers, 3, Duration::from_secs(30)).await;
    c.ctl(&[
        "deploy-fleet",
        "pf",
        "--count",
        "30",
        "--shard-size",
        "5",
        "--sink",
        "nats",
        "--subject",
        "prs-tel.{fleet}.{device_id}",
        "--interval",
        "1s",
    ])
    .ok();
    wait_status(&c, "30 devices active", Duration::from_secs(45), |s| {
        active(s, "pf") == 30
    })
    .await;

    // At rest: heartbeats go on (every 500 ms per agent, into the agents bucket), and a
    // window of 3 s passes without a single peer record written. An agent that wrote its
    // record with every heartbeat would never give one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (p0, a0) = (writes(&js, &peers).await, writes(&js, &agents).await);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (p1, a1) = (writes(&js, &peers).await, writes(&js, &agents).await);
        assert!(
            a1 >= a0 + 9,
            "the agents heartbeat into {agents}: {a0} -> {a1} writes in 3 s"
        );
        if p1 == p0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "peer records are still written at rest after a minute ({p0} -> {p1} in 3 s)"
        );
    }

    // A killed agent: its devices come back on the other two within a few seconds of its
    // liveness entry expiring, and the leader removes its record.
    let victim = c.agents.len() - 1;
    c.agents[victim].kill();
    wait_status(
        &c,
        "30 devices on the 2 others",
        Duration::from_secs(30),
        |s| {
            active(s, "pf") == 30
                && s["agents"].as_array().is_some_and(|a| {
                    a.iter()
                        .filter(|a| a["alive"] == true && a["devices"].as_u64().unwrap_or(0) > 0)
                        .count()
                        == 2
                })
        },
    )
    .await;
    wait_until_keys(&js, &peers, 2, Duration::from_secs(30)).await;
}

async fn wait_until_keys(
    js: &async_nats::jetstream::Context,
    bucket: &str,
    n: usize,
    timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let keys = peer_keys(js, bucket).await;
        if keys.len() == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{bucket} holds {} records, not {n}, after {timeout:?}: {keys:?}",
            keys.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
