//! The mqtt sink over WebSocket (`ws://`, `wss://`), end to end: a real nats-server whose
//! WebSocket listener serves MQTT at `/mqtt` (Debian's mosquitto has no websockets), real
//! agents and pluribusctl. nats-server maps MQTT topic `devices/x/telemetry` to NATS
//! subject `devices.x.telemetry`, so a plain NATS subscriber checks what arrived; commands
//! go in over the server's plain MQTT listener with rumqttc. The same server is the
//! control plane.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use futures::StreamExt;
use pluribus_testkit::NatsServer;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use support::*;

/// A cluster whose NATS server is also the MQTT broker.
fn cluster(ns: &str, nats: NatsServer) -> Cluster {
    Cluster {
        nats,
        ns: ns.to_string(),
        agents: Vec::new(),
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

/// Polls `watch FLEET --json --count 1` until the fleet's connection figures satisfy
/// `check`; returns them.
async fn wait_connections(
    c: &Cluster,
    fleet: &str,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = c.ctl(&["watch", fleet, "--json", "--count", "1"]);
        let frame: serde_json::Value = out
            .ok()
            .stdout
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or_default();
        let conns = &frame["connections"][fleet];
        if check(conns) {
            return conns.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; last: {frame}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Publishes `payload` on `topic` at QoS 1 through the plain MQTT listener on `port` and
/// waits for the PUBACK.
async fn mqtt_publish(port: u16, topic: &str, payload: &str) {
    let id = format!("test-cmd-{}", std::process::id());
    let (client, mut events) = AsyncClient::new(MqttOptions::new(id, "127.0.0.1", port), 10);
    client
        .publish(topic, QoS::AtLeastOnce, false, payload.to_string())
        .await
        .expect("queue the publish");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => return,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("MQTT publish of the command: {e}"),
            Err(_) => panic!("no PUBACK for the command within 10 s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_devices_over_websocket_at_qos1_and_a_command() {
    let mut c = cluster("mqws", NatsServer::start_with_mqtt());
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let client = c.client().await;
    let mut sub = client
        .subscribe("devices.*.telemetry")
        .await
        .expect("subscribe");
    let mut one = client
        .subscribe("devices.ws1-00007.telemetry")
        .await
        .expect("subscribe");
    let url = c.nats.ws_url();
    assert!(url.starts_with("ws://"), "{url}");
    deploy(
        &c,
        "ws1",
        "50",
        &url,
        &["--qos", "1", "--interval", "500ms"],
    );

    wait_sending(
        &mut sub,
        50,
        "devices over websocket",
        Duration::from_secs(15),
    )
    .await;
    let seen = collect(&mut sub, Duration::from_secs(3)).await;
    assert_eq!(seen.seqs.len(), 50);
    let gaps = seen.gaps();
    assert!(gaps.is_empty(), "gaps: {:?}", &gaps[..gaps.len().min(3)]);
    assert!(
        seen.seqs.values().all(|s| s.len() >= 4),
        "each device sends twice a second"
    );

    // status: every device runs; watch: every device is connected, acks come back.
    wait_status(&c, "50 running", Duration::from_secs(10), |s| {
        fleet(s, "ws1")["running"] == 50 && fleet(s, "ws1")["pending"] == 0
    })
    .await;
    let conns = wait_connections(&c, "ws1", "50 connected", |v| {
        v["connected"] == 50 && v["ack_latency_us"].is_array()
    })
    .await;
    assert_eq!(conns["publish_failed"], 0, "{conns}");
    assert_eq!(conns["connect_failures"], serde_json::json!({}), "{conns}");

    // A command over MQTT reaches the device through its websocket connection.
    mqtt_publish(
        c.nats.mqtt_port(),
        "devices/ws1-00007/commands",
        r#"{"set":{"temperature":99}}"#,
    )
    .await;
    // The generic device clamps to 60 °C; it started between 15 and 25.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let Ok(Some(msg)) = tokio::time::timeout_at(deadline, one.next()).await else {
            panic!("no telemetry of ws1-00007 at the commanded temperature");
        };
        let v: serde_json::Value = serde_json::from_slice(&msg.payload).expect("JSON");
        if v["data"]["temperature"].as_f64().is_some_and(|t| t >= 59.0) {
            break;
        }
    }
    wait_connections(&c, "ws1", "the command counted", |v| {
        v["commands"].as_u64().is_some_and(|n| n >= 1)
    })
    .await;

    // A WebSocket URL on a port that does not speak HTTP: counted as "websocket".
    let wrong = format!("ws://127.0.0.1:{}/mqtt", c.nats.mqtt_port());
    deploy(&c, "ws2", "2", &wrong, &["--no-wait"]);
    wait_connections(&c, "ws2", "websocket handshake failures", |v| {
        v["connected"] == 0
            && v["connect_failures"]["websocket"]
                .as_u64()
                .is_some_and(|n| n >= 2)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wss_with_a_test_ca_a_wrong_ca_and_a_missing_ca_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Pki {
        ca,
        server: (cert, key),
        ..
    } = Pki::new();
    let other_ca = Pki::new().ca;
    let path = |n: &str| dir.path().join(n);
    for (n, v) in [
        ("ca.pem", &ca),
        ("server.pem", &cert),
        ("server.key", &key),
        ("other.pem", &other_ca),
    ] {
        std::fs::write(path(n), v).expect("write");
    }
    let ca_path = path("ca.pem").display().to_string();
    let other_path = path("other.pem").display().to_string();
    let nats = NatsServer::start_with_mqtt_tls(&path("server.pem"), &path("server.key"));
    let mut c = cluster("mqwss", nats);
    // TLS files are read from the agent's --secrets-dir only.
    let secrets = dir.path().display().to_string();
    c.agent("a1", &["--secrets-dir", &secrets]);
    c.wait_agents(1).await;
    let client = c.client().await;
    let mut sub = client
        .subscribe("devices.*.telemetry")
        .await
        .expect("subscribe");
    let url = c.nats.ws_url();
    assert!(url.starts_with("wss://"), "{url}");
    deploy(
        &c,
        "t1",
        "5",
        &url,
        &["--ca", &ca_path, "--qos", "1", "--interval", "500ms"],
    );
    let seen = wait_sending(&mut sub, 5, "devices over wss", Duration::from_secs(15)).await;
    assert!(seen.gaps().is_empty(), "{:?}", seen.gaps());

    // A CA that did not sign the server's certificate: counted as "tls", retried.
    deploy(&c, "t2", "2", &url, &["--ca", &other_path, "--no-wait"]);
    wait_connections(&c, "t2", "TLS failures", |v| {
        v["connected"] == 0
            && v["connect_failures"]["tls"]
                .as_u64()
                .is_some_and(|n| n >= 2)
    })
    .await;

    // A CA file missing on the agent: the agent refuses the shard and says why, as for
    // mqtts://.
    deploy(
        &c,
        "t3",
        "1",
        &url,
        &["--ca", "/nonexistent/ca.pem", "--no-wait"],
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
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
    wait_status(&c, "the refusal in status", Duration::from_secs(10), |s| {
        fleet(s, "t3")["reason"]
            .as_str()
            .is_some_and(|r| r.contains("cannot run it") && r.contains("sink.ca"))
    })
    .await;

    // TLS files with a ws:// (no TLS) broker: refused at deploy.
    let plain = url.replacen("wss://", "ws://", 1);
    let out = c.ctl(&[
        "deploy-fleet",
        "t4",
        "--count",
        "1",
        "--sink",
        "mqtt",
        "--broker",
        &plain,
        "--ca",
        &ca_path,
    ]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("sink.ca"), "{}", out.stderr);
}
