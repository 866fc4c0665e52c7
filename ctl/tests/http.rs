//! The http sink, end to end: real agents post telemetry to a real HTTP server inside the
//! test; counters are read from the agents' heartbeats.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/http_server.rs"]
mod http_server;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use http_server::{HttpServer, Recorded};
use pluribus_common::messages::{FleetCounters, Heartbeat};
use pluribus_common::subjects::Namespace;
use pluribus_testkit::{bin_path, free_port, Proc};
use support::*;

const SECRET_VAR: &str = "PLURIBUS_SECRET_TEST_HTTP";

/// Starts an agent whose environment holds the secret an `env:` header reads.
fn agent(c: &mut Cluster, name: &str) {
    agent_with(c, name, &[]);
}

/// [`agent`] with more flags.
fn agent_with(c: &mut Cluster, name: &str, extra: &[&str]) {
    let url = c.nats.url();
    let mut args = vec![
        "--nats-url",
        url.as_str(),
        "--namespace",
        c.ns.as_str(),
        "--name",
        name,
        "--heartbeat",
        "500ms",
    ];
    args.extend_from_slice(extra);
    c.agents.push(Proc::spawn(
        &bin_path("pluribus-agent"),
        &args,
        &[("RUST_LOG", "info,async_nats=warn"), (SECRET_VAR, "s3cret")],
    ));
}

/// Runs pluribusctl and expects success.
fn deploy(c: &Cluster, args: &[&str]) {
    c.ctl(args).ok();
}

/// Successful requests' seqs per device (from the body), sorted.
fn seqs(reqs: &[Recorded]) -> BTreeMap<String, Vec<u64>> {
    let mut m: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in reqs.iter().filter(|r| r.ok()) {
        if let (Some(id), Some(seq)) = (r.body["device_id"].as_str(), r.body["seq"].as_u64()) {
            m.entry(id.to_string()).or_default().push(seq);
        }
    }
    m.values_mut().for_each(|v| v.sort_unstable());
    m
}

/// Asserts every device's seqs run 0, 1, 2, ... with nothing missing or repeated.
fn assert_gapless(seqs: &BTreeMap<String, Vec<u64>>) {
    for (id, s) in seqs {
        let want: Vec<u64> = (0..s.len() as u64).collect();
        assert_eq!(
            s, &want,
            "device {id}: seqs must start at 0 and have no gaps"
        );
    }
}

/// Waits for a heartbeat whose counters of `fleet` pass `check`.
async fn wait_counters(
    c: &Cluster,
    fleet: &str,
    what: &str,
    check: impl Fn(&FleetCounters) -> bool,
) -> FleetCounters {
    let client = c.client().await;
    let subject = Namespace::new(&c.ns).expect("namespace").heartbeat_all();
    let mut sub = client.subscribe(subject).await.expect("subscribe");
    let timeout = Duration::from_secs(20);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = None;
    loop {
        let Ok(Some(msg)) = tokio::time::timeout_at(deadline, sub.next()).await else {
            panic!("timed out after {timeout:?} waiting for {what}; last counters: {last:#?}");
        };
        let hb: Heartbeat = serde_json::from_slice(&msg.payload).expect("heartbeat");
        if let Some(f) = hb.fleets.get(fleet) {
            if check(f) {
                return f.clone();
            }
            last = Some(f.clone());
        }
    }
}

fn latencies(f: &FleetCounters) -> u64 {
    f.ack_latency_us.as_ref().map_or(0, |h| h.count())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_device_posts_its_telemetry_with_the_headers() {
    let server = HttpServer::start().await;
    let mut c = Cluster::new("http-post");
    // Secrets by reference: a file under --secrets-dir, a variable with the prefix.
    let secrets = tempfile::tempdir().expect("tempdir");
    let token_file = secrets.path().join("token");
    std::fs::write(&token_file, "from-a-file\n").expect("write token");
    let dir = secrets.path().display().to_string();
    agent_with(&mut c, "a1", &["--secrets-dir", &dir]);
    c.wait_agents(1).await;
    let url = server.url("/ingest/{device_id}");
    let env_header = format!("Authorization:env:{SECRET_VAR}");
    let file_header = format!("X-File:file:{}", token_file.display());
    deploy(
        &c,
        &[
            "deploy-fleet",
            "hp",
            "--count",
            "4",
            "--interval",
            "200ms",
            "--sink",
            "http",
            "--url",
            &url,
            "--header",
            "X-Token:abc",
            "--header",
            &env_header,
            "--header",
            &file_header,
        ],
    );
    let reqs = server
        .wait_for(
            "5 messages from each of 4 devices",
            Duration::from_secs(20),
            |r| {
                let s = seqs(r);
                s.len() == 4 && s.values().all(|v| v.len() >= 5)
            },
        )
        .await;
    for r in &reqs {
        assert_eq!(r.method, "POST");
        let id = r.body["device_id"]
            .as_str()
            .expect("telemetry names its device");
        assert_eq!(r.path, format!("/ingest/{id}"));
        assert_eq!(r.body["fleet"], "hp", "{:?}", r.body);
        assert_eq!(r.headers.get("x-token").map(String::as_str), Some("abc"));
        assert_eq!(
            r.headers.get("authorization").map(String::as_str),
            Some("s3cret")
        );
        assert_eq!(
            r.headers.get("x-file").map(String::as_str),
            Some("from-a-file")
        );
        assert_eq!(
            r.headers.get("content-type").map(String::as_str),
            Some("application/json")
        );
    }
    // Requests run concurrently, so the last ones may still be in flight: check a prefix.
    let mut s = seqs(&reqs);
    s.values_mut().for_each(|v| v.truncate(5));
    assert_gapless(&s);
    // The secrets stay on the agents: the fleet record has only where to read them.
    let bucket = Namespace::new(&c.ns).expect("namespace").fleets_bucket();
    let kv = async_nats::jetstream::new(c.client().await)
        .get_key_value(bucket)
        .await
        .expect("fleets bucket");
    let record = kv.get("hp").await.expect("kv get").expect("fleet record");
    let record = String::from_utf8_lossy(&record);
    assert!(record.contains(SECRET_VAR), "{record}");
    assert!(
        !record.contains("s3cret") && !record.contains("from-a-file"),
        "{record}"
    );

    // PUT, to a URL of a single device.
    let url = server.url("/things/{fleet}/{index}");
    deploy(
        &c,
        &[
            "deploy",
            "--device-id",
            "put-1",
            "--interval",
            "200ms",
            "--sink",
            "http",
            "--method",
            "PUT",
            "--url",
            &url,
        ],
    );
    let reqs = server
        .wait_for("PUTs of put-1", Duration::from_secs(20), |r| {
            r.iter().filter(|r| r.path == "/things/put-1/0").count() >= 3
        })
        .await;
    assert!(reqs
        .iter()
        .filter(|r| r.path.starts_with("/things/"))
        .all(|r| r.method == "PUT" && r.body["device_id"] == "put-1"));
    let f = wait_counters(&c, "hp", "2xx responses of hp", |f| {
        f.responses.get("2xx").is_some_and(|n| *n >= 20)
    })
    .await;
    assert!(latencies(&f) >= 20, "{f:#?}");
    assert_eq!(f.publish_failed, 0, "{f:#?}");

    // http flags with another sink: an error that names the flag, before any I/O.
    let out = c.ctl(&["deploy", "--sink", "nats", "--url", &url]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("--url") && out.stderr.contains("--sink http"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_are_retried_and_counted_by_class() {
    let server = HttpServer::start_failing(3).await;
    let mut c = Cluster::new("http-retry");
    agent(&mut c, "a1");
    c.wait_agents(1).await;
    let url = server.url("/ingest/{device_id}");
    // Three retries: even a message that gets all three 500s goes through.
    deploy(
        &c,
        &[
            "deploy-fleet",
            "hr",
            "--count",
            "1",
            "--interval",
            "300ms",
            "--sink",
            "http",
            "--url",
            &url,
            "--http-retries",
            "3",
        ],
    );
    let reqs = server
        .wait_for("6 delivered messages", Duration::from_secs(20), |r| {
            seqs(r).values().next().is_some_and(|v| v.len() >= 6)
        })
        .await;
    assert_eq!(reqs.iter().filter(|r| r.status == 500).count(), 3);
    let mut s = seqs(&reqs);
    s.values_mut().for_each(|v| v.truncate(5));
    assert_gapless(&s);
    let f = wait_counters(&c, "hr", "3 5xx and 6 2xx responses", |f| {
        f.responses.get("5xx") == Some(&3) && f.responses.get("2xx").is_some_and(|n| *n >= 6)
    })
    .await;
    assert_eq!(f.publish_failed, 0, "every message got through: {f:#?}");
    assert_eq!(f.errors, 0, "{f:#?}");
    assert!(latencies(&f) >= 9, "a latency per response: {f:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_is_down_counts_failures_and_the_agent_keeps_running() {
    let port = free_port();
    let mut c = Cluster::new("http-down");
    agent(&mut c, "a1");
    c.wait_agents(1).await;
    let url = format!("http://127.0.0.1:{port}/ingest/{{device_id}}");
    deploy(
        &c,
        &[
            "deploy-fleet",
            "hd",
            "--count",
            "2",
            "--interval",
            "200ms",
            "--sink",
            "http",
            "--url",
            &url,
            "--http-retries",
            "1",
            "--http-timeout",
            "500ms",
        ],
    );
    let first = wait_counters(&c, "hd", "failed publishes", |f| f.publish_failed >= 4).await;
    assert!(first.responses.is_empty(), "nothing answered: {first:#?}");
    assert_eq!(first.errors, first.publish_failed, "{first:#?}");
    let later = wait_counters(&c, "hd", "more failed publishes", |f| {
        f.publish_failed >= first.publish_failed + 4
    })
    .await;
    assert_eq!(later.devices, 2, "the devices keep running: {later:#?}");
    assert!(c.agents[0].is_running(), "the agent keeps running");

    // The server comes up: the same devices get through, without a redeploy.
    let server = HttpServer::start_on(port).await;
    server
        .wait_for(
            "both devices after the server came up",
            Duration::from_secs(20),
            |r| seqs(r).len() == 2,
        )
        .await;
    wait_counters(&c, "hd", "2xx after recovery", |f| {
        f.responses.contains_key("2xx")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_in_flight_finish_before_the_agent_exits() {
    // Each request takes 1.5 s: when SIGTERM comes, the on_stop messages are in flight.
    let server = HttpServer::start_slow(Duration::from_millis(1500)).await;
    let mut c = Cluster::new("http-stop");
    agent(&mut c, "a1");
    c.wait_agents(1).await;
    let url = server.url("/ingest/{device_id}");
    deploy(
        &c,
        &[
            "deploy-fleet",
            "hs",
            "--count",
            "5",
            "--profile",
            "temperature-humidity",
            "--sink",
            "http",
            "--url",
            &url,
        ],
    );
    let status_count = |reqs: &[Recorded], status: &str| {
        reqs.iter()
            .filter(|r| r.body["data"]["status"] == status)
            .count()
    };
    server
        .wait_for("5 online messages", Duration::from_secs(15), |r| {
            status_count(r, "online") == 5
        })
        .await;
    assert_eq!(c.agents[0].terminate(Duration::from_secs(15)), Some(0));
    // The agent is gone; what it had in flight was finished before it exited.
    let reqs = server.requests();
    assert_eq!(
        status_count(&reqs, "offline"),
        5,
        "every on_stop message reached the server: {reqs:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn https_with_a_private_ca_and_a_client_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Pki {
        ca,
        server: server_cert,
        client: client_cert,
    } = Pki::new();
    let ca_file = write_file(&dir, "ca.pem", &ca);
    let cert_file = write_file(&dir, "client.pem", &client_cert.0);
    let key_file = write_file(&dir, "client.key", &client_cert.1);
    // The server asks for a client certificate signed by the same CA, but takes clients
    // without one too.
    let server = HttpServer::start_tls(&server_cert.0, &server_cert.1, Some(&ca)).await;
    let mut c = Cluster::new("http-tls");
    // TLS files are read from the agent's --secrets-dir only.
    let secrets = dir.path().display().to_string();
    agent_with(&mut c, "a1", &["--secrets-dir", &secrets]);
    c.wait_agents(1).await;
    let deploy_fleet = |name: &str, count: &str, path: &str, extra: &[&str]| {
        let url = server.url(path);
        let mut args = vec![
            "deploy-fleet",
            name,
            "--count",
            count,
            "--interval",
            "200ms",
            "--sink",
            "http",
            "--url",
            &url,
        ];
        args.extend_from_slice(extra);
        deploy(&c, &args);
    };
    // The private CA: every device gets through.
    deploy_fleet("ht", "4", "/ingest/{device_id}", &["--http-ca", &ca_file]);
    // ... and with a client certificate.
    deploy_fleet(
        "hm",
        "1",
        "/mtls/{device_id}",
        &[
            "--http-ca",
            &ca_file,
            "--http-cert",
            &cert_file,
            "--http-key",
            &key_file,
        ],
    );
    // Without --http-ca the server's certificate is not trusted: failures, counted.
    deploy_fleet(
        "hn",
        "2",
        "/no-ca/{device_id}",
        &["--http-retries", "0", "--http-timeout", "1s"],
    );
    // A CA file the agent does not have: the shard is refused, and status says why.
    deploy_fleet(
        "hx",
        "1",
        "/missing/{device_id}",
        &["--http-ca", "/nonexistent/ca.pem", "--no-wait"],
    );

    let reqs = server
        .wait_for(
            "5 messages from each of the 4 devices of ht, and 3 of hm",
            Duration::from_secs(15),
            |r| {
                let s = seqs(r);
                let ht: Vec<_> = s.iter().filter(|(id, _)| id.starts_with("ht-")).collect();
                ht.len() == 4
                    && ht.iter().all(|(_, v)| v.len() >= 5)
                    && s.iter()
                        .any(|(id, v)| id.starts_with("hm-") && v.len() >= 3)
            },
        )
        .await;
    let ingest: Vec<Recorded> = reqs
        .iter()
        .filter(|r| r.path.starts_with("/ingest/"))
        .cloned()
        .collect();
    assert!(
        ingest
            .iter()
            .all(|r| !r.client_cert && r.body["fleet"] == "ht"),
        "ht sends no client certificate: {ingest:?}"
    );
    // Requests run concurrently, so the last ones may still be in flight: check a prefix.
    let mut s = seqs(&ingest);
    s.values_mut().for_each(|v| v.truncate(5));
    assert_eq!(s.len(), 4, "{s:?}");
    assert_gapless(&s);
    let mtls: Vec<&Recorded> = reqs
        .iter()
        .filter(|r| r.path.starts_with("/mtls/"))
        .collect();
    assert!(!mtls.is_empty());
    assert!(
        mtls.iter().all(|r| r.client_cert),
        "hm presents its client certificate: {mtls:?}"
    );

    let f = wait_counters(&c, "hn", "failed publishes without the CA", |f| {
        f.publish_failed >= 4
    })
    .await;
    assert!(f.responses.is_empty(), "no response without TLS: {f:#?}");
    assert_eq!(f.errors, f.publish_failed, "{f:#?}");
    assert_eq!(f.devices, 2, "the devices keep running: {f:#?}");
    assert!(server.tls_failures() >= 1, "the handshakes failed");
    assert!(
        !server
            .requests()
            .iter()
            .any(|r| r.path.starts_with("/no-ca/")),
        "nothing of hn got through"
    );

    wait_status(
        &c,
        "the refusal of hx in status",
        Duration::from_secs(10),
        |s| {
            fleet(s, "hx")["reason"]
                .as_str()
                .is_some_and(|r| r.contains("sink.ca: /nonexistent/ca.pem"))
        },
    )
    .await;
    assert!(c.agents[0].is_running(), "the agent keeps running");
    // ... and so do the fleets with the right CA.
    let n = server.requests().len();
    server
        .wait_for("more requests of ht", Duration::from_secs(5), |r| {
            r.len() >= n + 4
        })
        .await;
}
