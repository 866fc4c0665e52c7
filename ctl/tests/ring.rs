//! Liveness followed by a few agents, not all (issue 9, section 8): each agent watches its
//! own liveness key and those of the two agents before it in the ring ordered by id, and
//! everybody follows only the epoch records. Checked against a real nats-server: no watch
//! of the live bucket covers more than three keys, every key is watched by its agent and
//! two others, and devices still come back after a kill -9, and after three agents next
//! to each other in the ring die at once (two of them had no live watcher left).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::TryStreamExt;
use support::*;

fn active(status: &serde_json::Value, name: &str) -> u64 {
    fleet(status, name)["active"].as_u64().unwrap_or(0)
}

/// Ids of the live agents in status, sorted (the ring's order), with their names.
fn ring(status: &serde_json::Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = status["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .filter(|a| a["alive"] == true)
        .map(|a| {
            (
                a["id"].as_str().expect("id").to_string(),
                a["name"].as_str().expect("name").to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

/// The agents' reply inboxes: their watches deliver there (pluribusctl's `status`, which
/// reads every liveness key, delivers to `_INBOX.`).
const AGENT_INBOX: &str = "_INBOX_ringagents";

/// The keys each agent's consumer of the live bucket's stream filters on.
async fn watches(js: &async_nats::jetstream::Context, bucket: &str) -> Vec<Vec<String>> {
    let stream = js
        .get_stream(format!("KV_{bucket}"))
        .await
        .expect("live bucket stream");
    let infos: Vec<_> = stream
        .consumers()
        .try_collect()
        .await
        .expect("consumer infos");
    let prefix = format!("$KV.{bucket}.");
    infos
        .into_iter()
        .filter(|i| {
            i.config
                .deliver_subject
                .as_deref()
                .is_some_and(|d| d.starts_with(AGENT_INBOX))
        })
        .map(|i| {
            let mut subjects = i.config.filter_subjects.clone();
            if !i.config.filter_subject.is_empty() {
                subjects.push(i.config.filter_subject.clone());
            }
            subjects
                .iter()
                .map(|s| s.strip_prefix(&prefix).unwrap_or(s).to_string())
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_liveness_key_has_three_watchers_and_devices_survive_a_dead_ring_segment() {
    let mut c = Cluster::new("rng");
    let ns = c.namespace();
    for i in 1..=6 {
        c.agent(&format!("r{i}"), &["--nats-inbox-prefix", AGENT_INBOX]);
    }
    c.wait_agents(6).await;
    c.ctl(&[
        "deploy-fleet",
        "rf",
        "--count",
        "60",
        "--shard-size",
        "5",
        "--sink",
        "nats",
        "--subject",
        "rng-tel.{fleet}.{device_id}",
        "--interval",
        "1s",
    ])
    .ok();
    let s = wait_status(&c, "60 devices active", Duration::from_secs(45), |s| {
        active(s, "rf") == 60
    })
    .await;
    let ids = ring(&s);
    assert_eq!(ids.len(), 6, "{s}");

    // Every agent's watch of each live bucket names keys, never the whole bucket, at most
    // three of them; and every key is followed by its agent and two others.
    let js = async_nats::jetstream::new(c.client().await);
    for bucket in ns.live_buckets() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let w = watches(&js, &bucket).await;
            let mut watchers: BTreeMap<&str, usize> = BTreeMap::new();
            for keys in &w {
                assert!(
                    keys.len() <= 3 && keys.iter().all(|k| !k.contains('>') && !k.contains('*')),
                    "a watch of {bucket} follows more than three agents: {keys:?}"
                );
                for k in keys {
                    *watchers.entry(k.as_str()).or_default() += 1;
                }
            }
            if w.len() == 6
                && ids
                    .iter()
                    .all(|(id, _)| watchers.get(id.as_str()) == Some(&3))
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "each of the 6 liveness keys in {bucket} should have 3 watchers: {w:?}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    // kill -9 one agent: its devices come back on the others.
    let index = |name: &str| {
        name.trim_start_matches('r')
            .parse::<usize>()
            .expect("agent index")
            - 1
    };
    let (_, first) = &ids[0];
    c.agents[index(first)].kill();
    wait_status(&c, "60 devices on 5 agents", Duration::from_secs(30), |s| {
        active(s, "rf") == 60 && ring(s).len() == 5
    })
    .await;

    // Three agents next to each other in the ring at once: the first two had no watcher
    // left alive (each is watched by the next two); the ring closes over them and the
    // devices come back on the two left.
    let s = c.status();
    let ids = ring(&s);
    for (_, name) in &ids[1..4] {
        c.agents[index(name)].kill();
    }
    wait_status(&c, "60 devices on 2 agents", Duration::from_secs(60), |s| {
        active(s, "rf") == 60 && ring(s).len() == 2
    })
    .await;
}

/// An agent keeps its liveness key in two buckets and counts as gone only when both are:
/// one key deleted from outside (as when a stream's new leader expires keys that could
/// not be renewed during its election) is made again, and nothing stops: no fence, no
/// epoch record removed, no device handed over.
#[tokio::test(flavor = "multi_thread")]
async fn a_liveness_key_deleted_in_one_bucket_is_made_again_and_stops_nothing() {
    let mut c = Cluster::new("rkd");
    let ns = c.namespace();
    c.agent("k1", &[]);
    c.agent("k2", &[]);
    c.wait_agents(2).await;
    let client = c.client().await;
    let mut sub = client.subscribe("rkd-tel.>").await.expect("subscribe");
    c.ctl(&[
        "deploy-fleet",
        "kf",
        "--count",
        "40",
        "--shard-size",
        "10",
        "--sink",
        "nats",
        "--subject",
        "rkd-tel.{fleet}.{device_id}",
        "--interval",
        "250ms",
    ])
    .ok();
    wait_sending(&mut sub, 40, "all devices", Duration::from_secs(30)).await;
    let s = c.status();
    let k1 = ring(&s)
        .into_iter()
        .find(|(_, name)| name == "k1")
        .map(|(id, _)| id)
        .expect("k1 alive");
    let js = async_nats::jetstream::new(client.clone());
    let leases = js.get_key_value(ns.leases_bucket()).await.expect("leases");
    let record = format!("_live.{k1}");
    let before = leases
        .entry(&record)
        .await
        .expect("read")
        .expect("k1's epoch record");

    for bucket in ns.live_buckets() {
        let store = js.get_key_value(&bucket).await.expect("live bucket");
        store.delete(&k1).await.expect("delete k1's key");
        // Made again, under the same epoch (same value), within a few renewals.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let e = store.entry(&k1).await.expect("read");
            if let Some(e) = e.filter(|e| e.operation == async_nats::jetstream::kv::Operation::Put)
            {
                assert_eq!(e.value, before.value, "the same epoch's key in {bucket}");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "k1's key in {bucket} was not made again within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Long enough for a fence (75% of the 3 s TTL) and a watcher's verdict.
        let seen = collect(&mut sub, Duration::from_secs(4)).await;
        assert_eq!(seen.seqs.len(), 40, "every device sends on ({bucket})");
        assert!(
            seen.gaps().is_empty(),
            "no device skipped a message after k1's key in {bucket} was deleted: {:?}",
            seen.gaps().iter().take(3).collect::<Vec<_>>()
        );
    }
    let after = leases
        .entry(&record)
        .await
        .expect("read")
        .expect("k1's epoch record stands");
    assert_eq!(
        after.revision, before.revision,
        "k1's epoch record was never rewritten"
    );
    for (i, name) in ["k1", "k2"].iter().enumerate() {
        let log = c.agents[i].stderr();
        assert!(
            !log.contains("(fenced)") && !log.contains("every shard stops here"),
            "{name} stopped its devices:\n{log}"
        );
    }
}
