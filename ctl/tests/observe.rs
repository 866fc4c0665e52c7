//! Seeing everything: the end-to-end probe (NATS and MQTT), saturation, `/metrics`, `report`
//! and `watch`, against a real nats-server (and mosquitto) with real agents.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use pluribus_testkit::{bin_path, free_port, wait_until, Mosquitto, Proc};
use serde_json::Value;
use support::*;

/// Starts pluribusctl on a blocking thread, so several can run at once.
fn ctl_bg(c: &Cluster, args: &[&str]) -> tokio::task::JoinHandle<pluribus_testkit::Output> {
    let (url, ns) = (c.nats.url(), c.ns.clone());
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ctl_at(&url, &ns, &args)
    })
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write file");
    path.to_str().expect("utf-8 path").to_string()
}

/// Lost seqs between first and last, from a saved probe's ranges, per device.
fn missing_per_device(saved: &Value, fleet: &str) -> Vec<(String, Vec<u64>)> {
    let devices = saved["fleets"][fleet]["devices"]
        .as_object()
        .unwrap_or_else(|| panic!("no devices of {fleet} in {saved}"));
    devices
        .iter()
        .map(|(id, d)| {
            let ranges: Vec<(u64, u64)> = d["seqs"]
                .as_array()
                .expect("ranges")
                .iter()
                .map(|r| (r[0].as_u64().expect("a"), r[1].as_u64().expect("b")))
                .collect();
            let gaps = ranges
                .windows(2)
                .flat_map(|w| (w[0].1 + 1)..w[1].0)
                .collect();
            (id.clone(), gaps)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_sees_no_loss_on_a_clean_run_and_exactly_what_drop_every_skips() {
    let mut c = Cluster::new("obs-probe");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let dir = tempfile::tempdir().expect("tempdir");
    c.ctl(&[
        "deploy-fleet",
        "clean",
        "--count",
        "20",
        "--sink",
        "nats",
        "--subject",
        "obs-clean.{fleet}.{device_id}",
        "--interval",
        "100ms",
    ])
    .ok();
    let lossy = write(
        &dir,
        "lossy.yaml",
        "name: lossy\ncount: 20\ndevice:\n  interval: 100ms\nsink:\n  type: nats\n  subject: obs-lossy.{fleet}.{device_id}\n  drop_every: 5\n",
    );
    c.ctl(&["deploy-fleet", "--file", &lossy]).ok();

    let (clean_file, lossy_file) = (
        dir.path().join("clean.json").display().to_string(),
        dir.path().join("lossy.json").display().to_string(),
    );
    let clean = ctl_bg(
        &c,
        &[
            "probe",
            "--subject",
            "obs-clean.>",
            "--duration",
            "5s",
            "--json",
            "--save",
            &clean_file,
        ],
    );
    let lossy = ctl_bg(
        &c,
        &[
            "probe",
            "--subject",
            "obs-lossy.>",
            "--duration",
            "5s",
            "--json",
            "--save",
            &lossy_file,
            "--per-device",
        ],
    );
    let (clean, lossy) = (clean.await.expect("probe"), lossy.await.expect("probe"));

    let s = clean.ok().json();
    assert!(s["received"].as_u64().is_some_and(|n| n > 200), "{s}");
    assert_eq!(
        (&s["lost"], &s["duplicates"], &s["out_of_order"]),
        (&0.into(), &0.into(), &0.into()),
        "{s}"
    );
    assert_eq!(s["devices"], 20, "{s}");
    assert_eq!(s["fleets"]["clean"]["received"], s["received"]);
    assert_eq!(
        s["latency_ms"]["count"], s["received"],
        "every message has a ts"
    );
    assert!(
        s["latency_ms"]["p99"].as_f64().is_some_and(|v| v < 2_000.0),
        "{s}"
    );
    assert!(
        clean
            .stderr
            .contains("probe: listening on nats:obs-clean.>"),
        "{}",
        clean.stderr
    );

    // Loss: exactly the seqs missing between each device's first and last, every 5th one.
    let s = lossy.ok().json();
    let saved: Value =
        serde_json::from_slice(&std::fs::read(&lossy_file).expect("saved file")).expect("json");
    let missing = missing_per_device(&saved, "lossy");
    assert_eq!(missing.len(), 20);
    let expected: u64 = missing.iter().map(|(_, m)| m.len() as u64).sum();
    for (id, m) in &missing {
        assert!(
            m.windows(2).all(|w| w[1] - w[0] == 5),
            "{id}: drop_every 5 skips one seq in five: {m:?}"
        );
        assert_eq!(s["per_device"]["lossy"][id]["lost"], m.len() as u64, "{id}");
    }
    assert!(expected > 20, "some messages were dropped: {s}");
    assert_eq!(s["lost"], expected, "{s}");
    assert_eq!(
        (&s["duplicates"], &s["out_of_order"]),
        (&0.into(), &0.into()),
        "{s}"
    );
    let received = s["received"].as_u64().expect("received");
    let ratio = expected as f64 / (expected + received) as f64;
    assert!(
        (0.15..0.25).contains(&ratio),
        "about one in five lost: {ratio}"
    );

    // Two saved probes merge into one summary.
    let merged = c
        .ctl(&["probe", "merge", &clean_file, &lossy_file, "--json"])
        .ok()
        .json();
    assert_eq!(merged["lost"], expected);
    assert_eq!(merged["devices"], 40);
    let clean_received = clean.json()["received"].as_u64().expect("received");
    assert_eq!(merged["received"].as_u64(), Some(received + clean_received));

    // Checks: the clean run keeps every limit (exit 0); the lossy one fails --max-loss
    // (exit 3), and says which check and by how much.
    let ok = c.ctl(&[
        "probe",
        "merge",
        &clean_file,
        "--json",
        "--max-loss",
        "0",
        "--max-duplicates",
        "0",
        "--max-p99",
        "2s",
        "--min-received",
        "100",
    ]);
    let doc = ok.ok().json();
    assert_eq!(doc["passed"], true, "{doc}");
    assert_eq!(doc["checks"].as_array().map(Vec::len), Some(4), "{doc}");
    let bad = c.ctl(&["probe", "merge", &lossy_file, "--max-loss", "1%"]);
    assert_eq!(bad.code, 3, "{}\n{}", bad.stdout, bad.stderr);
    assert!(bad.stdout.contains("FAIL  max_loss"), "{}", bad.stdout);
    assert!(
        bad.stderr.contains("probe checks failed: max_loss"),
        "{}",
        bad.stderr
    );
    let bad = c.ctl(&[
        "probe",
        "merge",
        &lossy_file,
        "--json",
        "--max-loss",
        &expected.to_string(),
    ]);
    assert_eq!(bad.code, 0, "exactly at the limit passes: {}", bad.stderr);
    let bad = c.ctl(&["probe", "merge", &lossy_file, "--max-loss", "ten"]);
    assert!(
        bad.code == 2 && bad.stderr.contains("--max-loss"),
        "{}",
        bad.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_over_mqtt_counts_loss_duplicates_and_order() {
    let broker = Mosquitto::start();
    let args = [
        "probe",
        "--broker",
        &broker.url(),
        "--topic",
        "obs/#",
        "--duration",
        "6s",
        "--json",
    ];
    let mut probe = Proc::spawn(&bin_path("pluribusctl"), &args, &[]);
    wait_until("the probe to subscribe", Duration::from_secs(10), || {
        let listening = probe.stderr().contains("listening on");
        async move { listening }
    })
    .await;

    // A tiny publisher: d1 loses seqs 10 and 20, d2 repeats 5, d3 sends 30 before 29.
    let mut opts = rumqttc::MqttOptions::new("obs-publisher", "127.0.0.1", broker.port());
    opts.set_keep_alive(Duration::from_secs(10));
    let (client, mut events) = rumqttc::AsyncClient::new(opts, 256);
    let poller = tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let mut sent = 0;
    for (dev, seqs) in [
        (
            "d1",
            (0..40)
                .filter(|s| *s != 10 && *s != 20)
                .collect::<Vec<u64>>(),
        ),
        (
            "d2",
            (0..40)
                .flat_map(|s| if s == 5 { vec![5, 5] } else { vec![s] })
                .collect(),
        ),
        (
            "d3",
            (0..40)
                .map(|s| match s {
                    29 => 30,
                    30 => 29,
                    s => s,
                })
                .collect(),
        ),
    ] {
        for seq in seqs {
            let ts = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_millis();
            let payload =
                format!(r#"{{"device_id":"{dev}","fleet":"m","seq":{seq},"ts":{ts},"data":{{}}}}"#);
            client
                .publish(
                    format!("obs/{dev}"),
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    payload,
                )
                .await
                .expect("publish");
            sent += 1;
        }
    }
    wait_until("the probe to finish", Duration::from_secs(20), || {
        let done = !probe.is_running();
        async move { done }
    })
    .await;
    poller.abort();
    let s: Value = serde_json::from_str(probe.stdout().trim())
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", probe.stdout(), probe.stderr()));
    assert_eq!(s["received"], sent, "{s}");
    assert_eq!(s["lost"], 2, "{s}");
    assert_eq!(s["duplicates"], 1, "{s}");
    assert_eq!(s["out_of_order"], 1, "{s}");
    assert_eq!(s["fleets"]["m"]["devices"], 3, "{s}");
    assert!(
        s["latency_ms"]["max"].as_f64().is_some_and(|v| v < 5_000.0),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_over_mosquitto_sees_a_clean_mqtt_fleet() {
    let broker = Mosquitto::start();
    let mut c = Cluster::new("obs-mqtt-fleet");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    c.ctl(&[
        "deploy-fleet",
        "mq",
        "--count",
        "10",
        "--sink",
        "mqtt",
        "--broker",
        &broker.url(),
        "--qos",
        "1",
        "--interval",
        "200ms",
    ])
    .ok();
    let out = ctl_bg(
        &c,
        &[
            "probe",
            "--broker",
            &broker.url(),
            "--topic",
            "devices/+/telemetry",
            "--duration",
            "4s",
            "--json",
        ],
    )
    .await
    .expect("probe");
    let s = out.ok().json();
    assert!(s["received"].as_u64().is_some_and(|n| n > 50), "{s}");
    assert_eq!(
        (&s["lost"], &s["duplicates"], &s["out_of_order"]),
        (&0.into(), &0.into(), &0.into()),
        "{s}"
    );
    assert_eq!(s["fleets"]["mq"]["devices"], 10, "{s}");
}

/// `watch --json` frames.
fn frames(c: &Cluster, count: &str, interval: &str, fleet: Option<&str>) -> Vec<Value> {
    let mut args = vec!["watch", "--json", "--count", count, "--interval", interval];
    args.extend(fleet);
    let out = c.ctl(&args);
    out.ok()
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn saturation_is_flagged_for_an_impossible_schedule_and_not_for_a_light_one() {
    let mut c = Cluster::new("obs-sat");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let mut events = Proc::spawn(
        &bin_path("pluribusctl"),
        &["events", "--json"],
        &[
            ("PLURIBUS_NATS_URL", &c.nats.url()),
            ("PLURIBUS_NAMESPACE", &c.ns),
        ],
    );

    // A light fleet: sending, and never saturated.
    c.ctl(&[
        "deploy-fleet",
        "light",
        "--count",
        "10",
        "--sink",
        "nats",
        "--subject",
        "obs-sat.{fleet}.{device_id}",
        "--interval",
        "200ms",
    ])
    .ok();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = c.ctl(&["report", "--json", "light"]).ok().json();
        if r["fleets"][0]["messages"].as_u64().is_some_and(|n| n > 0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "light fleet never sent: {r}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let light = frames(&c, "10", "700ms", None);
    assert_eq!(light.len(), 10);
    for f in &light {
        assert!(
            f["agents"]
                .as_array()
                .is_some_and(|a| a.iter().all(|a| a["saturated"] == false)),
            "{f}"
        );
        assert!(
            f["fleets"]
                .as_array()
                .is_some_and(|a| a.iter().all(|a| a["saturated"] == false)),
            "{f}"
        );
    }
    let last = light.last().expect("frame");
    assert_eq!(last["fleets"][0]["scheduled_per_s"], 50.0, "{last}");
    assert!(
        last["fleets"][0]["msgs_per_s"]
            .as_f64()
            .is_some_and(|r| r > 25.0),
        "{last}"
    );
    assert!(last["fleets"][0]["tick_lag_us"]["p99"].is_u64(), "{last}");
    assert_eq!(last["percentiles"], "cumulative since each agent started");
    assert!(c.status()["agents"][0]["saturated"] == false);

    // 20,000 devices every millisecond is 20M messages/s on one agent: impossible on any
    // machine. The sink drops every message (drop_every: 1), so this loads the generator and
    // not the machine's NATS.
    let dir = tempfile::tempdir().expect("tempdir");
    let heavy = write(
        &dir,
        "heavy.yaml",
        "name: heavy\ncount: 20000\nshard_size: 2000\nduration: 2m\ndevice:\n  interval: 1ms\nsink:\n  type: nats\n  subject: obs-sat.{fleet}.{device_id}\n  drop_every: 1\n",
    );
    c.ctl(&["deploy-fleet", "--file", &heavy, "--timeout", "60s"])
        .ok();
    let status = wait_status(
        &c,
        "the agent to be saturated",
        Duration::from_secs(40),
        |s| s["agents"][0]["saturated"] == true,
    )
    .await;
    assert!(
        status["agents"][0]["saturated_fleets"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "heavy")),
        "{status}"
    );
    let text = c.ctl(&["status"]).ok().stdout.clone();
    assert!(
        text.contains("SATURATED: agent a1 cannot keep up"),
        "{text}"
    );
    let f = frames(&c, "2", "500ms", Some("heavy"));
    let heavy_row = &f[1]["fleets"][0];
    assert_eq!(heavy_row["saturated"], true, "{heavy_row}");
    assert!(
        heavy_row["msgs_per_s"].as_f64() < Some(0.98 * 20_000_000.0),
        "{heavy_row}"
    );
    wait_until("a saturated event", Duration::from_secs(10), || {
        let out = events.stdout();
        async move {
            out.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .any(|e| {
                    e["event"] == "saturated" && e["name"] == "a1" && e["fleets"][0] == "heavy"
                })
        }
    })
    .await;

    // Gone with the heavy fleet.
    c.ctl(&["delete-fleet", "heavy"]).ok();
    wait_status(&c, "saturation to clear", Duration::from_secs(30), |s| {
        s["agents"][0]["saturated"] == false
    })
    .await;
    events.kill();
}

/// GET http://127.0.0.1:port/path with a plain socket: (status line and headers, body).
fn http_get(port: u16, path: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.to_string(), body.to_string()))
}

/// The value of the first sample line starting with `prefix`.
fn sample(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_endpoint_serves_a_running_fleets_counters() {
    let mut c = Cluster::new("obs-prom");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    c.agent("a1", &["--metrics-listen", &listen]);
    c.wait_agents(1).await;
    c.ctl(&[
        "deploy-fleet",
        "m1",
        "--count",
        "5",
        "--sink",
        "nats",
        "--subject",
        "obs-prom.{fleet}.{device_id}",
        "--interval",
        "100ms",
    ])
    .ok();
    let mut last = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((head, body)) = http_get(port, "/metrics") {
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert!(
                head.to_ascii_lowercase()
                    .contains("content-type: text/plain; version=0.0.4"),
                "{head}"
            );
            let sent = sample(&body, "pluribus_messages_total{agent=\"a1\",fleet=\"m1\"}");
            let lag = sample(
                &body,
                "pluribus_tick_lag_seconds_count{agent=\"a1\",fleet=\"m1\"}",
            );
            if sent.is_some_and(|n| n > 0.0) && lag.is_some_and(|n| n > 0.0) {
                assert_eq!(
                    sample(&body, "pluribus_devices{agent=\"a1\",fleet=\"m1\"}"),
                    Some(5.0)
                );
                assert!(body.contains("# TYPE pluribus_tick_lag_seconds summary"));
                assert!(body.contains(
                    "pluribus_tick_lag_seconds{agent=\"a1\",fleet=\"m1\",quantile=\"0.99\"}"
                ));
                assert_eq!(
                    sample(&body, "pluribus_agent_saturated{agent=\"a1\"}"),
                    Some(0.0)
                );
                break;
            }
            last = body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no counters for m1 in /metrics:\n{last}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (head, _) = http_get(port, "/nope").expect("404");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    // The address is taken: the second agent says so and exits.
    let mut second = spawn_agent(&c.nats, &c.ns, "a2", &["--metrics-listen", &listen]);
    wait_until("the second agent to exit", Duration::from_secs(15), || {
        let running = second.is_running();
        async move { !running }
    })
    .await;
    let err = second.stderr();
    assert!(
        err.contains("--metrics-listen") && err.contains(&listen),
        "{err}"
    );
    assert_eq!(second.terminate(Duration::from_secs(1)), Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn report_gives_window_deltas_as_json_and_csv() {
    let mut c = Cluster::new("obs-report");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    c.ctl(&[
        "deploy-fleet",
        "r1",
        "--count",
        "10",
        "--sink",
        "nats",
        "--subject",
        "obs-report.{fleet}.{device_id}",
        "--interval",
        "100ms",
    ])
    .ok();
    // Past the epoch: devices are sending.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = c
        .ctl(&["report", "--json", "--window", "3s", "r1"])
        .ok()
        .json();
    assert_eq!(r["scope"], "window", "{r}");
    let f = &r["fleets"][0];
    assert_eq!(
        (&f["name"], &f["devices"]),
        (&"r1".into(), &10.into()),
        "{r}"
    );
    // 100 msgs/s: about 300 in 3 s (heartbeats are 500 ms apart, so the span is 2.5-3.5 s).
    assert!(
        f["messages"]
            .as_u64()
            .is_some_and(|n| (200..=400).contains(&n)),
        "{r}"
    );
    assert!(
        f["msgs_per_s"]
            .as_f64()
            .is_some_and(|v| (80.0..=120.0).contains(&v)),
        "{r}"
    );
    assert!(
        f["tick_lag_us"]["count"]
            .as_u64()
            .is_some_and(|n| n < f["messages"].as_u64().unwrap_or(0) + 100),
        "window percentiles: {r}"
    );
    let csv = c.ctl(&["report", "--csv"]).ok().stdout.clone();
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .is_some_and(|h| h.starts_with("scope,name,id,devices,")),
        "{csv}"
    );
    assert!(lines.any(|l| l.starts_with("fleet,r1,,10,")), "{csv}");
    let e = c.ctl(&["report", "--csv", "--json"]);
    assert_ne!(e.code, 0);
    assert!(e.stderr.contains("--csv"), "{}", e.stderr);
}
