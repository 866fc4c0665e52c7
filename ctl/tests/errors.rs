//! Every bad input gets a clear error that says what to do, and a non-zero exit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

use pluribus_testkit::{bin_path, free_port, run, Proc};
use support::*;

#[test]
fn unreachable_nats_names_the_url() {
    let url = format!("nats://127.0.0.1:{}", free_port());
    let out = ctl_at(&url, "", &["status"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains(&url), "{}", out.stderr);
    assert!(
        out.stderr.contains("nats-server"),
        "says how to fix it: {}",
        out.stderr
    );
    let out = run(
        &bin_path("pluribus-agent"),
        &["--nats-url", &url],
        &[],
        Duration::from_secs(30),
    );
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains(&url), "{}", out.stderr);
}

#[test]
fn jetstream_disabled_is_explained() {
    let port = free_port();
    let p = port.to_string();
    let mut server = Proc::spawn(
        std::path::Path::new("nats-server"),
        &["-a", "127.0.0.1", "-p", &p],
        &[],
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = ctl_at(&format!("nats://127.0.0.1:{port}"), "", &["status"]);
    server.kill();
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("JetStream is not enabled"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("-js"), "{}", out.stderr);
}

/// A server that says it is nats-server 2.9.10 (the client checks the version it announces).
fn old_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut w = stream.try_clone().expect("clone");
                let info = r#"INFO {"server_id":"OLD","server_name":"old","version":"2.9.10","proto":1,"go":"go1.19","host":"127.0.0.1","port":4222,"headers":true,"max_payload":1048576,"jetstream":true}"#;
                let _ = w.write_all(format!("{info}\r\n").as_bytes());
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    if line.starts_with("PING") {
                        let _ = w.write_all(b"PONG\r\n");
                    }
                }
            });
        }
    });
    port
}

#[test]
fn a_server_too_old_says_which_version_is_needed() {
    let port = old_server();
    let out = ctl_at(&format!("nats://127.0.0.1:{port}"), "", &["status"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("2.9.10") && out.stderr.contains("2.11"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_specs_conflicts_no_agents_and_no_capacity() {
    let mut c = Cluster::new("errs");

    // Bad specs name the field, before any I/O.
    let out = c.ctl(&["deploy-fleet", "bad.name", "--count", "3"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("name") && out.stderr.contains("letters, digits"),
        "{}",
        out.stderr
    );
    let out = c.ctl(&["deploy-fleet", "f", "--count", "3", "--shard-size", "0"]);
    assert!(
        out.code != 0 && out.stderr.contains("shard_size"),
        "{}",
        out.stderr
    );
    let out = c.ctl(&["deploy-fleet", "f", "--count", "3", "--interval", "1x"]);
    assert!(
        out.code != 0 && out.stderr.contains("--interval"),
        "{}",
        out.stderr
    );
    let out = c.ctl(&[
        "deploy-fleet",
        "f",
        "--count",
        "3",
        "--sink",
        "nats",
        "--subject",
        "a.>.b",
    ]);
    assert!(
        out.code != 0 && out.stderr.contains("sink.subject"),
        "{}",
        out.stderr
    );
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("fleet.yaml");
    std::fs::write(
        &file,
        "name: ff\ncount: 5\ndevice:\n  interval: 1s\n  colour: red\n",
    )
    .expect("write");
    let out = c.ctl(&["deploy-fleet", "--file", file.to_str().expect("path")]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("fleet.yaml:") && out.stderr.contains("colour"),
        "names file, line and field: {}",
        out.stderr
    );

    // No agent: the fleet is recorded, and the error says how to start one.
    let out = c.ctl(&["deploy-fleet", "f2", "--count", "300", "--shard-size", "50"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("no agent") && out.stderr.contains("pluribus-agent"),
        "{}",
        out.stderr
    );
    // ... after saying that it waited a while for one.
    assert!(
        out.stderr
            .contains("no agent is alive yet: waiting up to 10s"),
        "{}",
        out.stderr
    );
    assert_eq!(fleet(&c.status(), "f2")["running"], 0);

    // Name conflict.
    let out = c.ctl(&[
        "deploy-fleet",
        "f2",
        "--count",
        "300",
        "--shard-size",
        "50",
        "--interval",
        "2s",
        "--no-wait",
    ]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("exists") && out.stderr.contains("--replace"),
        "{}",
        out.stderr
    );

    // An agent that holds 100 at most: the recorded fleet is picked up, 200 stay pending.
    c.agent("small", &["--max-devices", "100"]);
    c.wait_agents(1).await;
    let out = c.ctl(&[
        "deploy-fleet",
        "f2",
        "--count",
        "300",
        "--shard-size",
        "50",
        "--timeout",
        "60s",
    ]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("not enough capacity") && out.stderr.contains("200"),
        "{}",
        out.stderr
    );
    let status = c.status();
    let f = fleet(&status, "f2");
    assert_eq!(f["running"], 100);
    assert_eq!(f["pending"], 200);
    assert!(
        f["reason"].as_str().is_some_and(|r| r.contains("capacity")),
        "{f}"
    );
    assert!(c.agents[0].is_running());
}

#[test]
fn agent_flags_are_checked_before_connecting() {
    let agent = bin_path("pluribus-agent");
    let out = run(&agent, &["--labels", "zone"], &[], Duration::from_secs(10));
    assert!(
        out.code != 0 && out.stderr.contains("key=value"),
        "{}",
        out.stderr
    );
    let out = run(&agent, &["--lease-ttl", "1s"], &[], Duration::from_secs(10));
    assert!(
        out.code != 0 && out.stderr.contains("--lease-ttl"),
        "{}",
        out.stderr
    );
    let out = run(
        &agent,
        &["--namespace", "a.b"],
        &[],
        Duration::from_secs(10),
    );
    assert!(
        out.code != 0 && out.stderr.contains("--namespace"),
        "{}",
        out.stderr
    );
}

#[test]
fn nats_user_and_password_are_used_and_a_wrong_one_is_explained() {
    let port = free_port();
    let p = port.to_string();
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("js");
    let mut server = Proc::spawn(
        std::path::Path::new("nats-server"),
        &[
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            &p,
            "-sd",
            store.to_str().expect("utf8"),
            "--user",
            "pluri",
            "--pass",
            "s3cret",
        ],
        &[],
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = format!("nats://127.0.0.1:{port}");
    let ok = run(
        &bin_path("pluribusctl"),
        &[
            "status",
            "--json",
            "--nats-user",
            "pluri",
            "--nats-password",
            "s3cret",
        ],
        &[("PLURIBUS_NATS_URL", url.as_str())],
        Duration::from_secs(30),
    );
    let bad = run(
        &bin_path("pluribusctl"),
        &["status"],
        &[
            ("PLURIBUS_NATS_URL", url.as_str()),
            ("PLURIBUS_NATS_USER", "pluri"),
            ("PLURIBUS_NATS_PASSWORD", "wrong"),
        ],
        Duration::from_secs(30),
    );
    let half = run(
        &bin_path("pluribusctl"),
        &["status", "--nats-user", "pluri"],
        &[("PLURIBUS_NATS_URL", url.as_str())],
        Duration::from_secs(30),
    );
    server.kill();
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert!(ok.json()["agents"].is_array());
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains(&url), "{}", bad.stderr);
    assert!(
        bad.stderr.to_lowercase().contains("authorization")
            || bad.stderr.to_lowercase().contains("auth"),
        "{}",
        bad.stderr
    );
    assert!(
        half.code != 0 && half.stderr.contains("--nats-password"),
        "{}",
        half.stderr
    );
}

/// A deploy issued the moment an agent is started (a script, the demo) waits for the
/// agent's first heartbeat instead of reporting an empty cluster.
#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_right_after_an_agent_starts_waits_for_it() {
    let mut c = Cluster::new("err-fresh");
    c.agent("a1", &[]);
    let out = c.ctl(&[
        "deploy-fleet",
        "fresh",
        "--count",
        "10",
        "--shard-size",
        "5",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(fleet(&c.status(), "fresh")["assigned"], 10);
}
