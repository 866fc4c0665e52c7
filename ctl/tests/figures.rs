//! One word, one meaning: the device figures (desired, assigned, active, stale) named the
//! same and agreeing across `status`, `agents` and `/metrics`; `watch --json` totals that
//! never go back; `status` right after an agent dies; default views within 100 columns.
//! Against a real nats-server with real agents.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use pluribus_testkit::free_port;
use serde_json::Value;
use support::*;

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

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

/// The value of the series `name{labels}` (exact labels), 0 when absent.
fn series(body: &str, name_labels: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name_labels)?.strip_prefix(' '))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn sum_agents(doc: &Value, field: &str) -> u64 {
    doc["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .filter(|a| a["alive"] == true)
        .map(|a| u(&a[field]))
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn device_figures_have_one_name_and_agree_across_status_agents_and_metrics() {
    let mut c = Cluster::new("fig-names");
    let ports = [free_port(), free_port()];
    for (i, p) in ports.iter().enumerate() {
        let listen = format!("127.0.0.1:{p}");
        c.agent(&format!("a{i}"), &["--metrics-listen", &listen]);
    }
    c.wait_agents(2).await;
    // 40 devices arriving over 8 s: assigned at once (the leases), active as they arrive.
    c.ctl(&[
        "deploy-fleet",
        "ramp",
        "--count",
        "40",
        "--shard-size",
        "10",
        "--ramp",
        "40/8s",
        "--interval",
        "1s",
        "--sink",
        "nats",
        "--subject",
        "fig-names.{fleet}.{device_id}",
    ])
    .ok();
    // Each agent's /metrics: its active devices of the fleet.
    let metrics_active = || -> u64 {
        ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let labels = format!("{{agent=\"a{i}\",fleet=\"ramp\"}}");
                metrics(*p).map(|b| series(&b, &format!("pluribus_active_devices{labels}")))
            })
            .sum()
    };
    let mut ramping_seen = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    loop {
        let s = c.status();
        let a = c.ctl(&["agents", "--json"]).ok().json();
        let m = metrics_active();
        let f = fleet(&s, "ramp");
        let (desired, assigned, active) = (u(&f["desired"]), u(&f["assigned"]), u(&f["active"]));
        assert_eq!(desired, 40, "{s}");
        assert_eq!(f["running"], f["assigned"], "the deprecated alias: {s}");
        assert_eq!(u(&f["pending"]), desired - assigned, "{s}");
        assert!(
            active <= assigned,
            "active {active} > assigned {assigned}: {s}"
        );
        // Both commands read each agent's assigned devices from the same leases.
        let per_agent: u64 = f["agents"]
            .as_array()
            .expect("shares")
            .iter()
            .map(|x| u(&x["assigned"]))
            .sum();
        assert_eq!(per_agent, assigned, "{s}");
        if assigned == 40 && sum_agents(&a, "assigned") == 40 {
            ramping_seen |= active > 0 && active < assigned;
        }
        for row in s["agents"].as_array().expect("agents") {
            assert_eq!(row["devices"], row["assigned"], "the deprecated alias: {s}");
        }
        if assigned == 40
            && active == 40
            && sum_agents(&s, "active") == 40
            && sum_agents(&a, "active") == 40
            && sum_agents(&a, "assigned") == 40
            && m == 40
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the figures never settled at 40: metrics {m}; status {s}; agents {a}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        ramping_seen,
        "never saw fewer active than assigned during the 8 s arrival ramp"
    );
    // The text says the same words.
    let text = c.ctl(&["status"]).ok().stdout.clone();
    assert!(
        text.contains("ASSIGNED") && text.contains("ACTIVE") && !text.contains("RUNNING"),
        "{text}"
    );
    let text = c.ctl(&["agents"]).ok().stdout.clone();
    assert!(
        text.contains("ASSIGNED") && text.contains("ACTIVE"),
        "{text}"
    );
    let frame: Value = serde_json::from_str(
        c.ctl(&["watch", "--json", "--count", "1"])
            .ok()
            .stdout
            .lines()
            .last()
            .expect("a frame"),
    )
    .expect("json");
    assert_eq!(frame["fleets"][0]["active"], 40, "{frame}");
    let r = c.ctl(&["report", "--json"]).ok().json();
    assert_eq!(r["fleets"][0]["active"], 40, "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_json_totals_never_go_back_and_rates_are_rates() {
    let mut c = Cluster::new("fig-watch");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    c.ctl(&[
        "deploy-fleet",
        "w",
        "--count",
        "20",
        "--interval",
        "100ms",
        "--sink",
        "nats",
        "--subject",
        "fig-watch.{fleet}.{device_id}",
    ])
    .ok();
    wait_status(&c, "20 active", Duration::from_secs(30), |s| {
        fleet(s, "w")["active"] == 20
    })
    .await;
    let out = c.ctl(&["watch", "--json", "--count", "6", "--interval", "400ms"]);
    let frames: Vec<Value> = out
        .ok()
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(frames.len(), 6);
    let mut last = (0, 0, 0);
    for f in &frames {
        for row in [&f["fleets"][0], &f["agents"][0]] {
            assert!(row["msgs_per_s"].is_number(), "{row}");
            assert!(
                row.get("messages").is_none(),
                "no count whose span changes between frames: {row}"
            );
        }
        let row = &f["fleets"][0];
        let now = (
            u(&row["messages_total"]),
            u(&row["bytes_total"]),
            u(&row["errors_total"]),
        );
        assert!(
            now.0 >= last.0 && now.1 >= last.1 && now.2 >= last.2,
            "totals went back: {last:?} then {now:?} in {frames:?}"
        );
        last = now;
    }
    assert!(last.0 > 0, "{frames:?}");
    // The agent row's total is the same figure.
    let f = frames.last().unwrap();
    assert_eq!(
        f["agents"][0]["messages_total"],
        f["fleets"][0]["messages_total"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn status_says_when_an_agent_stopped_heartbeating_and_its_devices_are_stale() {
    let mut c = Cluster::new("fig-dead");
    // A long lease TTL: the victim's leases outlive its heartbeats (500 ms apart, so it is
    // seen dead after about 2.5 s) by more than 10 s.
    c.agent("keep", &["--lease-ttl", "15s"]);
    let victim = c.agent("victim", &["--lease-ttl", "15s"]);
    c.wait_agents(2).await;
    c.ctl(&[
        "deploy-fleet",
        "d",
        "--count",
        "40",
        "--shard-size",
        "10",
        "--sink",
        "nats",
        "--subject",
        "fig-dead.{fleet}.{device_id}",
    ])
    .ok();
    let s = wait_status(&c, "both agents active", Duration::from_secs(30), |s| {
        let f = fleet(s, "d");
        f["active"] == 40
            && f["agents"]
                .as_array()
                .is_some_and(|a| a.len() == 2 && a.iter().all(|x| u(&x["assigned"]) > 0))
    })
    .await;
    let on_victim = fleet(&s, "d")["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["agent_name"] == "victim")
        .map(|x| u(&x["assigned"]))
        .unwrap();
    c.agents[victim].kill();
    let s = wait_status(
        &c,
        "the victim to stop heartbeating",
        Duration::from_secs(20),
        |s| {
            s["agents"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|a| a["name"] == "victim" && a["alive"] == false)
            })
        },
    )
    .await;
    // Its leases are still there: its devices are stale, not active, and status says why.
    let f = fleet(&s, "d");
    let reason = f["reason"].as_str().unwrap_or_default();
    assert_eq!(u(&f["stale"]), on_victim, "{s}");
    assert_eq!(u(&f["assigned"]), 40, "{s}");
    assert!(u(&f["active"]) <= 40 - on_victim, "{s}");
    assert!(
        reason.contains(&format!(
            "{on_victim} on victim, which stopped heartbeating; they move when its leases expire in ~"
        )),
        "{s}"
    );
    let share = f["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["agent_name"] == "victim")
        .expect("victim share");
    assert_eq!(share["alive"], false, "{s}");
    let text = c.ctl(&["status"]).ok().stdout.clone();
    assert!(
        text.contains("victim:") && text.contains("(stale)"),
        "{text}"
    );
    assert!(text.contains("which stopped heartbeating"), "{text}");
    // Then they move, and nothing is stale any more.
    wait_status(&c, "the devices moved", Duration::from_secs(45), |s| {
        let f = fleet(s, "d");
        f["stale"] == 0 && f["assigned"] == 40 && f["reason"].is_null()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn default_views_fit_in_100_columns_and_wide_shows_whole_ids() {
    let mut c = Cluster::new("fig-width");
    c.agent(
        "agent-eu-west-1a",
        &["--labels", "zone=eu-west-1a,rack=r42"],
    );
    c.agent(
        "agent-eu-west-1b",
        &["--labels", "zone=eu-west-1b,rack=r43"],
    );
    c.wait_agents(2).await;
    let subject = "fig-width.{fleet}.{device_id}";
    c.ctl(&[
        "deploy-fleet",
        "thermostats-eu",
        "--count",
        "30",
        "--rate",
        "300/s",
        "--ramp",
        "300/20s",
        "--arrival",
        "ramp:30/20s",
        "--sink",
        "nats",
        "--subject",
        subject,
    ])
    .ok();
    // Pending, with a long reason: no agent has these labels.
    c.ctl(&[
        "deploy-fleet",
        "placed-nowhere",
        "--count",
        "10",
        "--placement",
        "zone=us-east-2,rack=r99",
        "--sink",
        "nats",
        "--subject",
        subject,
        "--timeout",
        "1s",
    ]);
    wait_status(&c, "the fleets", Duration::from_secs(30), |s| {
        fleet(s, "thermostats-eu")["active"]
            .as_u64()
            .is_some_and(|n| n > 0)
            && fleet(s, "placed-nowhere")["reason"].is_string()
    })
    .await;
    let views: [&[&str]; 5] = [
        &["status"],
        &["agents"],
        &["watch", "--count", "3", "--interval", "400ms"],
        &["report"],
        &["report", "--window", "1s"],
    ];
    for args in views {
        let out = c.ctl(args);
        let text = &out.ok().stdout;
        assert!(text.lines().count() > 2, "{args:?}: {text}");
        for line in text.lines() {
            assert!(
                line.chars().count() <= 100,
                "{args:?}: a line of {} characters:\n{line}\n\n{text}",
                line.chars().count()
            );
        }
    }
    // Whole ids with --wide (and in --json); 8 characters by default.
    let id = c.status()["agents"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert!(id.len() > 8);
    let short = &id[..8];
    for cmd in ["status", "agents"] {
        let narrow = c.ctl(&[cmd]).ok().stdout.clone();
        assert!(narrow.contains(short) && !narrow.contains(&id), "{narrow}");
        let wide = c.ctl(&[cmd, "--wide"]).ok().stdout.clone();
        assert!(wide.contains(&id), "{wide}");
    }
    let wide = c
        .ctl(&["watch", "--wide", "--count", "1"])
        .ok()
        .stdout
        .clone();
    assert!(wide.contains(&id), "{wide}");
}
