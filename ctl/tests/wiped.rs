//! NATS that lost its state: the server comes back on a wiped JetStream store. Agents
//! stop the devices of fleets that no longer exist, recreate their buckets and work
//! again, without a restart of any process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::{collect, wait_sending, wait_status, Cluster};

#[tokio::test(flavor = "multi_thread")]
async fn agents_carry_on_after_jetstream_comes_back_empty() {
    let mut c = Cluster::new("wiped");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let client = c.client().await;
    let mut sub = client.subscribe("wiped.t.>").await.expect("subscribe");
    c.ctl(&[
        "deploy-fleet",
        "before",
        "--count",
        "3",
        "--sink",
        "nats",
        "--subject",
        "wiped.t.{device_id}",
    ])
    .ok();
    wait_sending(&mut sub, 3, "the first fleet", Duration::from_secs(20)).await;

    // The server restarts on an empty store.
    c.nats.stop();
    std::fs::remove_dir_all(c.nats.dir().join("js")).expect("wipe the store");
    c.nats.start_again();

    // The agent recreates its buckets by itself (no pluribusctl has run yet)...
    let ns = c.namespace();
    let js = async_nats::jetstream::new(c.client().await);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for bucket in [ns.fleets_bucket(), ns.leases_bucket(), ns.agents_bucket()] {
        while js.get_key_value(bucket.clone()).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the agent did not recreate {bucket}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // ... and stops the devices of the fleet that is gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let seen = collect(&mut sub, Duration::from_secs(2)).await;
        if seen.seqs.keys().all(|d| !d.starts_with("before")) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "devices of the deleted fleet still send: {:?}",
            seen.seqs.keys()
        );
    }
    wait_status(
        &c,
        "the agent alive, no fleets",
        Duration::from_secs(30),
        |s| {
            s["fleets"].as_array().is_none_or(|f| f.is_empty())
                && s["agents"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|a| a["alive"] == true))
        },
    )
    .await;

    // Deploying works at once.
    c.ctl(&[
        "deploy-fleet",
        "after",
        "--count",
        "2",
        "--sink",
        "nats",
        "--subject",
        "wiped.t.{device_id}",
    ])
    .ok();
    wait_sending(&mut sub, 2, "the new fleet", Duration::from_secs(20)).await;
}
