//! The dashboard tells an operator credential from a viewer one on a real nats-server with
//! users and permissions: a viewer (who may not publish to `$KV.>` or Pluribus' subjects)
//! gets a read-only page that says why, and its control posts are refused; an operator
//! gets controls. (The roles of deploy/nats/ follow the same line: viewers read, operators
//! write the fleets bucket.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use pluribus_testkit::{bin_path, free_port, run, wait_until, Proc};

const CONFIG: &str = r#"
listen: 127.0.0.1:PORT
jetstream { store_dir: "DIR" }
accounts {
  PLURIBUS {
    jetstream: enabled
    users: [
      { user: operator, password: operator-pass }
      { user: viewer, password: viewer-pass,
        permissions: { publish: { deny: ["$KV.>", "pluribus.v1.>"] } } }
    ]
  }
}
"#;

fn dashboard(url: &str, user: &str, password: &str) -> Proc {
    Proc::spawn(
        &bin_path("pluribusctl"),
        &["dashboard", "--listen", "127.0.0.1:0", "--json"],
        &[
            ("PLURIBUS_NATS_URL", url),
            ("PLURIBUS_NATS_USER", user),
            ("PLURIBUS_NATS_PASSWORD", password),
        ],
    )
}

fn http(addr: &str, req: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the dashboard");
    s.write_all(req.as_bytes()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

async fn started(p: &Proc) -> serde_json::Value {
    wait_until("the dashboard to start", Duration::from_secs(40), || {
        let out = p.stdout();
        async move { out.contains("\"url\"") }
    })
    .await;
    serde_json::from_str(p.stdout().trim()).expect("the dashboard prints JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_viewer_credential_gets_a_read_only_dashboard_and_an_operator_gets_controls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let conf = dir.path().join("nats.conf");
    std::fs::write(
        &conf,
        CONFIG
            .replace("PORT", &port.to_string())
            .replace("DIR", &dir.path().join("js").display().to_string()),
    )
    .expect("config");
    let server = std::env::var("PLURIBUS_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
    let _nats = Proc::spawn(
        Path::new(&server),
        &["-c", &conf.display().to_string()],
        &[],
    );
    let url = format!("nats://127.0.0.1:{port}");
    let env = |u: &'static str, p: &'static str| {
        vec![
            ("PLURIBUS_NATS_URL", url.clone()),
            ("PLURIBUS_NATS_USER", u.to_string()),
            ("PLURIBUS_NATS_PASSWORD", p.to_string()),
        ]
    };
    // The operator creates the buckets (a viewer cannot).
    wait_until(
        "nats-server to take the operator",
        Duration::from_secs(30),
        || {
            let e = env("operator", "operator-pass");
            async move {
                let envs: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
                run(
                    &bin_path("pluribusctl"),
                    &["status", "--json"],
                    &envs,
                    Duration::from_secs(30),
                )
                .code
                    == 0
            }
        },
    )
    .await;

    let viewer = dashboard(&url, "viewer", "viewer-pass");
    let operator = dashboard(&url, "operator", "operator-pass");
    let v = started(&viewer).await;
    let o = started(&operator).await;
    assert_eq!(v["read_only"], true, "{v}");
    let why = v["why"].as_str().unwrap_or_default().to_lowercase();
    assert!(
        why.contains("permissions violation") && why.contains("operator credential"),
        "{v}"
    );
    assert_eq!(o["read_only"], false, "{o}");

    let addr = |s: &serde_json::Value| {
        s["url"]
            .as_str()
            .expect("url")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string()
    };
    let (va, oa) = (addr(&v), addr(&o));
    let frame = http(
        &va,
        &format!("GET /api/frame HTTP/1.1\r\nHost: {va}\r\nConnection: close\r\n\r\n"),
    );
    assert!(frame.contains("\"read_only\":true"), "{frame}");
    let body = r#"{"action":"delete","fleet":"nope"}"#;
    let post = |a: &str| {
        format!(
            "POST /api/control HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/json\r\nx-pluribus-dashboard: 1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let refused = http(&va, &post(&va));
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    // The operator's control runs (and fails for its own reason: there is no such fleet).
    let ran = http(&oa, &post(&oa));
    assert!(
        ran.starts_with("HTTP/1.1 400") && ran.contains("no fleet named nope"),
        "{ran}"
    );
}
