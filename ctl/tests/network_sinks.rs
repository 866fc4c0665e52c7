//! Partitions on sinks other than MQTT, end to end: on `http` the partitioned devices'
//! connections close (the test server sees them go) and come back; on `fix` their sessions
//! drop without Logout (the QuickFIX acceptor logs them out) and log on again. In both,
//! what the devices buffered meanwhile arrives after, with its original `seq`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/http_server.rs"]
mod http_server;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use http_server::HttpServer;
use pluribus_testkit::{wait_until, FixAcceptor};
use serde_json::Value;
use support::*;

/// Polls `report FLEET --json` until the fleet's network figures satisfy `ok`.
async fn wait_network(c: &Cluster, fleet: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = c.ctl(&["report", fleet, "--json"]).ok().json();
        let net = r["fleets"][0]["network"].clone();
        if ok(&net) {
            return net;
        }
        assert!(tokio::time::Instant::now() < deadline, "report: {r}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// No seq missing between the first and a few below the last (the newest may still be
/// on their way).
fn gapless(seqs: &BTreeSet<u64>) -> bool {
    let (Some(a), Some(b)) = (seqs.first(), seqs.last()) else {
        return false;
    };
    let top = b.saturating_sub(3);
    (*a..=top).all(|s| seqs.contains(&s))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_partition_closes_the_cohorts_connections_and_they_come_back() {
    let server = HttpServer::start().await;
    let mut c = Cluster::new("net-http");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // 6 devices every 200 ms; 0..3 partitioned from 3 s to 6 s after the start.
    let file = write_file(
        &dir,
        "hp.yaml",
        &format!(
            "name: hp\ncount: 6\ndevice:\n  interval: 200ms\nsink:\n  type: http\n  url: '{}'\nnetwork:\n  timeline:\n    - {{at: 3s, for: 3s, cohort: 0..3, partition: {{}}}}\n",
            server.url("/ingest/{device_id}")
        ),
    );
    c.ctl(&["deploy-fleet", "--file", &file]).ok();
    let dev = |i: u64| format!("/ingest/hp-{i:05}");
    // Every partitioned device sends again on a connection of its own that is not its
    // first one.
    server
        .wait_for(
            "the cohort back on new connections",
            Duration::from_secs(60),
            |r| {
                (0..3).all(|i| {
                    let conns: BTreeSet<u64> = r
                        .iter()
                        .filter(|x| x.path == dev(i))
                        .map(|x| x.conn)
                        .collect();
                    conns.len() >= 2
                })
            },
        )
        .await;
    // A second more, so the flushed messages are in.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reqs = server.requests();
    let closed: BTreeSet<u64> = server.closed().into_iter().collect();
    let mut conns_of: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut seqs: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for r in &reqs {
        let i: u64 = r.path.rsplit('-').next().unwrap().parse().unwrap();
        let conns = conns_of.entry(i).or_default();
        if conns.last() != Some(&r.conn) {
            conns.push(r.conn);
        }
        seqs.entry(i)
            .or_default()
            .insert(r.body["seq"].as_u64().unwrap());
    }
    // Each device had a connection of its own.
    let firsts: BTreeSet<u64> = conns_of.values().map(|c| c[0]).collect();
    assert_eq!(firsts.len(), 6, "{conns_of:?}");
    for (i, conns) in &conns_of {
        if *i < 3 {
            // Its connection closed by the device (the partition), then a new one.
            assert!(
                closed.contains(&conns[0]),
                "device {i}: {conns:?}, closed {closed:?}"
            );
            // (A flush at once sends its requests side by side: over several connections.)
            assert!(
                conns.len() >= 2 && !conns[1..].contains(&conns[0]),
                "device {i}: {conns:?}"
            );
        } else {
            assert_eq!(conns.len(), 1, "device {i} kept its connection: {conns:?}");
            assert!(!closed.contains(&conns[0]), "device {i}: {closed:?}");
        }
        // Nothing lost: what was buffered came after, with its original seq.
        assert!(gapless(&seqs[i]), "device {i}: {:?}", seqs[i]);
    }
    let net = wait_network(&c, "hp", |n| n["cohorts"]["0..3"]["partitions_ended"] == 3).await;
    let co = &net["cohorts"]["0..3"];
    assert_eq!(co["disconnects"], 3, "{net}");
    assert!(co["flushed"].as_u64() > Some(0), "{net}");
    assert_eq!(co["buffer_dropped"], 0, "{net}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fix_partition_drops_the_cohorts_sessions_and_they_log_on_again() {
    let clients: Vec<String> = (0..4).map(|i| format!("fp-{i:05}")).collect();
    let acceptor = FixAcceptor::start(&clients);
    let mut c = Cluster::new("net-fix");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let host = acceptor.host();
    c.ctl(&[
        "deploy-fleet",
        "fp",
        "--count",
        "4",
        "--sink",
        "fix",
        "--fix-host",
        &host,
        "--target-comp-id",
        FixAcceptor::COMP_ID,
        "--heartbeat",
        "5s",
        "--interval",
        "200ms",
    ])
    .ok();
    wait_status(&c, "4 sessions", Duration::from_secs(30), |s| {
        s["connections"]["fp"]["connected"] == 4
    })
    .await;
    c.ctl(&[
        "network",
        "set",
        "fp",
        "--cohort",
        "0..2",
        "--offline",
        "--for",
        "3s",
    ])
    .ok();
    let by = |ev: &str| {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for e in acceptor.events().into_iter().filter(|e| e["ev"] == ev) {
            *m.entry(e["client"].as_str().unwrap_or_default().to_string())
                .or_default() += 1;
        }
        m
    };
    wait_until(
        "the cohort logged on again",
        Duration::from_secs(60),
        || {
            let l = by("logon");
            std::future::ready(clients[..2].iter().all(|k| l.get(k) == Some(&2)))
        },
    )
    .await;
    // Cut without a Logout of theirs: the acceptor saw the sessions go.
    let logouts = by("logout");
    assert!(
        clients[..2].iter().all(|k| logouts.get(k) == Some(&1)),
        "{logouts:?}"
    );
    let events = acceptor.events();
    assert!(
        !events.iter().any(|e| e["ev"] == "in" && e["type"] == "5"),
        "a device logged out itself"
    );
    // The others kept their sessions.
    let logons = by("logon");
    assert!(
        clients[2..].iter().all(|k| logons.get(k) == Some(&1)),
        "{logons:?}"
    );
    // What the cohort buffered came after, with its original seq (ClOrdID <id>-<seq>).
    wait_until("the buffer flushed", Duration::from_secs(30), || {
        let events = acceptor.events();
        std::future::ready(clients[..2].iter().all(|k| {
            let seqs: BTreeSet<u64> = events
                .iter()
                .filter(|e| e["ev"] == "in" && e["client"] == k.as_str())
                .filter_map(|e| e["clordid"].as_str()?.rsplit('-').next()?.parse().ok())
                .collect();
            gapless(&seqs) && seqs.len() > 25
        }))
    })
    .await;
    let net = wait_network(&c, "fp", |n| n["cohorts"]["0..2"]["partitions_ended"] == 2).await;
    assert_eq!(net["cohorts"]["0..2"]["disconnects"], 2, "{net}");
}
