//! `pluribusctl probe` on the brokers the mqtt sink reaches: `mqtts://` (with `--ca`, and a
//! client certificate with `--cert`/`--key`) on a TLS mosquitto, `ws://` on nats-server's
//! WebSocket listener, and the refusals: a missing `--ca` file, and a `wss://` broker whose
//! certificate the given CA did not sign. Real brokers, real agents, the real binaries.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;

use pluribus_testkit::{free_port, Mosquitto, NatsServer, Output};
use serde_json::Value;
use support::*;

/// Writes `text` to `dir/name`; returns the path.
fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

/// Runs pluribusctl on a blocking thread, so several can run at once.
fn ctl_bg(url: &str, ns: &str, args: &[&str]) -> tokio::task::JoinHandle<Output> {
    let (url, ns) = (url.to_string(), ns.to_string());
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ctl_at(&url, &ns, &args)
    })
}

/// `probe --broker URL --topic devices/+/telemetry --duration D --json` plus `extra`.
fn probe_bg(
    c: &Cluster,
    broker: &str,
    duration: &str,
    extra: &[&str],
) -> tokio::task::JoinHandle<Output> {
    let mut args = vec![
        "probe",
        "--broker",
        broker,
        "--topic",
        "devices/+/telemetry",
        "--duration",
        duration,
        "--json",
    ];
    args.extend_from_slice(extra);
    ctl_bg(&c.nats.url(), &c.ns, &args)
}

/// A clean run: something arrived from every device of `fleet`, nothing lost.
fn assert_clean(s: &Value, fleet: &str, devices: u64) {
    assert!(
        s["received"].as_u64().is_some_and(|n| n >= 2 * devices),
        "{s}"
    );
    assert_eq!(
        (&s["lost"], &s["duplicates"], &s["out_of_order"]),
        (&0.into(), &0.into(), &0.into()),
        "{s}"
    );
    assert_eq!(s["fleets"][fleet]["devices"], devices, "{s}");
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_over_mqtts_with_a_ca_and_with_a_client_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let ca = write(dir.path(), "ca.pem", &pki.ca);
    let server_cert = write(dir.path(), "server.pem", &pki.server.0);
    let server_key = write(dir.path(), "server.key", &pki.server.1);
    let client_cert = write(dir.path(), "client.pem", &pki.client.0);
    let client_key = write(dir.path(), "client.key", &pki.client.1);
    // Two TLS listeners: one with a server certificate only, one that also wants the
    // client's, signed by the same CA.
    let (tls, mtls) = (free_port(), free_port());
    let _broker = Mosquitto::start_with_config(&format!(
        "listener {tls} 127.0.0.1\ncertfile {server_cert}\nkeyfile {server_key}\n\
         listener {mtls} 127.0.0.1\ncafile {ca}\ncertfile {server_cert}\nkeyfile {server_key}\nrequire_certificate true\n"
    ));
    let mut c = Cluster::new("probe-mqtts");
    // TLS files are read from the agent's --secrets-dir only.
    let secrets = dir.path().display().to_string();
    c.agent("a1", &["--secrets-dir", &secrets]);
    c.wait_agents(1).await;
    let url = format!("mqtts://127.0.0.1:{tls}");
    c.ctl(&[
        "deploy-fleet",
        "sec",
        "--count",
        "5",
        "--sink",
        "mqtt",
        "--broker",
        &url,
        "--ca",
        &ca,
        "--qos",
        "1",
        "--interval",
        "200ms",
    ])
    .ok();

    let with_ca = probe_bg(&c, &url, "3s", &["--ca", &ca]);
    let mtls_url = format!("mqtts://127.0.0.1:{mtls}");
    let with_cert = probe_bg(
        &c,
        &mtls_url,
        "3s",
        &["--ca", &ca, "--cert", &client_cert, "--key", &client_key],
    );
    // Without the client certificate, the second listener turns the probe away.
    let without_cert = ctl_at(
        &c.nats.url(),
        &c.ns,
        &[
            "probe",
            "--broker",
            &mtls_url,
            "--topic",
            "t/#",
            "--ca",
            &ca,
            "--duration",
            "1s",
        ],
    );
    assert_ne!(without_cert.code, 0, "{without_cert:?}");
    assert!(
        !without_cert.stderr.contains("listening")
            && without_cert.stderr.contains("give --cert and --key"),
        "{}",
        without_cert.stderr
    );
    let out = with_ca.await.expect("probe");
    assert!(
        out.stderr
            .contains(&format!("listening on {url} devices/+/telemetry")),
        "{}",
        out.stderr
    );
    assert_clean(&out.ok().json(), "sec", 5);
    let out = with_cert.await.expect("probe");
    assert_clean(&out.ok().json(), "sec", 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_over_websocket_on_nats_server() {
    let mut c = Cluster {
        nats: NatsServer::start_with_mqtt(),
        ns: "probe-ws".into(),
        agents: Vec::new(),
    };
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let ws = c.nats.ws_url();
    assert!(ws.starts_with("ws://") && ws.ends_with("/mqtt"), "{ws}");
    c.ctl(&[
        "deploy-fleet",
        "wsf",
        "--count",
        "5",
        "--sink",
        "mqtt",
        "--broker",
        &c.nats.mqtt_url(),
        "--qos",
        "1",
        "--interval",
        "200ms",
    ])
    .ok();
    let out = probe_bg(&c, &ws, "3s", &[]).await.expect("probe");
    assert!(
        out.stderr
            .contains(&format!("listening on {ws} devices/+/telemetry")),
        "{}",
        out.stderr
    );
    assert_clean(&out.ok().json(), "wsf", 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_refuses_a_missing_ca_file_and_a_wss_broker_signed_by_another_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pki, other) = (Pki::new(), Pki::new());
    let ca = write(dir.path(), "ca.pem", &pki.ca);
    let other_ca = write(dir.path(), "other.pem", &other.ca);
    let server_cert = write(dir.path(), "server.pem", &pki.server.0);
    let server_key = write(dir.path(), "server.key", &pki.server.1);
    let nats = NatsServer::start_with_mqtt_tls(Path::new(&server_cert), Path::new(&server_key));
    let wss = nats.ws_url();
    assert!(wss.starts_with("wss://"), "{wss}");
    let probe = |extra: &[&str]| {
        let mut args = vec!["probe", "--broker", &wss, "--topic", "devices/#"];
        args.extend_from_slice(extra);
        ctl_at(&nats.url(), "probe-wss", &args)
    };

    // A CA file that is not there: refused before connecting, naming --ca.
    let out = probe(&["--ca", "/nonexistent/ca.pem", "--duration", "1s"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("--ca /nonexistent/ca.pem"),
        "{}",
        out.stderr
    );

    // The broker's certificate is not signed by the given CA: the connect fails with a
    // TLS error, before the probe reports that it listens.
    let out = probe(&["--ca", &other_ca, "--duration", "1s"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(!out.stderr.contains("listening"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("cannot connect to the MQTT broker at {wss}"))
            && out.stderr.contains("invalid peer certificate")
            && out.stderr.contains("give --ca"),
        "{}",
        out.stderr
    );

    // The right CA: it connects, listens and reports.
    let out = probe(&["--ca", &ca, "--duration", "1s", "--json"]);
    assert!(
        out.stderr
            .contains(&format!("listening on {wss} devices/#")),
        "{}",
        out.stderr
    );
    assert_eq!(out.ok().json()["lost"], 0);
}
