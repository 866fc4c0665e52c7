//! Connection-level network faults on the mqtt sink, end to end, seen by the broker: a
//! partition closes (or stalls) a cohort's connections and they reconnect, with their
//! buffered messages delivered afterwards in order and with their original seq and ts;
//! flapping makes as many connects at the broker as its distributions say. The broker is
//! a real mosquitto whose own log is read; the subscriber is rumqttc.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use pluribus_testkit::Mosquitto;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use support::*;
use tokio::sync::mpsc;

/// mosquitto keeps every message for the test's subscriber, however fast a flush comes.
const BROKER_EXTRA: &str = "max_queued_messages 1000000\nmax_queued_bytes 0\n";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// A rumqttc subscriber: what arrives, in order, with when it arrived.
struct Sub {
    rx: mpsc::UnboundedReceiver<(Bytes, i64)>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn subscribe(port: u16, filter: &str) -> Sub {
    let mut opts = MqttOptions::new(
        format!("test-sub-{}", std::process::id()),
        "127.0.0.1",
        port,
    );
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(opts, 10_000);
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let filter = filter.to_string();
    let task = tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.try_subscribe(filter.clone(), QoS::AtMostOnce);
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((p.payload.clone(), now_ms()));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .expect("SUBACK within 10 s")
        .expect("subscriber alive");
    Sub { rx, task }
}

/// A telemetry message as received.
#[derive(Debug)]
struct Got {
    seq: u64,
    ts: i64,
    scheduled: i64,
    at: i64,
}

fn drain(sub: &mut Sub, per: &mut BTreeMap<String, Vec<Got>>) {
    while let Ok((p, at)) = sub.rx.try_recv() {
        let v: Value = serde_json::from_slice(&p).expect("telemetry JSON");
        per.entry(v["device_id"].as_str().expect("device_id").to_string())
            .or_default()
            .push(Got {
                seq: v["seq"].as_u64().expect("seq"),
                ts: v["ts"].as_i64().expect("ts"),
                scheduled: v["scheduled_ts"].as_i64().expect("scheduled_ts"),
                at,
            });
    }
}

/// Polls `report --json` until the fleet's network figures satisfy `ok`.
async fn wait_net(
    c: &Cluster,
    fleet: &str,
    timeout: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
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

/// How many times the broker's log says `what` about client `id` (`Client ID closed its
/// connection.` or `... as ID (p2, ...`).
fn count_in_log(log: &str, pattern: impl Fn(&str) -> bool) -> usize {
    log.lines().filter(|l| pattern(l)).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partitioned_cohort_disconnects_at_the_broker_reconnects_and_flushes_in_order() {
    let broker = Mosquitto::start_with_config(BROKER_EXTRA);
    let mut c = Cluster::new("netmq-part");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let mut sub = subscribe(broker.port(), "netpart/#").await;
    let client = c.client().await;
    let mut events = client
        .subscribe(c.namespace().event_all())
        .await
        .expect("events");
    client.flush().await.expect("flush");
    let dir = tempfile::tempdir().expect("tempdir");
    // 60 devices every 200 ms; 0..25 have their connections closed for 10 s, 25..50 stalled
    // (keepalive 2 s: mosquitto expires them after 3 s); each keeps its 30 newest messages
    // (about 50 are produced while cut off) and flushes them at 100/s once reconnected.
    let file = write_file(
        &dir,
        "part.yaml",
        &format!(
            "name: part\ncount: 60\nseed: 5\ndevice:\n  interval: 200ms\nsink:\n  type: mqtt\n  brokers: [{}]\n  topic: netpart/{{device_id}}\n  keepalive: 2s\n  reconnect: {{min: 200ms, max: 1s}}\nnetwork:\n  timeline:\n    - {{at: 4s, for: 10s, cohort: 0..25, partition: {{buffer: 30, flush_rate: 100, link: close}}}}\n    - {{at: 4s, for: 10s, cohort: 25..50, partition: {{buffer: 30, flush_rate: 100, link: stall}}}}\n",
            broker.url()
        ),
    );
    c.ctl(&["deploy-fleet", "--file", &file]).ok();
    // Every cut-off device came back and flushed (the fleet starts 2 s after deploy).
    let net = wait_net(&c, "part", Duration::from_secs(60), |n| {
        n["partitions_ended"] == 50
    })
    .await;
    // Two more seconds of traffic, so each device's last flushed message has successors.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut per = BTreeMap::new();
    drain(&mut sub, &mut per);
    let log = broker.log();
    let mut gaps = 0;
    for i in 0..60u64 {
        let id = format!("part-{i:05}");
        let connects = count_in_log(&log, |l| {
            l.contains("New client connected") && l.contains(&format!(" as {id} "))
        });
        let closed = count_in_log(&log, |l| {
            l.contains(&format!("Client {id} closed its connection."))
        });
        let expired = count_in_log(&log, |l| {
            l.contains(&format!("Client {id} has exceeded timeout, disconnecting."))
        });
        match i {
            0..25 => assert!(
                closed == 1 && expired == 0 && connects == 2,
                "{id}: closed {closed}, expired {expired}, connects {connects}"
            ),
            25..50 => assert!(
                expired == 1 && closed == 0 && connects == 2,
                "{id}: closed {closed}, expired {expired}, connects {connects}"
            ),
            _ => assert!(
                closed + expired == 0 && connects == 1,
                "{id}: closed {closed}, expired {expired}, connects {connects}"
            ),
        }
        let msgs = per
            .get(&id)
            .unwrap_or_else(|| panic!("{id}: nothing received"));
        // In order, never twice, each with the ts of its own slot.
        assert!(
            msgs.windows(2).all(|w| w[1].seq > w[0].seq),
            "{id}: out of order (seq, arrival ms after the first, ts - scheduled): {:?}\n{}",
            msgs.iter()
                .map(|g| (g.seq, g.at - msgs[0].at, g.ts - g.scheduled))
                .collect::<Vec<_>>(),
            log.lines()
                .filter(|l| l.contains(&format!(" {id} ")) || l.contains(&format!(" {id}.")))
                .filter(|l| !l.contains("PUBLISH"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(
            msgs.iter()
                .all(|g| (0..1_000).contains(&(g.ts - g.scheduled))),
            "{id}: ts moved"
        );
        let runs: Vec<u64> = msgs
            .windows(2)
            .map(|w| w[1].seq - w[0].seq - 1)
            .filter(|g| *g > 0)
            .collect();
        if i < 50 {
            // One run of lost messages (the oldest of the partition), then the 30 kept ones,
            // sent once the device had reconnected: late.
            assert_eq!(runs.len(), 1, "{id}: gaps {runs:?}");
            let late = msgs.iter().filter(|g| g.at - g.ts > 150).count();
            assert!(late >= 20, "{id}: only {late} messages arrived late");
            gaps += runs[0];
        } else {
            assert!(runs.is_empty(), "{id}: gaps {runs:?}");
        }
    }
    // The agent counted exactly what the subscriber missed, and every connection it cut.
    assert_eq!(net["buffer_dropped"].as_u64(), Some(gaps), "{net}");
    assert_eq!(
        net["flushed"].as_u64().unwrap() + gaps,
        net["buffered"].as_u64().unwrap(),
        "{net}"
    );
    assert_eq!(net["disconnects"], 50, "{net}");
    assert_eq!(net["partitions_started"], 50, "{net}");
    // Events: the timeline's rules started and ended (network_changed, from one agent),
    // and the 50 devices went offline and came back (partition_started/ended).
    let mut changes: Vec<String> = Vec::new();
    let mut devices: BTreeMap<String, u64> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while changes.len() < 4 || devices.get("partition_ended") != Some(&50) {
        let m = tokio::time::timeout_at(deadline, futures::StreamExt::next(&mut events))
            .await
            .unwrap_or_else(|_| panic!("events so far: {changes:?} {devices:?}"))
            .expect("event");
        let e: Value = serde_json::from_slice(&m.payload).expect("event JSON");
        match e["event"].as_str().unwrap_or_default() {
            "network_changed" => changes.push(e["change"].as_str().unwrap_or_default().to_string()),
            k @ ("partition_started" | "partition_ended") => {
                *devices.entry(k.to_string()).or_default() += e["devices"].as_u64().unwrap_or(0)
            }
            _ => {}
        }
    }
    assert_eq!(devices.get("partition_started"), Some(&50), "{devices:?}");
    for (rule, verb) in [
        ("timeline[0]", "started"),
        ("timeline[1]", "started"),
        ("timeline[0]", "ended"),
        ("timeline[1]", "ended"),
    ] {
        assert_eq!(
            changes
                .iter()
                .filter(|c| c.starts_with(&format!("{rule} {verb}")))
                .count(),
            1,
            "{rule} {verb}: {changes:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn flapping_devices_connect_as_often_as_their_distributions_say() {
    let broker = Mosquitto::start_with_config(BROKER_EXTRA);
    let mut c = Cluster::new("netmq-flap");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Up 2 s ± 0.5 s, down 1 s ± 0.25 s (normal); a reconnect every 100 ms while down.
    let (up, up_sd, down, down_sd) = (2.0f64, 0.5f64, 1.0f64, 0.25f64);
    let file = write_file(
        &dir,
        "flap.yaml",
        &format!(
            "name: flap\ncount: 100\nseed: 11\ndevice:\n  interval: 100ms\nsink:\n  type: mqtt\n  brokers: [{}]\n  topic: netflap/{{device_id}}\n  command_topic: ''\n  reconnect: {{min: 100ms, max: 100ms, jitter: none}}\nnetwork:\n  default:\n    flap: {{uptime: {{mean: 2s, deviation: 500ms}}, downtime: {{mean: 1s, deviation: 250ms}}}}\n",
            broker.url()
        ),
    );
    c.ctl(&["deploy-fleet", "--file", &file]).ok();
    wait_net(&c, "flap", Duration::from_secs(30), |n| {
        n["partitions_ended"].as_u64() > Some(150)
    })
    .await;
    // Devices start at random points of their cycles; past the first cycle or so (when
    // the devices that started down are back), count the broker's connects over
    // 15 s, stamping each log line when it appears (polled every 20 ms).
    let window = Duration::from_secs(15);
    let is_connect = |l: &&&str| l.contains("New client connected") && l.contains(" as flap-");
    let mut seen_lines = broker.log().lines().count();
    let start = tokio::time::Instant::now();
    let mut connects = 0usize;
    while start.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let log = broker.log();
        let lines: Vec<&str> = log.lines().collect();
        connects += lines[seen_lines.min(lines.len())..]
            .iter()
            .filter(is_connect)
            .count();
        seen_lines = lines.len();
    }
    // One connect per cycle. Expected count and its spread over 100 independent devices:
    // a renewal process with cycle mean mu and variance var has about W/mu events in W,
    // with variance W var / mu^3, plus at most 1/4 from the phase at the window's start.
    let w = window.as_secs_f64();
    let mu = up + down;
    let var = up_sd.powi(2) + down_sd.powi(2);
    let expected = 100.0 * w / mu;
    let sd = (100.0 * (w * var / mu.powi(3) + 0.25)).sqrt();
    let tol = 4.0 * sd + 10.0;
    eprintln!("flapping: {connects} connects in {w} s, expected {expected:.0} ± {tol:.0}");
    assert!(
        (connects as f64 - expected).abs() <= tol,
        "{connects} connects at the broker in {w} s; expected {expected:.0} ± {tol:.0}"
    );
    // Without downtime (2 s cycles) it would be 750, without flapping 0: both far outside.
    let net = c.ctl(&["report", "flap", "--json"]).ok().json();
    assert!(
        net["fleets"][0]["network"]["partitions_started"].as_u64() > Some(100),
        "{net}"
    );
}
