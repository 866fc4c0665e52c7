//! The dashboard's Scenarios section in a real headless Chromium (pip `playwright`, see
//! tests/browser/scenarios.py) against a real nats-server: detached runs are paged, newest
//! first, and a credential that may not read the scenarios bucket gets a section that says
//! so while the rest of the page goes on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::time::Duration;

use pluribus_testkit::{bin_path, free_port, run, wait_until, Proc};
use support::Cluster;

/// Starts a dashboard with `env`; returns it and its URL.
async fn dashboard(env: &[(&str, &str)]) -> (Proc, String) {
    let p = Proc::spawn(
        &bin_path("pluribusctl"),
        &["dashboard", "--listen", "127.0.0.1:0", "--json"],
        env,
    );
    wait_until(
        "the dashboard to print its URL",
        Duration::from_secs(40),
        || {
            let out = p.stdout();
            async move { out.contains("\"url\"") }
        },
    )
    .await;
    let started: serde_json::Value = serde_json::from_str(p.stdout().trim())
        .unwrap_or_else(|e| panic!("dashboard printed no JSON ({e}): {}", p.stdout()));
    let url = started["url"].as_str().expect("url").to_string();
    (p, url)
}

/// What the browser saw of the Scenarios section, waiting until it holds `runs` runs and
/// its note says `note` (and the Fleets table shows `fleet`, when not empty).
async fn section(url: String, runs: usize, note: &str, fleet: &str) -> serde_json::Value {
    let (note, fleet) = (note.to_string(), fleet.to_string());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/scenarios.py");
    let out = tokio::task::spawn_blocking(move || {
        run(
            Path::new("python3"),
            &[
                &script.display().to_string(),
                &url,
                &runs.to_string(),
                &note,
                &fleet,
            ],
            &[],
            Duration::from_secs(180),
        )
    })
    .await
    .expect("the browser script");
    let seen = out.ok().json();
    assert_eq!(seen["page_errors"], serde_json::json!([]), "{seen}");
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn scenario_runs_are_paged_newest_first() {
    let c = Cluster::new("dashruns");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("paged.yaml");
    std::fs::write(&file, "steps:\n  - wait: 10m\n").expect("scenario file");
    let file = file.display().to_string();
    // No agent takes them: they stay pending, 12 runs, one after the other.
    let mut ids = Vec::new();
    for _ in 0..12 {
        let s = c
            .ctl(&["scenario", "run", &file, "--detach", "--json"])
            .ok()
            .json();
        ids.push(s["run"].as_str().expect("run id").to_string());
    }
    let url = c.nats.url();
    let (_dash, page) = dashboard(&[
        ("PLURIBUS_NATS_URL", url.as_str()),
        ("PLURIBUS_NAMESPACE", c.ns.as_str()),
    ])
    .await;
    let seen = section(page, 12, "", "").await;
    let newest: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(
        seen["pages"],
        serde_json::json!([newest[..10], newest[10..]]),
        "{seen}"
    );
    assert!(
        seen["pager"].as_str().is_some_and(|p| p.contains("(12)")),
        "{seen}"
    );
}

const CONFIG: &str = r#"
listen: 127.0.0.1:PORT
jetstream { store_dir: "DIR" }
accounts {
  PLURIBUS {
    jetstream: enabled
    users: [
      { user: blind, password: blind-pass,
        permissions: { publish: { deny: ["$JS.API.*.*.KV_pluribus_scenarios", "$JS.API.*.*.KV_pluribus_scenarios.>"] } } }
    ]
  }
}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_credential_without_the_scenarios_bucket_gets_a_note_not_a_broken_page() {
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
    let env = [
        ("PLURIBUS_NATS_URL", url.as_str()),
        ("PLURIBUS_NATS_USER", "blind"),
        ("PLURIBUS_NATS_PASSWORD", "blind-pass"),
    ];
    // The other buckets are readable: the fleet shows in the page.
    wait_until(
        "nats-server to take the user",
        Duration::from_secs(30),
        || {
            let url = url.clone();
            async move {
                let envs = [
                    ("PLURIBUS_NATS_URL", url.as_str()),
                    ("PLURIBUS_NATS_USER", "blind"),
                    ("PLURIBUS_NATS_PASSWORD", "blind-pass"),
                ];
                run(
                    &bin_path("pluribusctl"),
                    &["deploy-fleet", "seen", "--count", "1", "--no-wait"],
                    &envs,
                    Duration::from_secs(30),
                )
                .code
                    == 0
            }
        },
    )
    .await;
    let (_dash, page) = dashboard(&env).await;
    let seen = section(page, 0, "cannot read the scenarios bucket", "seen").await;
    let note = seen["note"].as_str().unwrap_or_default().to_string();
    assert!(note.contains("does this credential cover it"), "{seen}");
    assert_eq!(seen["pages"], serde_json::json!([[]]), "{seen}");
    // The rest of the page goes on: the fleet shows.
    assert_eq!(seen["fleets"], serde_json::json!(["seen"]), "{seen}");
}
