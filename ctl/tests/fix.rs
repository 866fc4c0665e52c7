//! The fix sink end to end: a real QuickFIX acceptor (testkit, the quickfix2 binding), real
//! agents, pluribusctl. QuickFIX validates every message itself (BodyLength, CheckSum,
//! MsgSeqNum, the FIX 4.4 data dictionary) and would answer a bad one with a Reject or a
//! ResendRequest, which its event log shows. Readiness is awaited, never slept.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use pluribus_testkit::{wait_until, FixAcceptor};
use serde_json::Value;
use support::*;

/// SenderCompIDs of a fleet's devices (`{fleet}-{index:05}`), with room either side.
fn clients(fleet: &str, count: u64) -> Vec<String> {
    (0..=count).map(|i| format!("{fleet}-{i:05}")).collect()
}

fn deploy(c: &Cluster, fleet: &str, count: &str, a: &FixAcceptor, extra: &[&str]) {
    let host = a.host();
    let mut args = vec![
        "deploy-fleet",
        fleet,
        "--count",
        count,
        "--sink",
        "fix",
        "--fix-host",
        &host,
        "--heartbeat",
        "5s",
    ];
    args.extend_from_slice(extra);
    c.ctl(&args).ok();
}

/// The acceptor's events of one kind (`ev`).
fn events(a: &FixAcceptor, ev: &str) -> Vec<Value> {
    a.events().into_iter().filter(|e| e["ev"] == ev).collect()
}

/// Clients that logged on (or off) with the acceptor so far, with how often.
fn count_by_client(a: &FixAcceptor, ev: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in events(a, ev) {
        *m.entry(e["client"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    m
}

async fn wait_acceptor(a: &FixAcceptor, what: &str, check: impl Fn(&FixAcceptor) -> bool) {
    let t = Duration::from_secs(30);
    wait_until(what, t, || std::future::ready(check(a))).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn devices_trade_with_a_quickfix_acceptor_survive_its_restart_and_log_out() {
    let mut acceptor = FixAcceptor::start(&clients("fx", 4));
    let mut c = Cluster::new("fix-e2e");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    deploy(
        &c,
        "fx",
        "4",
        &acceptor,
        &[
            "--target-comp-id",
            FixAcceptor::COMP_ID,
            "--interval",
            "200ms",
        ],
    );

    // Every device logs on with its own SenderCompID, orders flow, ExecutionReports come
    // back and give the ack latency.
    let s = wait_status(&c, "4 sessions with acks", Duration::from_secs(30), |s| {
        let f = &s["connections"]["fx"];
        f["connected"] == 4
            && f["responses"]["exec_report"]
                .as_u64()
                .is_some_and(|n| n >= 20)
            && f["ack_latency_us"].is_array()
    })
    .await;
    let f = &s["connections"]["fx"];
    assert_eq!(f["publish_failed"], 0, "{f}");
    let logons = count_by_client(&acceptor, "logon");
    assert_eq!(logons.len(), 4, "{logons:?}");
    assert!(logons.keys().all(|k| k.starts_with("fx-")), "{logons:?}");

    // Each session's MsgSeqNum is gapless from the Logon's 1 on, every ClOrdID is unique,
    // and QuickFIX neither rejected anything nor asked for a resend.
    let received = events(&acceptor, "in");
    let mut seqs: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut ids = HashSet::new();
    for e in &received {
        assert_eq!(e["target"], FixAcceptor::COMP_ID);
        seqs.entry(e["client"].as_str().unwrap().to_string())
            .or_default()
            .push(e["seq"].as_u64().unwrap());
        if let Some(id) = e["clordid"].as_str() {
            assert!(ids.insert(id.to_string()), "ClOrdID {id} sent twice");
        }
    }
    for (client, s) in &seqs {
        let expected: Vec<u64> = (1..=s.len() as u64).collect();
        assert_eq!(s, &expected, "MsgSeqNum of {client}");
    }
    assert!(ids.len() >= 20, "{} orders", ids.len());
    let complaints: Vec<_> = events(&acceptor, "out")
        .into_iter()
        .filter(|e| e["type"] == "2" || e["type"] == "3" || e["type"] == "j")
        .collect();
    assert!(complaints.is_empty(), "QuickFIX complained: {complaints:?}");

    // The acceptor goes away: devices count refused logons; it comes back: every device
    // logs on again.
    acceptor.stop();
    wait_status(
        &c,
        "sessions lost, logons refused",
        Duration::from_secs(30),
        |s| {
            let f = &s["connections"]["fx"];
            f["connected"] == 0
                && f["connect_failures"]["refused"]
                    .as_u64()
                    .is_some_and(|n| n >= 4)
        },
    )
    .await;
    acceptor.start_again();
    wait_status(&c, "4 sessions again", Duration::from_secs(60), |s| {
        let f = &s["connections"]["fx"];
        f["connected"] == 4 && f["reconnects"].as_u64().is_some_and(|n| n >= 4)
    })
    .await;
    wait_acceptor(&acceptor, "every device logged on twice", |a| {
        let l = count_by_client(a, "logon");
        l.len() == 4 && l.values().all(|n| *n >= 2)
    })
    .await;

    // delete-fleet: each device sends Logout and the acceptor answers it.
    c.ctl(&["delete-fleet", "fx"]).ok();
    wait_acceptor(&acceptor, "a Logout from every device", |a| {
        let by: HashSet<String> = events(a, "in")
            .into_iter()
            .filter(|e| e["type"] == "5")
            .map(|e| e["client"].as_str().unwrap_or_default().to_string())
            .collect();
        by.len() == 4
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_logon_is_counted_with_the_acceptors_reason() {
    let acceptor = FixAcceptor::start_with(
        &clients("pw", 2)
            .into_iter()
            .chain(clients("tg", 2))
            .collect::<Vec<_>>(),
        Some("sesame"),
    );
    let mut c = Cluster::new("fix-refused");
    c.agent("a1", &[]);
    c.wait_agents(1).await;

    let client = c.client().await;
    let mut sub = client.subscribe(c.namespace().event_all()).await.unwrap();
    client.flush().await.unwrap();
    // A wrong TargetCompID: QuickFIX knows no such session and drops the connection.
    deploy(
        &c,
        "tg",
        "2",
        &acceptor,
        &["--target-comp-id", "NOT-THE-GATEWAY", "--no-wait"],
    );
    // A wrong password: QuickFIX answers the Logon with a Logout saying why.
    deploy(
        &c,
        "pw",
        "2",
        &acceptor,
        &[
            "--target-comp-id",
            FixAcceptor::COMP_ID,
            "--fix-password",
            "guess",
            "--no-wait",
        ],
    );
    let s = wait_status(
        &c,
        "logon failures with reasons",
        Duration::from_secs(30),
        |s| {
            let n = |fleet: &str, reason: &str| {
                s["connections"][fleet]["connect_failures"][reason]
                    .as_u64()
                    .unwrap_or(0)
            };
            // QuickFIX's Text for a Logon its application refused.
            n("tg", "closed by the acceptor") >= 2
                && n("pw", "logout: Rejected Logon Attempt: wrong password") >= 2
        },
    )
    .await;
    for fleet in ["tg", "pw"] {
        assert_eq!(s["connections"][fleet]["connected"], 0, "{s}");
    }
    assert!(
        events(&acceptor, "logon").is_empty(),
        "{:?}",
        acceptor.events()
    );
    // Each device's failure is an event that says what to check.
    let mut told = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while told.len() < 4 {
        let msg = tokio::time::timeout_at(deadline, futures::StreamExt::next(&mut sub))
            .await
            .unwrap_or_else(|_| panic!("device_failed events: only {told:?}"))
            .expect("subscription open");
        let e: Value = serde_json::from_slice(&msg.payload).expect("event JSON");
        if e["event"] != "device_failed" {
            continue;
        }
        let error = e["error"].as_str().unwrap_or_default();
        let device = e["device_id"].as_str().unwrap_or_default();
        if device.starts_with("tg-") {
            assert!(error.contains("target_comp_id"), "{e}");
        } else {
            assert!(error.contains("wrong password"), "{e}");
        }
        told.insert(device.to_string());
    }
    // The default view cuts the failures to fit 100 columns; --wide shows them whole.
    let text = c.ctl(&["status", "--wide"]);
    assert!(
        text.ok().stdout.contains("wrong password"),
        "{}",
        text.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_reset_a_resend_request_is_answered_with_a_gap_fill() {
    let mut acceptor = FixAcceptor::start(&clients("gf", 2));
    let mut c = Cluster::new("fix-gapfill");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    deploy(
        &c,
        "gf",
        "2",
        &acceptor,
        &[
            "--target-comp-id",
            FixAcceptor::COMP_ID,
            "--interval",
            "200ms",
            "--no-reset-seq-num",
        ],
    );
    wait_status(&c, "2 sessions trading", Duration::from_secs(30), |s| {
        let f = &s["connections"]["gf"];
        f["connected"] == 2
            && f["responses"]["exec_report"]
                .as_u64()
                .is_some_and(|n| n >= 4)
    })
    .await;

    // A restarted acceptor (its store in memory) expects MsgSeqNum 1, but the devices go
    // on from where they were: QuickFIX asks for the gap with a ResendRequest, and each
    // device fills it with a SequenceReset-GapFill instead of resending old orders.
    acceptor.stop();
    acceptor.start_again();
    wait_acceptor(&acceptor, "a GapFill from every device", |a| {
        let fills: HashSet<String> = events(a, "in")
            .into_iter()
            .filter(|e| e["type"] == "4" && e["possdup"] == "Y")
            .map(|e| e["client"].as_str().unwrap_or_default().to_string())
            .collect();
        fills.len() == 2
    })
    .await;
    let asked: HashSet<String> = events(&acceptor, "out")
        .into_iter()
        .filter(|e| e["type"] == "2")
        .map(|e| e["client"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(asked.len(), 2, "QuickFIX asked every device: {asked:?}");
    // Orders go on after the fill and QuickFIX takes them (an order after the last
    // ResendRequest of its session).
    wait_acceptor(&acceptor, "orders after the gap fill", |a| {
        let ev = a.events();
        ["gf-00000", "gf-00001", "gf-00002"]
            .iter()
            .filter(|client| {
                let fill = ev
                    .iter()
                    .rposition(|e| e["ev"] == "in" && e["type"] == "4" && e["client"] == **client);
                fill.is_some_and(|at| {
                    ev[at..]
                        .iter()
                        .any(|e| e["ev"] == "in" && e["type"] == "D" && e["client"] == **client)
                })
            })
            .count()
            == 2
    })
    .await;
    let rejects: Vec<_> = events(&acceptor, "out")
        .into_iter()
        .filter(|e| e["type"] == "3")
        .collect();
    assert!(rejects.is_empty(), "QuickFIX rejected: {rejects:?}");
}

/// A TLS front for the acceptor (the quickfix2 build has no SSL acceptor): terminates TLS
/// with `cert`/`key` on a free port and pipes each connection to `backend`. Returns the port.
async fn tls_front(cert: &str, key: &str, backend: u16) -> (u16, tokio::task::JoinHandle<()>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate PEM");
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key PEM");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("certificate and key");
    let tls = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tls = tls.clone();
            tokio::spawn(async move {
                let Ok(mut front) = tls.accept(tcp).await else {
                    return;
                };
                let Ok(mut back) = tokio::net::TcpStream::connect(("127.0.0.1", backend)).await
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut front, &mut back).await;
            });
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_over_tls_with_a_test_ca() {
    let acceptor = FixAcceptor::start(&clients("tl", 2));
    let Pki {
        ca,
        server: (cert, key),
        ..
    } = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_path = write_file(&dir, "ca.pem", &ca);
    let (port, front) = tls_front(&cert, &key, acceptor.port()).await;
    let mut c = Cluster::new("fix-tls");
    // TLS files are read from the agent's --secrets-dir only.
    let secrets = dir.path().display().to_string();
    c.agent("a1", &["--secrets-dir", &secrets]);
    c.wait_agents(1).await;
    let host = format!("tls://127.0.0.1:{port}");
    c.ctl(&[
        "deploy-fleet",
        "tl",
        "--count",
        "2",
        "--sink",
        "fix",
        "--fix-host",
        &host,
        "--target-comp-id",
        FixAcceptor::COMP_ID,
        "--fix-ca",
        &ca_path,
        "--interval",
        "200ms",
    ])
    .ok();
    wait_status(
        &c,
        "2 TLS sessions with acks",
        Duration::from_secs(30),
        |s| {
            let f = &s["connections"]["tl"];
            f["connected"] == 2
                && f["responses"]["exec_report"]
                    .as_u64()
                    .is_some_and(|n| n >= 4)
        },
    )
    .await;
    assert_eq!(count_by_client(&acceptor, "logon").len(), 2);
    front.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn devices_share_sessions_on_a_gateway_that_allows_few() {
    // 20 devices, 10 per session, shards of 10 over two agents: the acceptor knows two
    // SenderCompIDs only (and one spare).
    let sessions: Vec<String> = (0..3).map(|k| format!("mx-s{k}")).collect();
    let acceptor = FixAcceptor::start(&sessions);
    let mut c = Cluster::new("fix-shared");
    c.agent("a1", &[]);
    c.agent("a2", &[]);
    c.wait_agents(2).await;
    deploy(
        &c,
        "mx",
        "20",
        &acceptor,
        &[
            "--target-comp-id",
            FixAcceptor::COMP_ID,
            "--sender-comp-id",
            "{fleet}-s{index}",
            "--devices-per-session",
            "10",
            "--shard-size",
            "10",
            "--interval",
            "500ms",
        ],
    );
    let s = wait_status(&c, "2 sessions with acks", Duration::from_secs(30), |s| {
        let f = &s["connections"]["mx"];
        f["connected"] == 2
            && f["responses"]["exec_report"]
                .as_u64()
                .is_some_and(|n| n >= 60)
            && f["ack_latency_us"].is_array()
    })
    .await;
    assert_eq!(s["connections"]["mx"]["publish_failed"], 0, "{s}");
    // All 20 devices' orders arrive, each on its session (devices 0-9 on mx-s0, 10-19 on
    // mx-s1), named by SenderSubID and ClOrdID.
    wait_acceptor(&acceptor, "orders of all 20 devices", |a| {
        events(a, "in")
            .iter()
            .filter_map(|e| e["sub"].as_str())
            .collect::<HashSet<_>>()
            .len()
            == 20
    })
    .await;
    let logons = count_by_client(&acceptor, "logon");
    assert_eq!(
        logons,
        BTreeMap::from([("mx-s0".to_string(), 1), ("mx-s1".to_string(), 1)]),
        "one logon per session"
    );
    let mut seqs: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for e in events(&acceptor, "in") {
        let client = e["client"].as_str().unwrap().to_string();
        seqs.entry(client.clone())
            .or_default()
            .push(e["seq"].as_u64().unwrap());
        if e["type"] != "D" {
            continue;
        }
        let sub = e["sub"].as_str().expect("SenderSubID on every order");
        let index: u64 = sub.strip_prefix("mx-").unwrap().parse().unwrap();
        assert_eq!(client, format!("mx-s{}", index / 10), "{e}");
        let clordid = e["clordid"].as_str().unwrap();
        assert!(clordid.starts_with(&format!("{sub}-")), "{e}");
    }
    for (client, s) in &seqs {
        let expected: Vec<u64> = (1..=s.len() as u64).collect();
        assert_eq!(
            s, &expected,
            "MsgSeqNum of {client} (one sequence per session)"
        );
    }
    let complaints: Vec<_> = events(&acceptor, "out")
        .into_iter()
        .filter(|e| e["type"] == "2" || e["type"] == "3" || e["type"] == "j")
        .collect();
    assert!(complaints.is_empty(), "QuickFIX complained: {complaints:?}");

    // One device stops: its session stays up for the other nine, which go on sending.
    c.ctl(&["stop", "mx-00003"]).ok();
    let orders_of = |a: &FixAcceptor, sub: &str| {
        events(a, "in")
            .iter()
            .filter(|e| e["type"] == "D" && e["sub"] == sub)
            .count()
    };
    let before = orders_of(&acceptor, "mx-00004");
    wait_acceptor(&acceptor, "mx-00004 goes on after mx-00003 stopped", |a| {
        orders_of(a, "mx-00004") >= before + 4
    })
    .await;
    assert!(
        !events(&acceptor, "in").iter().any(|e| e["type"] == "5"),
        "no Logout while devices still use the session"
    );
    assert_eq!(count_by_client(&acceptor, "logout"), BTreeMap::new());

    // delete-fleet: each session logs out once.
    c.ctl(&["delete-fleet", "mx"]).ok();
    wait_acceptor(&acceptor, "a Logout from each session", |a| {
        let by: Vec<String> = events(a, "in")
            .into_iter()
            .filter(|e| e["type"] == "5")
            .map(|e| e["client"].as_str().unwrap_or_default().to_string())
            .collect();
        by.len() == 2 && by.iter().collect::<HashSet<_>>().len() == 2
    })
    .await;
}
