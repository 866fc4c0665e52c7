//! Injected faults per cohort, and `network_changed` when a rule set `--for` a while
//! expires, against a real nats-server and real agents: two cohorts with different loss
//! rates, each cohort's dropped count (heartbeat, `report`, `network show`, `/metrics`)
//! equal to what a real subscriber missed from that cohort's devices.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use futures::StreamExt;
use pluribus_testkit::free_port;
use serde_json::Value;
use support::*;

/// `/metrics` of the agent on `port`.
fn metrics(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text.split_once("\r\n\r\n")?.1.to_string())
}

/// Device index and seq of a telemetry message.
fn index_seq(m: &async_nats::Message) -> (u64, u64) {
    let v: Value = serde_json::from_slice(&m.payload).expect("telemetry is JSON");
    let id = v["device_id"].as_str().expect("device_id");
    let index = id.rsplit('-').next().and_then(|i| i.parse().ok());
    (index.expect("index in id"), v["seq"].as_u64().expect("seq"))
}

/// Polls `ctl args` (JSON) until `ok`; panics after 30 s.
async fn wait_json(c: &Cluster, args: &[&str], ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let v = c.ctl(args).ok().json();
        if ok(&v) {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{args:?}: {v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_cohorts_dropped_count_is_what_a_subscriber_missed_from_its_devices() {
    let mut c = Cluster::new("net-cohorts");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    c.agent("a1", &["--metrics-listen", &listen]);
    c.wait_agents(1).await;
    let client = c.client().await;
    let mut sub = client.subscribe("netco.>").await.expect("subscribe");
    let mut hb = client
        .subscribe(c.namespace().heartbeat_all())
        .await
        .expect("heartbeats");
    client.flush().await.expect("flush");
    let dir = tempfile::tempdir().expect("tempdir");
    // 40 devices every 50 ms; the file names a label for the second half.
    let file = write_file(
        &dir,
        "co.yaml",
        "name: co\ncount: 40\nseed: 3\ndevice:\n  interval: 50ms\nsink:\n  type: nats\n  subject: netco.{device_id}\nnetwork:\n  labels:\n    zone=b: 20..40\n",
    );
    c.ctl(&["deploy-fleet", "--file", &file]).ok();
    // Two cohorts, two loss rates, set at runtime.
    c.ctl(&["network", "set", "co", "--cohort", "0..20", "--loss", "5%"])
        .ok();
    c.ctl(&[
        "network", "set", "co", "--cohort", "zone=b", "--loss", "20%",
    ])
    .ok();
    let mut seen: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut take = |m: &async_nats::Message| {
        let (i, s) = index_seq(m);
        seen.entry(i).or_default().push(s);
    };
    let mut n = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while n < 3000 {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(m)) => take(&m),
            _ => panic!("only {n} messages within 60 s"),
        }
        n += 1;
    }

    // While it runs, every view has both cohorts.
    let show = wait_json(&c, &["network", "show", "co", "--json"], |v| {
        ["0..20", "zone=b"]
            .iter()
            .all(|k| v["injected"]["cohorts"][k]["dropped"].as_u64() > Some(0))
    })
    .await;
    assert!(show["injected"]["cohorts"].get("none").is_none(), "{show}");
    let report = wait_json(&c, &["report", "co", "--json"], |v| {
        v["fleets"][0]["network"]["cohorts"]["zone=b"]["dropped"].as_u64() > Some(0)
    })
    .await;
    let net = &report["fleets"][0]["network"];
    assert_eq!(
        net["dropped"].as_u64(),
        Some(
            net["cohorts"]["0..20"]["dropped"].as_u64().unwrap()
                + net["cohorts"]["zone=b"]["dropped"].as_u64().unwrap()
        ),
        "{net}"
    );
    let csv = c.ctl(&["report", "co", "--csv"]).ok().stdout.clone();
    assert!(
        csv.lines().any(|l| l.starts_with("cohort,co,zone=b,")),
        "{csv}"
    );
    let text = c.ctl(&["report", "co"]).ok().stdout.clone();
    assert!(text.contains("  cohort 0..20: dropped "), "{text}");
    let body = metrics(port).expect("/metrics");
    assert!(
        body.contains(
            "pluribus_network_dropped_total{agent=\"a1\",fleet=\"co\",cohort=\"zone=b\"}"
        ),
        "{body}"
    );

    // Loss ends; a couple of seconds later every device's last messages arrive whole, so
    // each device's missing seqs are exactly the ones dropped.
    c.ctl(&["network", "clear", "co"]).ok();
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Some(m)) = tokio::time::timeout_at(until, sub.next()).await {
        take(&m);
    }
    let del = ctl_bg(&c, &["delete-fleet", "co"]);
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Some(m)) = tokio::time::timeout_at(until, sub.next()).await {
        take(&m);
    }
    del.await.expect("join").ok();

    // The agent's final counters: the last heartbeat that still reports the fleet.
    let mut last: Option<Value> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let m = tokio::time::timeout_at(deadline, hb.next())
            .await
            .expect("heartbeats stop")
            .expect("heartbeat");
        let h: Value = serde_json::from_slice(&m.payload).expect("heartbeat JSON");
        match h["fleets"].get("co") {
            Some(f) => last = Some(f.clone()),
            None if last.as_ref().is_some_and(|f| f["devices"] == 0) => break,
            None => {}
        }
    }
    let last = last.expect("fleet in heartbeats");
    let cohorts = &last["network_cohorts"];
    let mut rates = Vec::new();
    for (name, devices) in [("0..20", 0..20u64), ("zone=b", 20..40)] {
        let (mut missed, mut produced) = (0, 0);
        for i in devices {
            let s = seen.get_mut(&i).expect("device seen");
            s.sort_unstable();
            s.dedup();
            let top = s.last().map_or(0, |l| l + 1);
            produced += top;
            missed += top - s.len() as u64;
        }
        let dropped = cohorts[name]["dropped"].as_u64().expect("dropped");
        assert_eq!(missed, dropped, "cohort {name}: {last}");
        rates.push(dropped as f64 / produced as f64);
    }
    let sum = cohorts["0..20"]["dropped"].as_u64().unwrap()
        + cohorts["zone=b"]["dropped"].as_u64().unwrap();
    assert_eq!(last["network"]["dropped"].as_u64(), Some(sum), "{last}");
    // 5% and 20% over about a thousand messages each: clearly apart.
    assert!(rates[0] < 0.12 && rates[1] > 0.12, "loss rates {rates:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_set_for_a_while_announces_its_end_once() {
    let mut c = Cluster::new("net-expiry");
    c.agent("a1", &[]);
    c.agent("a2", &[]);
    c.wait_agents(2).await;
    c.ctl(&[
        "deploy-fleet",
        "ex",
        "--count",
        "20",
        "--shard-size",
        "10",
        "--interval",
        "200ms",
        "--sink",
        "nats",
    ])
    .ok();
    c.ctl(&[
        "network", "set", "ex", "--cohort", "10%", "--loss", "10%", "--for", "2s",
    ])
    .ok();
    let ended = |v: &Value| {
        v.as_array().is_some_and(|a| {
            a.iter().any(|e| {
                e["event"] == "network_changed"
                    && e["change"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("expired"))
            })
        })
    };
    let events = |c: &Cluster| -> Value {
        let out = c.ctl(&["events", "--since", "5m", "--json"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        Value::Array(
            out.stdout
                .lines()
                .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
                .collect(),
        )
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if ended(&events(&c)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", events(&c));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // A few reconcile passes later, still one: the leader announces, not every agent.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = events(&c);
    let changes: Vec<&Value> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "network_changed" && e["fleet"] == "ex")
        .collect();
    let expired: Vec<_> = changes
        .iter()
        .filter(|e| e["change"].as_str().unwrap().starts_with("expired"))
        .collect();
    assert_eq!(expired.len(), 1, "{all}");
    let e = expired[0];
    assert!(
        e["change"].as_str().unwrap().contains("cohort 10%: loss"),
        "{e}"
    );
    assert_eq!(e["rules"], 0, "{e}");
    // And `network show` no longer counts it as in force.
    let show = c.ctl(&["network", "show", "ex", "--json"]).ok().json();
    assert!(
        show["rules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["live"] == false),
        "{show}"
    );
}
