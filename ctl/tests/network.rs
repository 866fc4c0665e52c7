//! Network impairments end to end, against a real nats-server and real agents: loss that
//! a subscriber counts exactly, latency on a cohort only, a skewed clock on a cohort, a
//! runtime rule over two agents that survives a SIGKILL, and bad input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use pluribus_common::spec::network::Cohort;
use serde_json::Value;
use support::*;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// A received telemetry message: device, seq, its ts and scheduled_ts, and when it came.
#[derive(Debug, Clone)]
struct Got {
    id: String,
    seq: u64,
    ts: i64,
    scheduled: i64,
    at: i64,
}

fn got(msg: &async_nats::Message) -> Got {
    let v: Value = serde_json::from_slice(&msg.payload).expect("telemetry is JSON");
    Got {
        id: v["device_id"].as_str().expect("device_id").to_string(),
        seq: v["seq"].as_u64().expect("seq"),
        ts: v["ts"].as_i64().expect("ts"),
        scheduled: v["scheduled_ts"].as_i64().expect("scheduled_ts"),
        at: now_ms(),
    }
}

/// Receives for `window`.
async fn receive(sub: &mut async_nats::Subscriber, window: Duration) -> Vec<Got> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(m)) = tokio::time::timeout_at(deadline, sub.next()).await {
        out.push(got(&m));
    }
    out
}

/// Receives until every one of `ids` was seen with `ok`; panics after `timeout`.
async fn until_all(
    sub: &mut async_nats::Subscriber,
    ids: &[String],
    what: &str,
    timeout: Duration,
    ok: impl Fn(&Got) -> bool,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen: HashMap<String, bool> = ids.iter().map(|i| (i.clone(), false)).collect();
    while seen.values().any(|v| !v) {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(m)) => {
                let g = got(&m);
                if ok(&g) {
                    seen.insert(g.id, true);
                }
            }
            _ => {
                let missing: Vec<_> = seen.iter().filter(|(_, v)| !**v).map(|(k, _)| k).collect();
                panic!("{what}: not seen for {missing:?} within {timeout:?}");
            }
        }
    }
}

fn median(mut v: Vec<i64>) -> i64 {
    assert!(!v.is_empty(), "no samples");
    v.sort_unstable();
    v[v.len() / 2]
}

fn ids(fleet: &str, n: u64) -> Vec<String> {
    (0..n).map(|i| format!("{fleet}-{i:05}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn random_loss_is_what_the_subscriber_misses_exactly() {
    let mut c = Cluster::new("net-loss");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let client = c.client().await;
    let mut sub = client.subscribe("netloss.>").await.expect("subscribe");
    let mut hb = client
        .subscribe(c.namespace().heartbeat_all())
        .await
        .expect("heartbeats");
    client.flush().await.expect("flush");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_file(
        &dir,
        "loss.yaml",
        "name: loss\ncount: 20\nseed: 7\ndevice:\n  interval: 50ms\nsink:\n  type: nats\n  subject: netloss.{device_id}\nnetwork:\n  default:\n    loss: {probability: 0.05}\n",
    );
    c.ctl(&["deploy-fleet", "--file", &file]).ok();
    // The probe reports its losses next to what the agents dropped on purpose.
    let probe = ctl_bg(
        &c,
        &[
            "probe",
            "--subject",
            "netloss.>",
            "--duration",
            "4s",
            "--json",
        ],
    );
    // About 2000 slots, then stop the fleet and keep receiving what is still on its way.
    let mut seen: Vec<Got> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < 1900 {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(m)) => seen.push(got(&m)),
            _ => panic!("only {} messages within 60 s", seen.len()),
        }
    }
    let p = probe.await.expect("join").ok().json();
    let injected = &p["injected"]["loss"];
    assert!(injected["dropped"].as_u64() > Some(0), "{p}");
    assert!(p["lost"].as_u64() > Some(0), "{p}");
    // The agents' figures come from heartbeats (every 500 ms here) around the probe's
    // window: close to the probe's count, not exact.
    let (lost, dropped) = (
        p["lost"].as_u64().unwrap(),
        injected["dropped"].as_u64().unwrap(),
    );
    assert!(lost.abs_diff(dropped) <= 5 + lost / 5, "{p}");
    let del = ctl_bg(&c, &["delete-fleet", "loss"]);
    let mut more = receive(&mut sub, Duration::from_secs(3)).await;
    del.await.expect("join").ok();
    more.extend(receive(&mut sub, Duration::from_secs(1)).await);
    seen.extend(more);

    // The agent's final counters: the last heartbeat that still reports the fleet, once
    // a later one no longer does (it is dropped after one report with no devices).
    let mut last: Option<Value> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let m = tokio::time::timeout_at(deadline, hb.next())
            .await
            .expect("heartbeats stop")
            .expect("heartbeat");
        let h: Value = serde_json::from_slice(&m.payload).expect("heartbeat JSON");
        match h["fleets"].get("loss") {
            Some(f) => last = Some(f.clone()),
            None if last.as_ref().is_some_and(|f| f["devices"] == 0) => break,
            None => {}
        }
        assert!(tokio::time::Instant::now() < deadline, "no final heartbeat");
    }
    let last = last.expect("fleet in heartbeats");
    let produced = last["messages"].as_u64().expect("messages");
    let dropped = last["network"]["dropped"].as_u64().expect("dropped");
    let received = seen.len() as u64;

    // Every message the agent did not drop arrived; the subscriber misses exactly the
    // dropped ones.
    assert_eq!(
        produced - received,
        dropped,
        "produced {produced}, received {received}, dropped {dropped}"
    );
    // The gaps in each device's seqs are dropped messages (the ones after a device's last
    // received seq are dropped too, but are not gaps).
    let mut per: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for g in &seen {
        per.entry(&g.id).or_default().push(g.seq);
    }
    let gaps: u64 = per
        .values_mut()
        .map(|s| {
            s.sort_unstable();
            s.dedup();
            s.last().map_or(0, |l| l + 1) - s.len() as u64
        })
        .sum();
    assert!(
        gaps <= dropped && dropped - gaps <= 40,
        "gaps {gaps}, dropped {dropped}"
    );
    // 5% within four standard deviations of the sample.
    let n = produced as f64;
    let rate = dropped as f64 / n;
    let tol = 4.0 * (0.05 * 0.95 / n).sqrt();
    assert!(
        (rate - 0.05).abs() <= tol,
        "loss {rate:.4} over {produced} messages, expected 0.05 ± {tol:.4}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn latency_on_a_cohort_moves_that_cohort_only_and_is_reported() {
    let mut c = Cluster::new("net-lat");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let client = c.client().await;
    let mut sub = client.subscribe("netlat.>").await.expect("subscribe");
    client.flush().await.expect("flush");
    c.ctl(&[
        "deploy-fleet",
        "lat",
        "--count",
        "40",
        "--seed",
        "3",
        "--interval",
        "100ms",
        "--sink",
        "nats",
        "--subject",
        "netlat.{device_id}",
    ])
    .ok();
    let all = ids("lat", 40);
    until_all(
        &mut sub,
        &all,
        "every device sending",
        Duration::from_secs(30),
        |_| true,
    )
    .await;
    let out = c
        .ctl(&[
            "network",
            "set",
            "lat",
            "--cohort",
            "20%",
            "--latency",
            "200ms",
            "--jitter",
            "50ms",
            "--distribution",
            "normal",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(out["rules"][0]["live"], true, "{out}");
    assert_eq!(out["rules"][0]["cohort"], "20%", "{out}");
    let cohort = Cohort::Percent(20.0);
    let member = |id: &str| {
        let index: u64 = id.rsplit('-').next().unwrap().parse().unwrap();
        cohort.contains(3, index, id)
    };
    let members = all.iter().filter(|i| member(i)).count();
    assert!(
        members > 0 && members < all.len(),
        "{members} of 40 in the cohort"
    );
    // Messages produced after the rule reached the agent are delayed: wait for a delayed
    // cohort message, then measure.
    until_all(
        &mut sub,
        &all.iter()
            .filter(|i| member(i))
            .cloned()
            .collect::<Vec<_>>(),
        "the cohort delayed",
        Duration::from_secs(30),
        |g| g.at - g.ts > 100,
    )
    .await;
    let seen = receive(&mut sub, Duration::from_secs(3)).await;
    let (inside, outside): (Vec<&Got>, Vec<&Got>) = seen.iter().partition(|g| member(&g.id));
    let lat = |v: &[&Got]| median(v.iter().map(|g| g.at - g.ts).collect());
    let (mi, mo) = (lat(&inside), lat(&outside));
    assert!((150..=260).contains(&mi), "cohort median latency {mi} ms");
    assert!(mo < 50, "others' median latency {mo} ms");
    // The report shows what was injected, with the added delay's percentiles.
    let r = c.ctl(&["report", "--json"]).ok().json();
    let f = r["fleets"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == "lat"))
        .unwrap_or_else(|| panic!("no fleet in {r}"))
        .clone();
    assert!(f["network"]["delayed"].as_u64().unwrap_or(0) > 0, "{f}");
    let p50 = f["network"]["added_delay_us"]["p50"].as_u64().expect("p50");
    assert!((150_000..=250_000).contains(&p50), "added p50 {p50} µs");
    // Cleared, the cohort is fast again.
    c.ctl(&["network", "clear", "lat"]).ok();
    until_all(
        &mut sub,
        &all.iter()
            .filter(|i| member(i))
            .cloned()
            .collect::<Vec<_>>(),
        "the cohort fast again",
        Duration::from_secs(30),
        |g| g.at - g.ts < 50,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clock_offset_moves_a_cohorts_ts_and_not_its_schedule() {
    let mut c = Cluster::new("net-clock");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let client = c.client().await;
    let mut sub = client.subscribe("netclock.>").await.expect("subscribe");
    client.flush().await.expect("flush");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_file(
        &dir,
        "clock.yaml",
        "name: clock\ncount: 10\ndevice:\n  interval: 100ms\nsink:\n  type: nats\n  subject: netclock.{device_id}\nnetwork:\n  cohorts:\n    - {cohort: 0..5, clock: {offset: +30s}}\n",
    );
    c.ctl(&["deploy-fleet", "--file", &file]).ok();
    let all = ids("clock", 10);
    until_all(
        &mut sub,
        &all,
        "every device sending",
        Duration::from_secs(30),
        |_| true,
    )
    .await;
    let seen = receive(&mut sub, Duration::from_secs(2)).await;
    assert!(seen.len() > 50, "{} messages", seen.len());
    for g in &seen {
        let index: u64 = g.id.rsplit('-').next().unwrap().parse().unwrap();
        let skew = g.ts - g.scheduled;
        // The schedule runs on the true clock: scheduled_ts is (about) when it arrived.
        assert!((0..2_000).contains(&(g.at - g.scheduled)), "{g:?}");
        if index < 5 {
            assert!((30_000..31_000).contains(&skew), "{g:?}");
        } else {
            assert!((0..1_000).contains(&skew), "{g:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runtime_rule_reaches_two_agents_and_survives_a_sigkill() {
    let mut c = Cluster::new("net-fail");
    c.agent("a1", &[]);
    c.agent("a2", &[]);
    c.wait_agents(2).await;
    let client = c.client().await;
    let mut sub = client.subscribe("netfail.>").await.expect("subscribe");
    client.flush().await.expect("flush");
    c.ctl(&[
        "deploy-fleet",
        "fail",
        "--count",
        "20",
        "--shard-size",
        "5",
        "--interval",
        "200ms",
        "--sink",
        "nats",
        "--subject",
        "netfail.{device_id}",
    ])
    .ok();
    let all = ids("fail", 20);
    // Both agents run some of it.
    wait_status(
        &c,
        "the fleet over both agents",
        Duration::from_secs(30),
        |s| {
            s["agents"]
                .as_array()
                .is_some_and(|a| a.iter().filter(|a| a["devices"].as_u64() > Some(0)).count() == 2)
        },
    )
    .await;
    c.ctl(&["network", "set", "fail", "--clock-offset", "+1h"])
        .ok();
    let skewed = |g: &Got| g.ts - g.scheduled >= 3_600_000;
    until_all(
        &mut sub,
        &all,
        "the rule on both agents",
        Duration::from_secs(30),
        skewed,
    )
    .await;

    c.agents[0].kill();
    wait_status(
        &c,
        "every device on the survivor",
        Duration::from_secs(45),
        |s| {
            s["agents"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|a| a["alive"] == true && a["devices"].as_u64() == Some(20))
            })
        },
    )
    .await;
    // Drain what the killed agent sent, then every device (the moved ones included) still
    // reports the skewed clock.
    let _ = receive(&mut sub, Duration::from_secs(1)).await;
    let seen = receive(&mut sub, Duration::from_secs(3)).await;
    for id in &all {
        let mine: Vec<&Got> = seen.iter().filter(|g| &g.id == id).collect();
        assert!(!mine.is_empty(), "{id} silent after the failover");
        assert!(mine.iter().all(|g| skewed(g)), "{id}: {mine:?}");
    }
    let shown = c.ctl(&["network", "show", "fail", "--json"]).ok().json();
    assert_eq!(shown["rules"][0]["origin"], "runtime", "{shown}");
    assert_eq!(shown["rules"][0]["live"], true, "{shown}");
    c.ctl(&["network", "clear", "fail"]).ok();
    until_all(
        &mut sub,
        &all,
        "the rule cleared",
        Duration::from_secs(30),
        |g| g.ts - g.scheduled < 60_000,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_network_input_names_the_field() {
    let mut c = Cluster::new("net-bad");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    c.ctl(&["deploy-fleet", "bad", "--count", "1", "--sink", "nats"])
        .ok();
    for (args, needle) in [
        (vec!["--loss", "150%"], "--loss"),
        (vec!["--latency=-5s"], "--latency"),
        (vec!["--cohort", "150%"], "--cohort"),
        (vec!["--preset", "dialup"], "preset"),
        (vec!["--cohort", "10%"], "give at least one impairment"),
    ] {
        let mut a = vec!["network", "set", "bad"];
        a.extend(args.iter().copied());
        let out = c.ctl(&a);
        assert_ne!(out.code, 0, "{args:?} accepted");
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
    }
    let out = c.ctl(&["network", "set", "nosuch", "--loss", "1%"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("no fleet named nosuch"),
        "{}",
        out.stderr
    );

    let dir = tempfile::tempdir().expect("tempdir");
    for (section, needle) in [
        (
            "  default: {loss: {probability: 1.5}}\n",
            "network.default.loss.probability",
        ),
        (
            "  cohorts:\n    - {cohort: 150%, loss: {probability: 0.1}}\n",
            "150%",
        ),
        ("  default: {jitterz: {}}\n", "jitterz"),
        (
            "  timeline:\n    - {at: 1m, for: -5s, loss: {probability: 0.5}}\n",
            "for",
        ),
    ] {
        let file = write_file(
            &dir,
            "bad.yaml",
            &format!("name: badfile\ncount: 1\nnetwork:\n{section}"),
        );
        let out = c.ctl(&["deploy-fleet", "--file", &file]);
        assert_ne!(out.code, 0, "{section} accepted");
        assert!(out.stderr.contains(needle), "{section}: {}", out.stderr);
    }
    // Nothing was changed by the refused commands.
    let shown = c.ctl(&["network", "show", "bad", "--json"]).ok().json();
    assert_eq!(shown["rules"].as_array().map(Vec::len), Some(0), "{shown}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_offline_cohort_buffers_and_flushes_with_original_seq_and_ts() {
    let mut c = Cluster::new("net-off");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let client = c.client().await;
    let mut sub = client.subscribe("netoff.>").await.expect("subscribe");
    let mut events = client
        .subscribe(c.namespace().event_all())
        .await
        .expect("events");
    client.flush().await.expect("flush");
    c.ctl(&[
        "deploy-fleet",
        "sf",
        "--count",
        "10",
        "--interval",
        "100ms",
        "--sink",
        "nats",
        "--subject",
        "netoff.{device_id}",
    ])
    .ok();
    let all = ids("sf", 10);
    until_all(
        &mut sub,
        &all,
        "every device sending",
        Duration::from_secs(30),
        |_| true,
    )
    .await;
    // A second of normal traffic, so that every device's gap lies inside what is seen.
    let mut seen = receive(&mut sub, Duration::from_secs(1)).await;
    // Devices 0..5 offline for 4 s, keeping their 10 newest messages (~40 are produced).
    c.ctl(&[
        "network",
        "set",
        "sf",
        "--cohort",
        "0..5",
        "--offline",
        "--for",
        "4s",
        "--buffer",
        "10",
    ])
    .ok();
    seen.extend(receive(&mut sub, Duration::from_secs(8)).await);
    let mut per: BTreeMap<String, Vec<&Got>> = BTreeMap::new();
    for g in &seen {
        per.entry(g.id.clone()).or_default().push(g);
    }
    let mut gaps = 0;
    for (id, msgs) in &per {
        let index: u64 = id.rsplit('-').next().unwrap().parse().unwrap();
        // In order, never twice.
        assert!(
            msgs.windows(2).all(|w| w[1].seq > w[0].seq),
            "{id}: out of order"
        );
        let missing = msgs
            .windows(2)
            .map(|w| w[1].seq - w[0].seq - 1)
            .sum::<u64>();
        // Everything keeps its original ts: the true clock at its slot.
        assert!(
            msgs.iter()
                .all(|g| (0..1_000).contains(&(g.ts - g.scheduled))),
            "{id}"
        );
        let late = msgs.iter().filter(|g| g.at - g.ts > 150).count();
        if index < 5 {
            // One run of lost messages (the oldest), then the 10 kept ones arrive late.
            assert!(
                msgs.windows(2).filter(|w| w[1].seq != w[0].seq + 1).count() == 1,
                "{id}: {:?} {}",
                msgs.iter()
                    .map(|g| (g.seq, g.at - g.ts))
                    .collect::<Vec<_>>(),
                c.ctl(&["report", "sf", "--json"]).ok().stdout
            );
            assert!(late >= 5, "{id}: {late} late messages");
            gaps += missing;
        } else {
            assert_eq!(missing, 0, "{id}");
        }
    }
    // Events say which devices went offline and came back (and that the rule was set, and
    // that it expired).
    let mut count: BTreeMap<String, u64> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while count.get("partition_ended") != Some(&5) || count.get("network_changed") != Some(&2) {
        let m = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| panic!("partition events: {count:?}"))
            .expect("event");
        let e: Value = serde_json::from_slice(&m.payload).expect("event JSON");
        let kind = e["event"].as_str().unwrap_or_default().to_string();
        *count.entry(kind).or_default() += e["devices"].as_u64().unwrap_or(1);
    }
    assert_eq!(count.get("partition_started"), Some(&5), "{count:?}");
    assert_eq!(count.get("network_changed"), Some(&2), "{count:?}");
    // The agent lost exactly the messages missing at the subscriber, and says so.
    let net = wait_report(&c, "sf", |n| n["partitions_ended"] == 5).await;
    assert_eq!(net["partitions_started"], 5, "{net}");
    assert_eq!(net["buffer_dropped"].as_u64(), Some(gaps), "{net}");
    // Every message kept was sent on return, except those a full buffer let go.
    assert_eq!(
        net["flushed"].as_u64().unwrap() + gaps,
        net["buffered"].as_u64().unwrap(),
        "{net}"
    );
}

/// Polls `report --json` until the fleet's network figures satisfy `ok`.
async fn wait_report(c: &Cluster, fleet: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = c.ctl(&["report", fleet, "--json"]).ok().json();
        let net = r["fleets"][0]["network"].clone();
        if ok(&net) {
            return net;
        }
        assert!(tokio::time::Instant::now() < deadline, "report: {r}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
