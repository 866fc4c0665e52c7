//! Agents whose clocks are wrong by ±90 s (real `faketime`, from apt) still agree: they
//! follow the NATS server's clock (learned from the server's timestamps on their own KV
//! writes) and judge each other alive by when heartbeats arrive. Placement, failover,
//! `--duration` expiry and `seq` continuity hold.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use pluribus_testkit::{bin_path, run, Proc};
use support::*;

/// libfaketime (apt package `faketime`, installed by deploy/install-deps.sh), preloaded into
/// the agent itself (the `faketime` wrapper forks, and a test must be able to SIGKILL the
/// agent).
fn libfaketime() -> String {
    let dirs = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
        "/usr/local/lib",
    ];
    dirs.iter()
        .map(|d| format!("{d}/faketime/libfaketimeMT.so.1"))
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!("libfaketimeMT.so.1 not found: install faketime (deploy/install-deps.sh)")
        })
}

/// Starts an agent whose wall clock is `skew` (e.g. `+90s`) off; its monotonic clock is
/// left alone.
fn skewed_agent(c: &mut Cluster, name: &str, skew: &str) -> usize {
    let url = c.nats.url();
    let args = [
        "--nats-url",
        url.as_str(),
        "--namespace",
        c.ns.as_str(),
        "--name",
        name,
        "--heartbeat",
        "500ms",
    ];
    let lib = libfaketime();
    c.agents.push(Proc::spawn(
        &bin_path("pluribus-agent"),
        &args,
        &[
            ("RUST_LOG", "info,async_nats=warn"),
            ("LD_PRELOAD", lib.as_str()),
            ("FAKETIME", skew),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    ));
    c.agents.len() - 1
}

/// `pluribusctl status --json` run with its own wall clock `skew` off.
fn skewed_status(c: &Cluster, skew: &str) -> serde_json::Value {
    let (url, lib) = (c.nats.url(), libfaketime());
    run(
        &bin_path("pluribusctl"),
        &["status", "--json"],
        &[
            ("PLURIBUS_NATS_URL", url.as_str()),
            ("PLURIBUS_NAMESPACE", c.ns.as_str()),
            ("LD_PRELOAD", lib.as_str()),
            ("FAKETIME", skew),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
        Duration::from_secs(90),
    )
    .ok()
    .json()
}

/// `alive` of agent `name` in a status document (None: not listed).
fn alive(status: &serde_json::Value, name: &str) -> Option<bool> {
    status["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == name))
        .and_then(|a| a["alive"].as_bool())
}

/// Waits until a `pluribusctl` whose clock is `skew` off sees `check` hold.
async fn wait_skewed_status(
    c: &Cluster,
    skew: &str,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let s = skewed_status(c, skew);
        if check(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "pluribusctl {skew}: timed out waiting for {what}; last status: {s}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn devices_on(status: &serde_json::Value, name: &str) -> u64 {
    status["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == name))
        .and_then(|a| a["devices"].as_u64())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_with_skewed_clocks_agree_on_schedules_durations_and_liveness() {
    let mut c = Cluster::new("skew");
    let ahead = skewed_agent(&mut c, "ahead", "+90s");
    skewed_agent(&mut c, "behind", "-90s");
    c.wait_agents(2).await;
    for i in [0, 1] {
        let log = c.agents[i].stderr();
        assert!(log.contains("following the NATS server's clock"), "{log}");
    }
    let client = c.client().await;

    // --duration: a fleet of 6 s runs for about 6 s, on either agent (an agent 90 s
    // ahead would end it at once, one 90 s behind would run it for 96 s).
    let mut dur = client.subscribe("skew-dur.>").await.expect("subscribe");
    let deployed = Instant::now();
    c.ctl(&[
        "deploy-fleet",
        "d",
        "--count",
        "20",
        "--shard-size",
        "5",
        "--sink",
        "nats",
        "--subject",
        "skew-dur.{fleet}.{device_id}",
        "--interval",
        "200ms",
        "--duration",
        "6s",
    ])
    .ok();
    wait_status(&c, "fleet d to end", Duration::from_secs(45), |s| {
        s["fleets"]
            .as_array()
            .is_some_and(|f| !f.iter().any(|f| f["name"] == "d"))
    })
    .await;
    let ended = deployed.elapsed();
    let seen = collect(&mut dur, Duration::from_millis(500)).await;
    assert_eq!(seen.seqs.len(), 20, "every device of d ran");
    // Sent from seq 0 (2 s after the deploy) for about 4 s at 5 msg/s.
    let most = seen.seqs.values().map(|s| s.len()).max().unwrap_or(0);
    assert!(
        (10..=40).contains(&most),
        "d's devices sent {most} messages each (ended after {ended:?})"
    );
    assert!(seen.gaps().is_empty(), "{:?}", seen.gaps());

    // Placement and seq: both agents take a share, every device starts at seq 0.
    let mut sub = client.subscribe("skew-tel.>").await.expect("subscribe");
    c.ctl(&[
        "deploy-fleet",
        "f",
        "--count",
        "100",
        "--shard-size",
        "10",
        "--sink",
        "nats",
        "--subject",
        "skew-tel.{fleet}.{device_id}",
        "--interval",
        "200ms",
    ])
    .ok();
    let s = wait_status(&c, "both agents run f", Duration::from_secs(30), |s| {
        fleet(s, "f")["running"] == 100 && devices_on(s, "ahead") > 0 && devices_on(s, "behind") > 0
    })
    .await;
    assert_eq!(
        devices_on(&s, "ahead") + devices_on(&s, "behind"),
        100,
        "{s}"
    );
    let before = wait_sending(&mut sub, 100, "all devices of f", Duration::from_secs(30)).await;
    assert!(before.gaps().is_empty(), "{:?}", &before.gaps()[..1]);

    // Liveness by when heartbeats arrive: a pluribusctl whose own clock is 90 s off
    // either way sees both agents alive, their last heartbeat a moment ago.
    for skew in ["+90s", "-90s"] {
        let s = skewed_status(&c, skew);
        for name in ["ahead", "behind"] {
            assert_eq!(alive(&s, name), Some(true), "pluribusctl {skew}: {s}");
            let agent = s["agents"]
                .as_array()
                .and_then(|a| a.iter().find(|a| a["name"] == name))
                .expect("listed");
            let age = agent["heartbeat_age_s"].as_f64().expect("age");
            assert!(age < 10.0, "pluribusctl {skew}: {name}'s age {age} s: {s}");
        }
    }

    // Failover: the agent 90 s ahead dies; the one 90 s behind runs every device, and
    // each device's seq carries on (a gap for the outage, never a reset or a repeat).
    c.agents[ahead].kill();
    let after = wait_sending(
        &mut sub,
        100,
        "devices after failover",
        Duration::from_secs(45),
    )
    .await;
    wait_status(&c, "behind runs all 100", Duration::from_secs(30), |s| {
        devices_on(s, "behind") == 100
    })
    .await;
    // Both skewed pluribusctls see it gone (its entry dead or removed) and the other alive.
    for skew in ["-90s", "+90s"] {
        wait_skewed_status(&c, skew, "ahead gone, behind alive", |s| {
            alive(s, "ahead") != Some(true) && alive(s, "behind") == Some(true)
        })
        .await;
    }
    let steady = collect(&mut sub, Duration::from_secs(2)).await;
    assert!(steady.gaps().is_empty() && steady.repeats().is_empty());
    for (id, seqs) in &before.seqs {
        let last = *seqs.last().expect("seq");
        let next = after
            .seqs
            .get(id)
            .and_then(|s| s.last())
            .copied()
            .expect("back");
        assert!(
            next > last,
            "{id}: seq {next} after the failover, {last} before"
        );
    }
}
