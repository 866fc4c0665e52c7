//! A control plane that does not trust what is written to it: telemetry subjects that would
//! reach NATS system subjects, inboxes or Pluribus's own subjects are refused by pluribusctl
//! and by the agents (for records any client may have written), absurd records are refused
//! before anything is allocated, and a foreign write on a lease key does not pin its shard.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use futures::StreamExt;
use pluribus_common::messages::{Event, EventKind};
use pluribus_common::record::{FleetRecord, RecordKind};
use pluribus_common::spec::{FleetSpec, SinkSpec};
use pluribus_common::time::now_ms;
use pluribus_common::wire;
use support::{fleet, wait_status, Cluster, Pki};

/// The fleets bucket of the cluster's namespace, opened by a plain client (not pluribusctl).
async fn raw_kv(c: &Cluster, bucket: String) -> async_nats::jetstream::kv::Store {
    let js = async_nats::jetstream::new(c.client().await);
    js.get_key_value(bucket).await.expect("bucket exists")
}

#[tokio::test(flavor = "multi_thread")]
async fn pluribusctl_refuses_subjects_that_reach_the_control_plane() {
    let c = Cluster::new("hostile-ctl");
    let ns = c.namespace();
    let lease_subject = format!("$KV.{}.victim.0", ns.leases_bucket());
    for subject in [
        lease_subject.as_str(),
        "pluribus.v1.agents.cmd",
        "hostile-ctl.pluribus.v1.work",
        "_INBOX.stolen",
    ] {
        let out = c.ctl(&[
            "deploy-fleet",
            "evil",
            "--count",
            "1",
            "--sink",
            "nats",
            "--subject",
            subject,
            "--no-wait",
        ]);
        assert_ne!(out.code, 0, "{subject} was accepted: {}", out.stdout);
        assert!(
            out.stderr.contains("sink.subject") && out.stderr.contains("--subject"),
            "{subject}: {}",
            out.stderr
        );
    }
    // Nothing was written.
    let out = c.ctl(&["status", "--json"]);
    assert!(out.ok().json()["fleets"]
        .as_array()
        .is_none_or(|f| f.is_empty()));
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_refuse_unsafe_records_written_by_other_clients() {
    let mut c = Cluster::new("hostile-rec");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let ns = c.namespace();
    let client = c.client().await;
    let mut events = client
        .subscribe(ns.event("fleet_refused"))
        .await
        .expect("subscribe");
    let mut commands = client.subscribe(ns.agents_cmd()).await.expect("subscribe");
    let fleets = raw_kv(&c, ns.fleets_bucket()).await;

    // A record that would publish telemetry on the agents' command subject.
    let mut spec = FleetSpec::counted("evil", 2);
    spec.sink = SinkSpec::nats(Some(&ns.agents_cmd()));
    let evil = FleetRecord::new(RecordKind::Fleet, spec, now_ms(), Duration::ZERO);
    fleets
        .put("evil", wire::encode(&evil))
        .await
        .expect("put evil");
    // And one absurd enough to exhaust an agent that believed it.
    let mut spec = FleetSpec::counted("huge", 5);
    spec.shard_size = 1;
    let mut huge = FleetRecord::new(RecordKind::Fleet, spec, now_ms(), Duration::ZERO);
    huge.spec.count = Some(u64::MAX / 2);
    fleets
        .put("huge", wire::encode(&huge))
        .await
        .expect("put huge");

    let mut refused = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while refused.len() < 2 {
        let msg = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| panic!("fleet_refused events seen: {refused:?}"))
            .expect("subscription open");
        let e: Event = wire::decode(&msg.payload).expect("an event");
        if let EventKind::FleetRefused { fleet, reason, .. } = e.kind {
            refused.push((fleet, reason));
        }
    }
    refused.sort();
    assert_eq!(refused[0].0, "evil");
    assert!(refused[0].1.contains("sink.subject"), "{refused:?}");
    assert_eq!(refused[1].0, "huge");
    assert!(refused[1].1.contains("count"), "{refused:?}");

    // status says why nothing runs.
    let s = wait_status(&c, "the refusal in status", Duration::from_secs(15), |s| {
        fleet(s, "evil")["reason"]
            .as_str()
            .is_some_and(|r| r.contains("refused its record") && r.contains("sink.subject"))
    })
    .await;
    assert_eq!(fleet(&s, "evil")["running"], 0, "{s}");

    // Nothing of the evil fleet reached the agents' command subject (no pluribusctl runs
    // meanwhile, so nothing else publishes there)...
    let stray = tokio::time::timeout(Duration::from_secs(3), commands.next()).await;
    assert!(
        stray.is_err(),
        "a message on {}: {stray:?}",
        ns.agents_cmd()
    );
    // ... and the agent still works.
    c.ctl(&["deploy-fleet", "good", "--count", "3", "--shard-size", "2"])
        .ok();
    // One event per record revision, not one per pass.
    let more = tokio::time::timeout(Duration::from_secs(3), events.next()).await;
    assert!(more.is_err(), "a second fleet_refused event: {more:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_write_on_a_lease_key_does_not_pin_the_shard() {
    let mut c = Cluster::new("hostile-lease");
    c.agent("a1", &["--lease-ttl", "3s"]);
    c.agent("a2", &["--lease-ttl", "3s"]);
    c.wait_agents(2).await;
    let ns = c.namespace();
    // A plain publish on the lease's subject: no TTL, not a lease.
    let client = c.client().await;
    client
        .publish(
            format!("$KV.{}.victim.0", ns.leases_bucket()),
            "not a lease".into(),
        )
        .await
        .expect("publish");
    client.flush().await.expect("flush");
    c.ctl(&["deploy-fleet", "victim", "--count", "4", "--no-wait"])
        .ok();
    wait_status(
        &c,
        "victim running despite the foreign lease",
        Duration::from_secs(30),
        |s| fleet(s, "victim")["running"] == 4,
    )
    .await;
    for a in &c.agents {
        let log = a.stderr();
        let said = log.matches("holds no valid lease").count();
        assert!(said <= 1, "said {said} times:\n{log}");
    }
    assert!(
        c.agents
            .iter()
            .any(|a| a.stderr().contains("holds no valid lease")),
        "nobody noticed the foreign lease"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shards_that_cannot_be_prepared_stop_circulating() {
    let mut c = Cluster::new("hostile-offers");
    c.agent("a1", &[]);
    c.agent("a2", &[]);
    c.wait_agents(2).await;
    let ns = c.namespace();
    let client = c.client().await;
    // Every offer, from a subscriber outside the agents' queue group.
    let mut work = client.subscribe(ns.work()).await.expect("subscribe");
    client.flush().await.expect("flush");
    let started = tokio::time::Instant::now();
    // Four shards whose password is set on neither agent.
    c.ctl(&[
        "deploy-fleet",
        "locked",
        "--count",
        "8",
        "--shard-size",
        "2",
        "--sink",
        "mqtt",
        "--broker",
        "mqtt://127.0.0.1:1",
        "--username",
        "u",
        "--password",
        "env:PLURIBUS_TEST_SECRET_SET_NOWHERE",
        "--no-wait",
    ])
    .ok();
    let window = Duration::from_secs(25);
    let mut offers = 0u64;
    let end = started + window;
    while let Ok(Some(_)) = tokio::time::timeout_at(end, work.next()).await {
        offers += 1;
    }
    let per_shard_s = offers as f64 / 4.0 / window.as_secs_f64();
    assert!(
        per_shard_s < 1.0,
        "{offers} offers in {window:?} for 4 shards ({per_shard_s:.2} per shard per second)"
    );
    // ... and status still says why the devices are pending.
    let s = c.status();
    let reason = fleet(&s, "locked")["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("cannot run it") && reason.contains("PLURIBUS_TEST_SECRET_SET_NOWHERE"),
        "{s}"
    );
    assert_eq!(fleet(&s, "locked")["running"], 0, "{s}");
    eprintln!("{offers} offers in {window:?} for 4 shards ({per_shard_s:.2} per shard per second)");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_device_commands_is_answered_and_does_not_delay_telemetry() {
    let mut c = Cluster::new("hostile-cmds");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let ns = c.namespace();
    let client = c.client().await;
    let mut telemetry = client.subscribe("flood.t.>").await.expect("subscribe");
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(format!("{inbox}.>"))
        .await
        .expect("subscribe");
    c.ctl(&[
        "deploy-fleet",
        "flood",
        "--count",
        "10",
        "--interval",
        "100ms",
        "--sink",
        "nats",
        "--subject",
        "flood.t.{device_id}",
    ])
    .ok();
    support::wait_sending(&mut telemetry, 10, "the fleet", Duration::from_secs(20)).await;

    // 10,000 commands a second at one device of the shard, for 4 s.
    let window = Duration::from_secs(4);
    let flooder = {
        let (client, subject, inbox) = (
            client.clone(),
            ns.device_cmd("flood", "flood-00003"),
            inbox.clone(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let end = tokio::time::Instant::now() + window;
            let mut sent = 0u64;
            while tokio::time::Instant::now() < end {
                tick.tick().await;
                for _ in 0..100 {
                    client
                        .publish_with_reply(
                            subject.clone(),
                            format!("{inbox}.{sent}"),
                            r#"{"set":{"temperature":30}}"#.into(),
                        )
                        .await
                        .expect("publish");
                    sent += 1;
                }
            }
            client.flush().await.expect("flush");
            sent
        })
    };
    let seen = support::collect(&mut telemetry, window).await;
    let sent = flooder.await.expect("flooder");

    // Telemetry kept its schedule: 10 devices × 40 slots, give or take one slot at each
    // end of the window per device, and no gaps.
    let total: usize = seen.seqs.values().map(Vec::len).sum();
    assert!(seen.gaps().is_empty(), "gaps: {:?}", seen.gaps());
    assert!(
        total >= 390,
        "{total} telemetry messages during the flood, 400 scheduled"
    );

    // Every command was answered: done, or refused as busy (never left to time out).
    let (mut ok, mut busy) = (0u64, 0u64);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while ok + busy < sent {
        let Ok(Some(msg)) = tokio::time::timeout_at(deadline, replies.next()).await else {
            panic!(
                "{} of {sent} commands answered ({ok} done, {busy} busy)",
                ok + busy
            );
        };
        let v: serde_json::Value = serde_json::from_slice(&msg.payload).expect("json");
        match v["error"]["code"].as_str() {
            None => ok += 1,
            Some("busy") => busy += 1,
            Some(other) => panic!("unexpected error {other}: {v}"),
        }
    }
    eprintln!(
        "{sent} commands: {ok} done, {busy} busy; {total} telemetry messages of 400 scheduled"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_by_reference_are_confined_to_what_the_agent_allows() {
    let mut c = Cluster::new("hostile-secrets");
    let secrets = tempfile::tempdir().expect("tempdir");
    let dir = secrets.path().display().to_string();
    c.agent("a1", &["--secrets-dir", &dir]);
    c.wait_agents(1).await;
    let deploy = |name: &str, password: &str| {
        c.ctl(&[
            "deploy-fleet",
            name,
            "--count",
            "1",
            "--sink",
            "mqtt",
            "--broker",
            "mqtt://127.0.0.1:1",
            "--username",
            "u",
            "--password",
            password,
            "--no-wait",
        ])
        .ok();
    };
    // Anything the agent's user can read, and any variable of its environment: refused,
    // naming the flag that would allow it.
    deploy("f-outside", "file:/etc/hostname");
    deploy("f-zero", "file:/dev/zero");
    deploy("e-path", "env:PATH");
    deploy("e-nats", "env:PLURIBUS_NATS_PASSWORD");
    let s = wait_status(
        &c,
        "every refusal in status",
        Duration::from_secs(20),
        |s| {
            ["f-outside", "f-zero", "e-path", "e-nats"]
                .iter()
                .all(|f| fleet(s, f)["reason"].is_string())
        },
    )
    .await;
    let reason = |f: &str| {
        fleet(&s, f)["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(reason("f-outside").contains("--secrets-dir"), "{s}");
    assert!(reason("f-zero").contains("--secrets-dir"), "{s}");
    assert!(reason("e-path").contains("--secrets-env-prefix"), "{s}");
    assert!(reason("e-nats").contains("own NATS credentials"), "{s}");
    // A file under the directory works (devices run; the broker is not there, so they
    // keep connecting, which is enough to show the secret was resolved).
    std::fs::write(secrets.path().join("pw"), "s3cret\n").expect("write");
    deploy("ok", "file:pw");
    wait_status(&c, "ok running", Duration::from_secs(20), |s| {
        fleet(s, "ok")["running"] == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_files_of_a_spec_are_confined_like_file_secrets() {
    let mut c = Cluster::new("hostile-tls");
    let secrets = tempfile::tempdir().expect("tempdir");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let ca = Pki::new().ca;
    std::fs::write(secrets.path().join("ca.pem"), &ca).expect("write");
    let outside = elsewhere.path().join("ca.pem");
    std::fs::write(&outside, &ca).expect("write");
    let outside = outside.display().to_string();
    let dir = secrets.path().display().to_string();
    c.agent("a1", &["--secrets-dir", &dir]);
    c.wait_agents(1).await;
    let deploy = |name: &str, sink: &[&str]| {
        let mut args = vec!["deploy-fleet", name, "--count", "1", "--no-wait"];
        args.extend_from_slice(sink);
        c.ctl(&args).ok();
    };
    let mqtt = |name: &str, ca: &str| {
        deploy(
            name,
            &[
                "--sink",
                "mqtt",
                "--broker",
                "mqtts://127.0.0.1:1",
                "--ca",
                ca,
            ],
        )
    };
    let leak = outside.as_str();
    // A readable PEM outside the directory, a device file: refused, naming the field and
    // the agent flag, for every sink that takes TLS files.
    mqtt("m-outside", leak);
    mqtt("m-zero", "/dev/zero");
    deploy(
        "h-outside",
        &[
            "--sink",
            "http",
            "--url",
            "https://127.0.0.1:1/x",
            "--http-ca",
            leak,
        ],
    );
    deploy(
        "x-outside",
        &[
            "--sink",
            "fix",
            "--fix-host",
            "tls://127.0.0.1:1",
            "--target-comp-id",
            "GW",
            "--fix-ca",
            leak,
        ],
    );
    // The same file under --secrets-dir, by name: the devices run.
    mqtt("m-ok", "ca.pem");
    let refused = ["m-outside", "m-zero", "h-outside", "x-outside"];
    let s = wait_status(
        &c,
        "refusals and m-ok running",
        Duration::from_secs(30),
        |s| {
            refused.iter().all(|f| fleet(s, f)["reason"].is_string())
                && fleet(s, "m-ok")["running"] == 1
        },
    )
    .await;
    for f in refused {
        let r = fleet(&s, f)["reason"].as_str().unwrap_or_default();
        assert!(
            r.contains("sink.ca") && r.contains("--secrets-dir"),
            "{f}: {r}"
        );
        assert_eq!(fleet(&s, f)["running"], 0, "{f}");
    }
    assert!(c.agents[0].is_running(), "the agent keeps running");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_custom_sinks_subjects_are_checked_by_pluribusctl_and_by_the_agents() {
    let mut c = Cluster::new("hostile-custom");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let ns = c.namespace();
    // pluribusctl: a fleet file whose custom sink would publish on the work subject.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = support::write_file(
        &dir,
        "agg.yaml",
        &format!(
            "name: agg\ncount: 2\nsink:\n  type: aggregator\n  reply_subject: {}\n",
            ns.work()
        ),
    );
    let out = c.ctl(&["deploy-fleet", "--file", &file]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stderr.contains("sink.reply_subject") && out.stderr.contains("control subjects"),
        "{}",
        out.stderr
    );
    // The agent: the same sink in a record another client wrote is refused, not run.
    let mut events = c
        .client()
        .await
        .subscribe(ns.event("fleet_refused"))
        .await
        .expect("subscribe");
    let mut spec = FleetSpec::counted("agg", 2);
    spec.sink = SinkSpec {
        kind: "aggregator".into(),
        options: [(
            "subject".to_string(),
            serde_json::Value::from(format!("$KV.{}.victim.0", ns.leases_bucket())),
        )]
        .into_iter()
        .collect(),
    };
    let record = FleetRecord::new(RecordKind::Fleet, spec, now_ms(), Duration::ZERO);
    raw_kv(&c, ns.fleets_bucket())
        .await
        .put("agg", wire::encode(&record))
        .await
        .expect("put");
    let reason = loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .expect("a fleet_refused event")
            .expect("subscription open");
        let e: Event = wire::decode(&msg.payload).expect("an event");
        if let EventKind::FleetRefused { fleet, reason, .. } = e.kind {
            if fleet == "agg" {
                break reason;
            }
        }
    };
    assert!(
        reason.contains("sink.subject") && reason.contains("NATS system subjects"),
        "{reason}"
    );
    let s = wait_status(&c, "the refusal in status", Duration::from_secs(15), |s| {
        fleet(s, "agg")["reason"]
            .as_str()
            .is_some_and(|r| r.contains("sink.subject"))
    })
    .await;
    assert_eq!(fleet(&s, "agg")["running"], 0, "{s}");
}
