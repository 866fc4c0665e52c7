//! Seeing everything: saturation, `/metrics`, `report` and `watch`, against a real
//! nats-server with real agents. (The probe has tests of its own: probe.rs.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use pluribus_testkit::{bin_path, free_port, wait_until, Proc};
use serde_json::Value;
use support::*;

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
        &["events", "--follow", "--since", "0s", "--json"],
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
    let heavy = write_file(
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
        (&f["name"], &f["active"]),
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
            .is_some_and(|h| h.starts_with("scope,name,id,active,")),
        "{csv}"
    );
    assert!(lines.any(|l| l.starts_with("fleet,r1,,10,")), "{csv}");
    let e = c.ctl(&["report", "--csv", "--json"]);
    assert_ne!(e.code, 0);
    assert!(e.stderr.contains("--csv"), "{}", e.stderr);
}
