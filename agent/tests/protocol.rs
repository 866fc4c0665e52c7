//! The agent against a real nats-server, driven through the protocol alone (no
//! pluribusctl): desired state written to KV and shard offers published, as any client
//! of the protocol would.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use pluribus_common::kv::Buckets;
use pluribus_common::messages::ShardOffer;
use pluribus_common::record::{FleetRecord, RecordKind};
use pluribus_common::spec::{FleetSpec, SinkSpec};
use pluribus_common::subjects::Namespace;
use pluribus_common::time::now_ms;
use pluribus_common::wire;
use pluribus_testkit::{wait_until, NatsServer, Proc};

fn agent(nats: &NatsServer, ns: &str, name: &str) -> Proc {
    agent_with(nats, ns, name, &[])
}

fn agent_with(nats: &NatsServer, ns: &str, name: &str, extra: &[&str]) -> Proc {
    pluribus_testkit::spawn_agent(nats, ns, name, extra)
}

/// Writes a counted fleet on the nats sink (subject `<ns>-tel.<fleet>.<device>`) and offers its shards.
async fn deploy(
    client: &async_nats::Client,
    buckets: &Buckets,
    ns: &Namespace,
    name: &str,
    count: u64,
    shard: u32,
    interval_ms: u64,
) -> FleetRecord {
    let mut spec = FleetSpec::counted(name, count);
    spec.shard_size = shard;
    spec.device.interval = Duration::from_millis(interval_ms);
    spec.sink = SinkSpec::nats(Some(&format!("{}-tel.{{fleet}}.{{device_id}}", ns.name())));
    let record = FleetRecord::new(RecordKind::Fleet, spec, now_ms(), Duration::from_secs(1));
    buckets
        .fleets
        .create(name, wire::encode(&record))
        .await
        .expect("create");
    for shard in 0..record.shard_count() {
        client
            .publish(ns.work(), wire::encode(&ShardOffer::new(name, shard)))
            .await
            .expect("offer");
    }
    record
}

/// Per device: the seqs received in a window.
async fn collect(sub: &mut async_nats::Subscriber, window: Duration) -> HashMap<String, Vec<u64>> {
    let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, sub.next()).await {
        let v: serde_json::Value = serde_json::from_slice(&msg.payload).expect("json");
        let id = v["device_id"].as_str().expect("id").to_string();
        seen.entry(id)
            .or_default()
            .push(v["seq"].as_u64().expect("seq"));
    }
    seen
}

/// Devices whose seqs in `seen` are not strictly increasing (a device running twice
/// repeats its seqs).
fn duplicated(seen: &HashMap<String, Vec<u64>>) -> Vec<String> {
    seen.iter()
        .filter(|(_, s)| s.windows(2).any(|w| w[1] <= w[0]))
        .map(|(k, _)| k.clone())
        .collect()
}

async fn wait_all_sending(
    sub: &mut async_nats::Subscriber,
    count: usize,
    what: &str,
    timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let seen = collect(sub, Duration::from_secs(2)).await;
        if seen.len() == count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: only {} of {count} devices sending",
            seen.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_claim_offered_shards_and_send_gapless_telemetry() {
    let nats = NatsServer::start();
    let ns = Namespace::new("proto").expect("ns");
    let _a1 = agent(&nats, "proto", "a1");
    let _a2 = agent(&nats, "proto", "a2");
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client.clone());
    let buckets = Buckets::open(&js, &ns, 1).await.expect("buckets");
    let mut sub = client.subscribe("proto-tel.>").await.expect("sub");

    let mut spec = FleetSpec::counted("f1", 200);
    spec.shard_size = 50;
    spec.device.interval = Duration::from_millis(200);
    spec.sink = SinkSpec::nats(Some("proto-tel.{fleet}.{device_id}"));
    let record = FleetRecord::new(RecordKind::Fleet, spec, now_ms(), Duration::from_secs(1));
    buckets
        .fleets
        .create("f1", wire::encode(&record))
        .await
        .expect("create");
    wait_until("two live agents", Duration::from_secs(15), || {
        let b = buckets.clone();
        async move {
            match b.agents.keys().await {
                Ok(k) => k.count().await >= 2,
                Err(_) => false,
            }
        }
    })
    .await;
    for shard in 0..record.shard_count() {
        client
            .publish(ns.work(), wire::encode(&ShardOffer::new("f1", shard)))
            .await
            .expect("offer");
    }

    let mut last: HashMap<String, u64> = HashMap::new();
    let mut gaps = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while last.len() < 200 || last.values().any(|&s| s < 5) {
        let msg = tokio::time::timeout_at(deadline, sub.next())
            .await
            .expect("telemetry in time")
            .expect("msg");
        let v: serde_json::Value = serde_json::from_slice(&msg.payload).expect("json");
        let id = v["device_id"].as_str().expect("id").to_string();
        let seq = v["seq"].as_u64().expect("seq");
        if let Some(prev) = last.insert(id, seq) {
            if seq != prev + 1 {
                gaps += 1;
            }
        }
    }
    assert_eq!(gaps, 0, "every device's seq goes up by one");
    let mut holders: HashMap<String, u64> = HashMap::new();
    let mut keys = buckets.leases.keys().await.expect("keys");
    while let Some(Ok(k)) = keys.next().await {
        // The agents' liveness entries share the bucket.
        if pluribus_common::subjects::parse_lease_key(&k).is_none() {
            continue;
        }
        let v = buckets.leases.get(&k).await.expect("get").expect("val");
        let l: pluribus_common::messages::LeaseRecord = wire::decode(&v).expect("lease");
        *holders.entry(l.agent_name).or_default() += l.devices;
    }
    assert_eq!(holders.values().sum::<u64>(), 200, "{holders:?}");
    assert_eq!(holders.len(), 2, "both agents hold work: {holders:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn devices_run_again_after_nats_restarts_short_and_long() {
    let mut nats = NatsServer::start();
    let ns = Namespace::new("restart").expect("ns");
    let ttl = ["--lease-ttl", "5s"];
    let a1 = agent_with(&nats, "restart", "a1", &ttl);
    let a2 = agent_with(&nats, "restart", "a2", &ttl);
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client.clone());
    let buckets = Buckets::open(&js, &ns, 1).await.expect("buckets");
    let mut sub = client.subscribe("restart-tel.>").await.expect("sub");
    tokio::time::sleep(Duration::from_secs(1)).await;
    deploy(&client, &buckets, &ns, "r1", 100, 25, 500).await;
    wait_all_sending(&mut sub, 100, "before restarts", Duration::from_secs(20)).await;

    // Shorter than the fence (3.75 s): nothing needs to move.
    nats.restart();
    wait_all_sending(
        &mut sub,
        100,
        "after a short outage",
        Duration::from_secs(30),
    )
    .await;

    // Longer than the lease TTL: agents fence, leases expire, the work is claimed again.
    nats.stop();
    tokio::time::sleep(Duration::from_secs(8)).await;
    nats.start_again();
    wait_all_sending(
        &mut sub,
        100,
        "after a long outage",
        Duration::from_secs(45),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = collect(&mut sub, Duration::from_secs(4)).await;
    assert_eq!(seen.len(), 100);
    assert!(
        duplicated(&seen).is_empty(),
        "devices running twice: {:?}",
        duplicated(&seen)
    );
    let logs = a1.stderr() + &a2.stderr();
    assert!(
        logs.contains("fenced"),
        "the long outage made the agents fence themselves:\n{logs}"
    );
}

/// A watch of the fleets bucket that breaks (here its consumer is deleted under it; on a
/// cluster, a node dies) starts again from a fresh snapshot: an agent that started on an
/// empty bucket must not read the new snapshot as "no fleets" and stop what it runs (CI saw
/// this on a 3-node cluster: the library's `status()` answers the stream's state from when
/// the bucket was opened).
#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_watch_that_breaks_keeps_the_fleets_it_saw() {
    let nats = NatsServer::start();
    let ns = Namespace::new("rewatch").expect("ns");
    let a1 = agent(&nats, "rewatch", "a1");
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client.clone());
    let buckets = Buckets::open(&js, &ns, 1).await.expect("buckets");
    let mut sub = client.subscribe("rewatch-tel.>").await.expect("sub");
    wait_until("the agent started", Duration::from_secs(20), || async {
        a1.stderr().contains("agent started")
    })
    .await;
    deploy(&client, &buckets, &ns, "w1", 20, 10, 500).await;
    wait_all_sending(
        &mut sub,
        20,
        "before the watch broke",
        Duration::from_secs(20),
    )
    .await;

    let stream = js
        .get_stream(format!("KV_{}", ns.fleets_bucket()))
        .await
        .expect("stream");
    let names: Vec<String> = stream
        .consumer_names()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|n| n.expect("consumer name"))
        .collect();
    assert!(!names.is_empty(), "the agent watches the fleets bucket");
    for name in names {
        stream
            .delete_consumer(&name)
            .await
            .expect("delete consumer");
    }
    wait_until(
        "the fleet watch restarted",
        Duration::from_secs(60),
        || async {
            a1.stderr()
                .contains("KV watch broke; restarting bucket=fleets")
        },
    )
    .await;
    // The new snapshot is in within a few seconds of the restart.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let seen = collect(&mut sub, Duration::from_secs(3)).await;
    let log = a1.stderr();
    assert!(!log.contains("fleet deleted"), "{log}");
    assert_eq!(seen.len(), 20, "every device still sends:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_messages_are_answered_and_never_crash_an_agent() {
    let nats = NatsServer::start();
    let ns = Namespace::new("bad").expect("ns");
    let mut a1 = agent(&nats, "bad", "a1");
    let client = async_nats::connect(nats.url()).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Garbage offers and an offer for a fleet that does not exist.
    client
        .publish(ns.work(), "not json".into())
        .await
        .expect("pub");
    client
        .publish(ns.work(), r#"{"v":9,"fleet":"x","shard":0}"#.into())
        .await
        .expect("pub");
    client
        .publish(ns.work(), wire::encode(&ShardOffer::new("nope", 3)))
        .await
        .expect("pub");
    // A command that is not JSON, and one from a future version: both answered with an error.
    let r = client
        .request(ns.agents_cmd(), "garbage".into())
        .await
        .expect("answered");
    let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("json reply");
    assert_eq!(v["error"]["code"], "bad_request", "{v}");
    let r = client
        .request(ns.agents_cmd(), r#"{"v":2,"op":{"type":"ping"}}"#.into())
        .await
        .expect("answered");
    let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("json reply");
    assert_eq!(v["error"]["code"], "unsupported_version", "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .expect("msg")
        .contains("version"));
    // Still alive and answering.
    let r = client
        .request(ns.agents_cmd(), r#"{"v":1,"op":{"type":"ping"}}"#.into())
        .await
        .expect("answered");
    let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("json reply");
    assert_eq!(v["ok"]["heartbeat"]["name"], "a1", "{v}");
    // A kill sent to every agent at once is refused (it must name one agent).
    let r = client
        .request(ns.agents_cmd(), r#"{"v":1,"op":{"type":"kill"}}"#.into())
        .await
        .expect("answered");
    let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("json reply");
    assert_eq!(v["error"]["code"], "bad_request", "{v}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(a1.is_running());
    assert!(a1.stderr().contains("bad shard offer"), "{}", a1.stderr());
    // Sent to this agent, it is answered and then the process ends as a crash would.
    let id = agent_id(&client, &ns).await;
    let r = client
        .request(ns.agent_cmd(&id), r#"{"v":1,"op":{"type":"kill"}}"#.into())
        .await
        .expect("answered");
    let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("json reply");
    assert_eq!(v["ok"]["heartbeat"]["id"], id.as_str(), "{v}");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while a1.is_running() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!a1.is_running(), "the agent should have ended after kill");
}

/// The id of the one agent answering a ping.
async fn agent_id(client: &async_nats::Client, ns: &Namespace) -> String {
    let r = client
        .request(ns.agents_cmd(), r#"{"v":1,"op":{"type":"ping"}}"#.into())
        .await
        .expect("answered");
    let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("json reply");
    v["ok"]["heartbeat"]["id"].as_str().expect("id").to_string()
}
