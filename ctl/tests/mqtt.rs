//! The mqtt sink end to end: real mosquitto, real agents, pluribusctl, and rumqttc's client
//! as an independent subscriber. Readiness is awaited (SUBACK, heartbeats), never slept.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use pluribus_common::messages::{FleetCounters, Heartbeat};
use pluribus_common::subjects::Namespace;
use pluribus_testkit::{free_port, Mosquitto};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use support::*;
use tokio::sync::mpsc;

/// An MQTT client (rumqttc) subscribed to one filter; it resubscribes after a reconnect.
struct Sub {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<(String, Bytes)>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects to 127.0.0.1:`port`, subscribes to `filter` at QoS 1 and waits for the SUBACK.
async fn subscribe(port: u16, filter: &str, login: Option<(&str, &str)>) -> Sub {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let id = format!(
        "test-sub-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    if let Some((u, p)) = login {
        opts.set_credentials(u, p);
    }
    let (client, mut events) = AsyncClient::new(opts, 1000);
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (c, filter) = (client.clone(), filter.to_string());
    let task = tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = c.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((p.topic.clone(), p.payload.clone()));
                }
                Ok(_) => {}
                // The broker is down (restart test): rumqttc reconnects on the next poll.
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .expect("SUBACK within 10 s")
        .expect("subscriber task alive");
    Sub { client, rx, task }
}

/// Telemetry and other messages received in `window`.
async fn collect(sub: &mut Sub, window: Duration) -> (Seen, Vec<(String, Bytes)>) {
    let mut seen = Seen::default();
    let mut other = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some((topic, payload))) = tokio::time::timeout_at(deadline, sub.rx.recv()).await {
        if !topic.ends_with("/telemetry") {
            other.push((topic, payload));
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&payload).expect("telemetry is JSON");
        if let (Some(id), Some(seq)) = (v["device_id"].as_str(), v["seq"].as_u64()) {
            seen.seqs.entry(id.to_string()).or_default().push(seq);
        }
        seen.payloads.push(v);
    }
    (seen, other)
}

/// Waits until `count` devices send within a 2 s window.
async fn wait_sending(sub: &mut Sub, count: usize, what: &str, timeout: Duration) -> Seen {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (seen, _) = collect(sub, Duration::from_secs(2)).await;
        if seen.seqs.len() == count {
            return seen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {} of {count} devices sending after {timeout:?}",
            seen.seqs.len()
        );
    }
}

/// Waits for a message on `topic` whose payload satisfies `check`.
async fn wait_message(
    sub: &mut Sub,
    what: &str,
    check: impl Fn(&str, &[u8]) -> bool,
) -> (String, Bytes) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, sub.rx.recv()).await {
            Ok(Some((t, p))) if check(&t, &p) => return (t, p),
            Ok(Some(_)) => {}
            _ => panic!("timed out waiting for {what}"),
        }
    }
}

/// The sum over live agents of their latest counters of `fleet`.
fn total(latest: &HashMap<String, FleetCounters>) -> FleetCounters {
    let mut t = FleetCounters::default();
    for c in latest.values() {
        t.devices += c.devices;
        t.connected += c.connected;
        t.connecting += c.connecting;
        t.disconnects += c.disconnects;
        t.reconnects += c.reconnects;
        t.publish_failed += c.publish_failed;
        t.commands += c.commands;
        t.received += c.received;
        for (k, v) in &c.connect_failures {
            *t.connect_failures.entry(k.clone()).or_default() += v;
        }
        if let Some(h) = &c.ack_latency_us {
            t.ack_latency_us
                .get_or_insert_with(Default::default)
                .merge(h);
        }
        if let Some(h) = &c.receive_latency_us {
            t.receive_latency_us
                .get_or_insert_with(Default::default)
                .merge(h);
        }
    }
    t
}

/// Waits until the fleet's counters, summed over agents' heartbeats, satisfy `check`.
async fn wait_counters(
    c: &Cluster,
    fleet: &str,
    what: &str,
    check: impl Fn(&FleetCounters) -> bool,
) -> FleetCounters {
    let client = c.client().await;
    let ns = Namespace::new(&c.ns).expect("namespace");
    let mut hb = client
        .subscribe(ns.heartbeat_all())
        .await
        .expect("subscribe to heartbeats");
    let mut latest: HashMap<String, FleetCounters> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let Ok(Some(msg)) = tokio::time::timeout_at(deadline, hb.next()).await else {
            panic!(
                "timed out waiting for {what}; last counters: {:?}",
                total(&latest)
            );
        };
        let h: Heartbeat = serde_json::from_slice(&msg.payload).expect("heartbeat");
        latest.insert(
            h.id.clone(),
            h.fleets.get(fleet).cloned().unwrap_or_default(),
        );
        let t = total(&latest);
        if check(&t) {
            return t;
        }
    }
}

fn deploy(c: &Cluster, fleet: &str, count: &str, broker: &str, extra: &[&str]) {
    let mut args = vec![
        "deploy-fleet",
        fleet,
        "--count",
        count,
        "--sink",
        "mqtt",
        "--broker",
        broker,
    ];
    args.extend_from_slice(extra);
    c.ctl(&args).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn five_hundred_devices_at_qos1_deliver_every_message() {
    let broker = Mosquitto::start();
    let mut c = Cluster::new("mq-qos1");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let mut sub = subscribe(broker.port(), "devices/+/telemetry", None).await;
    deploy(
        &c,
        "q1",
        "500",
        &broker.url(),
        &["--qos", "1", "--interval", "1s"],
    );

    wait_sending(&mut sub, 500, "all devices", Duration::from_secs(30)).await;
    let (seen, _) = collect(&mut sub, Duration::from_secs(4)).await;
    assert_eq!(seen.seqs.len(), 500);
    let gaps = seen.gaps();
    assert!(gaps.is_empty(), "gaps: {:?}", &gaps[..gaps.len().min(3)]);
    assert!(
        seen.seqs.values().all(|s| s.len() >= 3),
        "each device sends every second"
    );
    let t = wait_counters(&c, "q1", "500 connected with acks", |t| {
        t.connected == 500 && t.ack_latency_us.as_ref().is_some_and(|h| h.count() >= 500)
    })
    .await;
    assert_eq!(t.publish_failed, 0, "{t:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_changes_telemetry_and_the_reply_arrives() {
    let broker = Mosquitto::start();
    let mut c = Cluster::new("mq-cmd");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let mut sub = subscribe(broker.port(), "devices/c1-00001/#", None).await;
    deploy(
        &c,
        "c1",
        "3",
        &broker.url(),
        &[
            "--interval",
            "300ms",
            "--response-topic",
            "devices/{device_id}/replies",
        ],
    );
    // Telemetry flows, so the device's SUBSCRIBE (sent right after CONNACK) is in place.
    wait_message(&mut sub, "telemetry of c1-00001", |t, _| {
        t.ends_with("/telemetry")
    })
    .await;
    sub.client
        .publish(
            "devices/c1-00001/commands",
            QoS::AtLeastOnce,
            false,
            r#"{"set":{"temperature":99}}"#,
        )
        .await
        .expect("publish the command");
    let (_, reply) = wait_message(&mut sub, "the reply", |t, _| t.ends_with("/replies")).await;
    assert_eq!(&reply[..], br#"{"applied":true}"#);
    // The generic device clamps to 60 °C; it started between 15 and 25.
    wait_message(
        &mut sub,
        "telemetry at the commanded temperature",
        |t, p| {
            let v: serde_json::Value = serde_json::from_slice(p).unwrap_or_default();
            t.ends_with("/telemetry")
                && v["data"]["temperature"].as_f64().is_some_and(|x| x >= 59.0)
        },
    )
    .await;
    wait_counters(&c, "c1", "the command counted", |t| t.commands >= 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_will_arrives_when_the_agent_is_sigkilled() {
    let broker = Mosquitto::start();
    let mut c = Cluster::new("mq-will");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let mut sub = subscribe(broker.port(), "devices/+/status", None).await;
    deploy(&c, "w1", "2", &broker.url(), &["--will", "--birth"]);
    for _ in 0..2 {
        wait_message(&mut sub, "birth", |_, p| p == b"online").await;
    }
    c.agents[0].kill();
    let mut offline = std::collections::BTreeSet::new();
    while offline.len() < 2 {
        let (topic, _) =
            wait_message(&mut sub, "the will of both devices", |_, p| p == b"offline").await;
        offline.insert(topic);
    }
    assert!(offline.contains("devices/w1-00000/status"), "{offline:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn devices_reconnect_after_a_broker_restart() {
    let mut broker = Mosquitto::start();
    let mut c = Cluster::new("mq-restart");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let mut sub = subscribe(broker.port(), "devices/+/telemetry", None).await;
    deploy(
        &c,
        "r1",
        "200",
        &broker.url(),
        &["--qos", "1", "--interval", "500ms"],
    );
    wait_sending(&mut sub, 200, "all devices", Duration::from_secs(30)).await;

    broker.stop();
    let down = wait_counters(&c, "r1", "every device down and retrying", |t| {
        t.connected == 0
            && t.disconnects >= 200
            && t.connect_failures.get("refused").is_some_and(|n| *n >= 200)
    })
    .await;
    assert!(
        down.publish_failed > 0,
        "sends while down are counted: {down:?}"
    );
    // status shows the devices' failures too.
    let s = c.status();
    assert!(
        s["connections"]["r1"]["connect_failures"]["refused"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{s}"
    );
    let text = c.ctl(&["status"]);
    assert!(
        text.ok().stdout.contains("CONNECTIONS") && text.stdout.contains("refused"),
        "{}",
        text.stdout
    );
    broker.start_again();
    let after = wait_sending(
        &mut sub,
        200,
        "all devices after the restart",
        Duration::from_secs(40),
    )
    .await;
    assert!(after.payloads.iter().all(|p| p["fleet"] == "r1"));
    let t = wait_counters(&c, "r1", "200 reconnected", |t| {
        t.connected == 200 && t.reconnects >= 200
    })
    .await;
    eprintln!("after restart: {:?}", t.connect_failures);
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_a_test_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Pki {
        ca,
        server: (cert, key),
        ..
    } = Pki::new();
    let other_ca = Pki::new().ca;
    let path = |n: &str| dir.path().join(n).display().to_string();
    for (n, v) in [
        ("ca.pem", &ca),
        ("server.pem", &cert),
        ("server.key", &key),
        ("other.pem", &other_ca),
    ] {
        std::fs::write(path(n), v).expect("write");
    }
    let tls_port = free_port();
    let broker = Mosquitto::start_with_config(&format!(
        "listener {tls_port} 127.0.0.1\ncertfile {}\nkeyfile {}\n",
        path("server.pem"),
        path("server.key")
    ));
    let mut c = Cluster::new("mq-tls");
    // TLS files are read from the agent's --secrets-dir only.
    let secrets = dir.path().display().to_string();
    c.agent("a1", &["--secrets-dir", &secrets]);
    c.wait_agents(1).await;
    let mut sub = subscribe(broker.port(), "devices/+/telemetry", None).await;
    let url = format!("mqtts://127.0.0.1:{tls_port}");
    deploy(
        &c,
        "t1",
        "20",
        &url,
        &["--ca", &path("ca.pem"), "--qos", "1", "--interval", "500ms"],
    );
    wait_sending(&mut sub, 20, "devices over TLS", Duration::from_secs(30)).await;

    // A CA that did not sign the broker's certificate: counted as "tls", retried.
    deploy(
        &c,
        "t2",
        "2",
        &url,
        &["--ca", &path("other.pem"), "--no-wait"],
    );
    wait_counters(&c, "t2", "TLS failures", |t| {
        t.connected == 0 && t.connect_failures.get("tls").is_some_and(|n| *n >= 2)
    })
    .await;

    // A CA file missing on the agent: the agent refuses the shard and says why.
    deploy(
        &c,
        "t3",
        "1",
        &url,
        &["--ca", "/nonexistent/ca.pem", "--no-wait"],
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !c.agents[0]
        .stderr()
        .contains("sink.ca: /nonexistent/ca.pem")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            c.agents[0].stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // ... and `status` tells the user, for the pending devices.
    wait_status(&c, "the refusal in status", Duration::from_secs(10), |s| {
        fleet(s, "t3")["reason"]
            .as_str()
            .is_some_and(|r| r.contains("cannot run it") && r.contains("sink.ca"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn password_auth_and_wrong_passwords_count_as_auth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let passwd = dir.path().join("passwd");
    let out = std::process::Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&passwd)
        .args(["dev", "s3cret"])
        .output()
        .expect("mosquitto_passwd (apt-get install mosquitto)");
    assert!(out.status.success(), "{out:?}");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret\n").expect("write");
    let broker = Mosquitto::start_with_config(&format!(
        "allow_anonymous false\npassword_file {}\n",
        passwd.display()
    ));
    let mut c = Cluster::new("mq-auth");
    let dir_flag = dir.path().display().to_string();
    c.agent("a1", &["--secrets-dir", &dir_flag]);
    c.wait_agents(1).await;
    let mut sub = subscribe(
        broker.port(),
        "devices/+/telemetry",
        Some(("dev", "s3cret")),
    )
    .await;
    // Relative to the agent's --secrets-dir.
    let from_file = "file:secret".to_string();
    let _ = &secret;
    deploy(
        &c,
        "good",
        "5",
        &broker.url(),
        &[
            "--username",
            "dev",
            "--password",
            &from_file,
            "--interval",
            "500ms",
        ],
    );
    wait_sending(
        &mut sub,
        5,
        "authenticated devices",
        Duration::from_secs(30),
    )
    .await;

    deploy(
        &c,
        "bad",
        "3",
        &broker.url(),
        &["--username", "dev", "--password", "wrong", "--no-wait"],
    );
    let t = wait_counters(&c, "bad", "auth failures", |t| {
        t.connect_failures.get("auth").is_some_and(|n| *n >= 3)
    })
    .await;
    assert_eq!(t.connected, 0);
    // `watch` shows the failures by reason.
    let out = c.ctl(&["watch", "bad", "--json", "--count", "1"]);
    let frame: serde_json::Value =
        serde_json::from_str(out.ok().stdout.lines().last().expect("a frame")).expect("json");
    assert!(
        frame["connections"]["bad"]["connect_failures"]["auth"]
            .as_u64()
            .is_some_and(|n| n >= 3),
        "{frame}"
    );
    let text = c.ctl(&["watch", "bad", "--count", "1"]);
    assert!(text.ok().stdout.contains("auth:"), "{}", text.stdout);
    // The fleet record holds where the secret is, not the secret.
    let ns = Namespace::new(&c.ns).expect("namespace");
    let kv = async_nats::jetstream::new(c.client().await)
        .get_key_value(ns.fleets_bucket())
        .await
        .expect("fleets bucket");
    let record = kv.get("good").await.expect("get").expect("record");
    let record = String::from_utf8_lossy(&record);
    assert!(
        record.contains(&from_file) && !record.contains("s3cret"),
        "{record}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_fleet_counts_what_it_receives() {
    let broker = Mosquitto::start();
    let mut c = Cluster::new("mq-subrole");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    deploy(
        &c,
        "s1",
        "2",
        &broker.url(),
        &[
            "--role",
            "subscriber",
            "--subscribe",
            "devices/+/telemetry",
            "--interval",
            "10s",
        ],
    );
    wait_counters(&c, "s1", "subscribers connected", |t| t.connected == 2).await;
    deploy(&c, "p1", "10", &broker.url(), &["--interval", "200ms"]);
    let t = wait_counters(&c, "s1", "messages received", |t| {
        t.received >= 200
            && t.receive_latency_us
                .as_ref()
                .is_some_and(|h| h.count() >= 200)
    })
    .await;
    let p99 = t
        .receive_latency_us
        .as_ref()
        .map_or(0, |h| h.quantile(0.99));
    assert!(p99 < 5_000_000, "latency p99 {p99} µs");
}
