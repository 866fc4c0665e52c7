//! The end-to-end probe against real agents: over a NATS subject and over mosquitto; exact
//! loss with `drop_every`, duplicates and order, `probe merge`, and pass/fail checks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use pluribus_testkit::{bin_path, wait_until, Mosquitto, Proc};
use serde_json::Value;
use support::*;

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
    let lossy = write_file(
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
