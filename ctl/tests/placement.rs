//! Where devices run: placement labels, drain, rebalance onto late agents, namespaces.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::*;

/// Devices an agent holds, from the leases (heartbeat counts lag by up to one beat).
fn devices_of(status: &serde_json::Value, agent: &str) -> u64 {
    status["fleets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|f| f["agents"].as_array().into_iter().flatten())
        .filter(|a| a["agent_name"] == agent)
        .filter_map(|a| a["assigned"].as_u64())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn placement_labels_pick_the_agents() {
    let mut c = Cluster::new("place");
    c.agent("za", &["--labels", "zone=a"]);
    c.agent("zb", &["--labels", "zone=b,rack=1"]);
    c.wait_agents(2).await;
    c.ctl(&[
        "deploy-fleet",
        "pb",
        "--count",
        "300",
        "--shard-size",
        "50",
        "--placement",
        "zone=b",
    ])
    .ok();
    let s = c.status();
    assert_eq!(devices_of(&s, "zb"), 300, "{s}");
    assert_eq!(devices_of(&s, "za"), 0);
    // Nobody has zone=c: refused up front, and status says why.
    let out = c.ctl(&[
        "deploy-fleet",
        "pc",
        "--count",
        "10",
        "--placement",
        "zone=c",
    ]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("zone=c"), "{}", out.stderr);
    let s = c.status();
    assert!(
        fleet(&s, "pc")["reason"]
            .as_str()
            .is_some_and(|r| r.contains("zone=c")),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_moves_devices_off_an_agent() {
    let mut c = Cluster::new("drain");
    c.agent("d1", &[]);
    c.agent("d2", &[]);
    c.wait_agents(2).await;
    c.ctl(&["deploy-fleet", "df", "--count", "400", "--shard-size", "50"])
        .ok();
    let s = c.status();
    assert!(devices_of(&s, "d1") > 0 && devices_of(&s, "d2") > 0, "{s}");
    let out = c.ctl(&["drain", "d1", "--timeout", "30s"]);
    out.ok();
    let s = wait_status(&c, "d2 to hold all", Duration::from_secs(15), |s| {
        devices_of(s, "d2") == 400
    })
    .await;
    assert_eq!(devices_of(&s, "d1"), 0);
    assert_eq!(fleet(&s, "df")["running"], 400);
    // A drained agent takes no new work.
    c.ctl(&[
        "deploy-fleet",
        "df2",
        "--count",
        "100",
        "--shard-size",
        "50",
    ])
    .ok();
    assert_eq!(devices_of(&c.status(), "d1"), 0);
    let out = c.ctl(&["drain", "nobody"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("nobody"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn work_moves_to_an_agent_that_joins_later() {
    let mut c = Cluster::new("late");
    c.agent("early", &[]);
    c.wait_agents(1).await;
    c.ctl(&["deploy-fleet", "lf", "--count", "600", "--shard-size", "50"])
        .ok();
    assert_eq!(devices_of(&c.status(), "early"), 600);
    c.agent("late", &[]);
    // Automatic rebalance: each ends within ±20% of 300.
    let s = wait_status(&c, "an even split", Duration::from_secs(45), |s| {
        let (e, l) = (devices_of(s, "early"), devices_of(s, "late"));
        e + l == 600 && (240..=360).contains(&l)
    })
    .await;
    assert_eq!(fleet(&s, "lf")["running"], 600);

    // New work goes to the agent with room: a third agent joins, then a new fleet lands
    // mostly on it, and `rebalance` evens out what is left.
    c.agent("third", &[]);
    c.wait_agents(3).await;
    c.ctl(&[
        "deploy-fleet",
        "lf2",
        "--count",
        "300",
        "--shard-size",
        "50",
    ])
    .ok();
    let out = c.ctl(&["rebalance", "--json"]);
    out.ok();
    let s = wait_status(&c, "three-way split", Duration::from_secs(45), |s| {
        ["early", "late", "third"]
            .iter()
            .all(|a| (240..=360).contains(&devices_of(s, a)))
            // A shard may be between two agents at any moment while work moves.
            && fleet(s, "lf2")["running"] == 300
            && fleet(s, "lf")["running"] == 600
    })
    .await;
    assert_eq!(fleet(&s, "lf2")["running"], 300);
}

#[tokio::test(flavor = "multi_thread")]
async fn namespaces_on_one_nats_do_not_see_each_other() {
    let mut c = Cluster::new("ns-a");
    c.agent("a-agent", &[]);
    let b_agent = spawn_agent(&c.nats, "ns-b", "b-agent", &[]);
    c.wait_agents(1).await;
    c.ctl(&["deploy-fleet", "only-a", "--count", "20"]).ok();
    let b = ctl_at(&c.nats.url(), "ns-b", &["status", "--json"])
        .ok()
        .json();
    assert!(b["fleets"].as_array().expect("fleets").is_empty(), "{b}");
    let agents: Vec<&str> = b["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(agents, vec!["b-agent"]);
    let a = c.status();
    assert_eq!(fleet(&a, "only-a")["running"], 20);
    assert!(a["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .all(|x| x["name"] != "b-agent"));
    drop(b_agent);
}
