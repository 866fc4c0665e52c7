//! Proves the harness itself: real servers start, restart keeps JetStream data, processes are
//! driven and their output captured.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::collections::HashSet;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use pluribus_testkit::{
    bin_path, free_port, run, wait_until, Mosquitto, NatsCluster, NatsServer, Proc,
};

const SH: &str = "/bin/sh";

#[tokio::test(flavor = "multi_thread")]
async fn nats_starts_with_jetstream() {
    let nats = NatsServer::start();
    assert_eq!(nats.url(), format!("nats://127.0.0.1:{}", nats.port()));
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.query_account().await.expect("JetStream available");
    assert!(nats.log().contains("Server is ready"), "{}", nats.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn nats_restart_keeps_kv_values() {
    let mut nats = NatsServer::start();
    let port = nats.port();
    {
        let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
        let kv = js
            .create_key_value(async_nats::jetstream::kv::Config {
                bucket: "harness".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        kv.put("k", "survives".into()).await.unwrap();
    }
    nats.restart();
    assert_eq!(nats.port(), port, "same port after restart");
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let kv = js.get_key_value("harness").await.unwrap();
    let value = kv.get("k").await.unwrap().expect("value kept");
    assert_eq!(&value[..], b"survives");

    nats.stop();
    nats.stop(); // idempotent
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "stopped");
    nats.start_again();
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "started again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_three_node_cluster_keeps_an_r3_bucket_when_a_node_dies() {
    let mut cluster = NatsCluster::start(3);
    let js = async_nats::jetstream::new(async_nats::connect(cluster.nodes[1].url()).await.unwrap());
    let kv = js
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: "harness_r3".into(),
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .expect("an R3 bucket needs the three nodes routed together");
    kv.put("k", "replicated".into()).await.unwrap();
    cluster.nodes[0].stop();
    // Read through another node: the value is there on the two that are left.
    let js = async_nats::jetstream::new(async_nats::connect(cluster.nodes[2].url()).await.unwrap());
    wait_until(
        "the bucket to answer on 2 of 3 nodes",
        Duration::from_secs(20),
        || {
            let js = js.clone();
            async move {
                match js.get_key_value("harness_r3").await {
                    Ok(kv) => kv.get("k").await.ok().flatten().is_some(),
                    Err(_) => false,
                }
            }
        },
    )
    .await;
    let kv = js.get_key_value("harness_r3").await.unwrap();
    let value = kv.get("k").await.unwrap();
    assert_eq!(&value.unwrap()[..], b"replicated");
    assert_eq!(cluster.urls().split(',').count(), 3);
}

#[test]
fn mosquitto_accepts_connections_and_restarts() {
    let mut mq = Mosquitto::start();
    assert_eq!(mq.url(), format!("mqtt://127.0.0.1:{}", mq.port()));
    TcpStream::connect(("127.0.0.1", mq.port())).expect("broker accepts TCP");
    assert!(mq.dir().join("mosquitto.conf").is_file());
    mq.stop();
    mq.stop();
    assert!(
        TcpStream::connect(("127.0.0.1", mq.port())).is_err(),
        "stopped"
    );
    mq.start_again();
    TcpStream::connect(("127.0.0.1", mq.port())).expect("broker accepts TCP again");
    assert!(mq.log().contains("running"), "{}", mq.log());
}

#[test]
fn mosquitto_takes_extra_config() {
    let mq = Mosquitto::start_with_config("max_keepalive 120");
    TcpStream::connect(("127.0.0.1", mq.port())).expect("broker accepts TCP");
    let conf = std::fs::read_to_string(mq.dir().join("mosquitto.conf")).unwrap();
    assert!(conf.starts_with(&format!("listener {} 127.0.0.1\n", mq.port())));
    assert!(conf.contains("max_keepalive 120"));
}

#[tokio::test(flavor = "multi_thread")]
async fn proc_terminate_returns_exit_code() {
    let script = r#"trap "exit 3" TERM; echo ready; sleep 30 & wait"#;
    let mut p = Proc::spawn(Path::new(SH), &["-c", script], &[]);
    // Signal only once the trap is installed.
    wait_until("the script to be ready", Duration::from_secs(10), || {
        let ready = p.stdout().contains("ready");
        async move { ready }
    })
    .await;
    assert!(p.is_running());
    let started = Instant::now();
    assert_eq!(p.terminate(Duration::from_secs(10)), Some(3));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!p.is_running());
    assert_eq!(p.terminate(Duration::from_secs(1)), Some(3), "idempotent");
}

#[test]
fn proc_kill_and_output_and_env() {
    let mut p = Proc::spawn(
        Path::new(SH),
        &["-c", "echo \"out $GREETING\"; echo err >&2; exec sleep 30"],
        &[("GREETING", "hi")],
    );
    assert!(p.pid() > 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(p.stdout().contains("out hi") && p.stderr().contains("err")) {
        assert!(
            Instant::now() < deadline,
            "no output: {:?} {:?}",
            p.stdout(),
            p.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(p.is_running());
    p.kill();
    p.kill();
    assert!(!p.is_running());
    // A process that ignores SIGTERM gets SIGKILLed: None.
    let mut stubborn = Proc::spawn(
        Path::new(SH),
        &["-c", "trap '' TERM; echo ready; while :; do sleep 1; done"],
        &[],
    );
    while !stubborn.stdout().contains("ready") {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(stubborn.terminate(Duration::from_millis(300)), None);
}

#[test]
fn run_captures_output_and_exit_codes() {
    let out = run(
        Path::new(SH),
        &["-c", "echo out; echo err >&2; exit 7"],
        &[],
        Duration::from_secs(10),
    );
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (7, "out\n", "err\n")
    );

    let out = run(
        Path::new(SH),
        &["-c", r#"echo "{\"n\": $N}""#],
        &[("N", "42")],
        Duration::from_secs(10),
    );
    assert_eq!(out.ok().json()["n"], 42);

    // Stdin is null: cat ends at once.
    let out = run(Path::new("cat"), &[], &[], Duration::from_secs(10));
    assert_eq!((out.code, out.stdout.as_str()), (0, ""));

    // Death by signal: 128 + signal.
    let out = run(
        Path::new(SH),
        &["-c", "kill -9 $$"],
        &[],
        Duration::from_secs(10),
    );
    assert_eq!(out.code, 137);
}

#[test]
#[should_panic(expected = "expected exit code 0, got 2")]
fn output_ok_panics_on_failure() {
    run(
        Path::new(SH),
        &["-c", "exit 2"],
        &[],
        Duration::from_secs(10),
    )
    .ok();
}

#[test]
#[should_panic(expected = "stdout is not JSON")]
fn output_json_panics_on_non_json() {
    run(
        Path::new(SH),
        &["-c", "echo nope"],
        &[],
        Duration::from_secs(10),
    )
    .json();
}

#[test]
#[should_panic(expected = "did not finish within")]
fn run_panics_at_timeout() {
    run(Path::new("sleep"), &["30"], &[], Duration::from_millis(300));
}

#[tokio::test(flavor = "multi_thread")]
#[should_panic(expected = "timed out after 500ms waiting for the impossible")]
async fn wait_until_panics_at_deadline() {
    wait_until("the impossible", Duration::from_millis(500), || async {
        false
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_until_returns_when_true() {
    let mut n = 0;
    wait_until("the third poll", Duration::from_secs(5), || {
        n += 1;
        let done = n >= 3;
        async move { done }
    })
    .await;
    assert_eq!(n, 3);
}

#[test]
fn free_ports_are_distinct_and_bindable() {
    let ports: HashSet<u16> = (0..50).map(|_| free_port()).collect();
    assert_eq!(ports.len(), 50);
    let p = free_port();
    std::net::TcpListener::bind(("127.0.0.1", p)).expect("free port is bindable");
}

#[test]
#[should_panic(expected = "build it first: cargo build --workspace")]
fn bin_path_panics_for_missing_binary() {
    bin_path("no-such-pluribus-binary");
}
