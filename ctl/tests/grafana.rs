//! deploy/grafana/pluribus.json queries only metrics a running agent exports: every
//! `pluribus_*` name in its queries is a metric family of a real agent's /metrics (a
//! summary's `_sum` and `_count` included), and the per-fleet series have samples.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use pluribus_testkit::{free_port, wait_until};
use support::Cluster;

fn get_metrics(port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out.split_once("\r\n\r\n")?.1.to_string())
}

/// Every `pluribus_*` metric name in the board's queries (panel targets and variables).
fn queried(board: &serde_json::Value) -> BTreeSet<String> {
    let mut exprs = Vec::new();
    for p in board["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            exprs.push(t["expr"].as_str().expect("expr").to_string());
        }
    }
    for v in board["templating"]["list"].as_array().expect("variables") {
        if let Some(q) = v["query"]["query"].as_str() {
            exprs.push(q.to_string());
        }
    }
    let mut names = BTreeSet::new();
    for e in exprs {
        let mut rest = e.as_str();
        while let Some(at) = rest.find("pluribus_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_string());
            rest = &tail[end..];
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_grafana_board_queries_is_exported_by_an_agent() {
    let board_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/pluribus.json");
    let board: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&board_path).expect("the board"))
            .expect("the board is JSON");
    let names = queried(&board);
    assert!(names.len() >= 10, "the board queries {names:?}");

    let mut c = Cluster::new("grafana");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    c.agent("g1", &["--metrics-listen", &listen]);
    c.wait_agents(1).await;
    c.ctl(&[
        "deploy-fleet",
        "gf",
        "--count",
        "2",
        "--sink",
        "nats",
        "--interval",
        "200ms",
    ])
    .ok();
    wait_until(
        "the agent's /metrics to show fleet gf's messages",
        Duration::from_secs(30),
        || {
            let text = get_metrics(port).unwrap_or_default();
            async move {
                text.lines().any(|l| {
                    l.starts_with("pluribus_messages_total{")
                        && l.contains("fleet=\"gf\"")
                        && !l.ends_with(" 0")
                }) && text.contains("pluribus_tick_lag_seconds_count{")
            }
        },
    )
    .await;
    let text = get_metrics(port).expect("/metrics");
    let mut families: BTreeSet<String> = BTreeSet::new();
    let mut summaries: BTreeSet<String> = BTreeSet::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (Some(name), Some(kind)) = (it.next(), it.next()) else {
                continue;
            };
            families.insert(name.to_string());
            if kind == "summary" {
                summaries.insert(name.to_string());
            }
        }
    }
    let sampled: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    for name in &names {
        let family = name
            .strip_suffix("_sum")
            .or_else(|| name.strip_suffix("_count"))
            .filter(|f| summaries.contains(*f))
            .unwrap_or(name);
        assert!(
            families.contains(family),
            "the board queries {name}, which the agent does not export; it exports {families:?}"
        );
    }
    // The series a nats fleet has are there with samples, not just declared.
    for name in [
        "pluribus_messages_total",
        "pluribus_devices",
        "pluribus_scheduled_messages_per_second",
        "pluribus_achieved_messages_per_second",
        "pluribus_tick_lag_seconds",
        "pluribus_tick_lag_seconds_count",
        "pluribus_agent_saturated",
    ] {
        assert!(names.contains(name), "the board should query {name}");
        assert!(sampled.contains(name), "no sample of {name} in:\n{text}");
    }
}
