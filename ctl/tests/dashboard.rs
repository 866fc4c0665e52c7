//! `pluribusctl dashboard` in a real headless Chromium (driven by pip `playwright`, see
//! tests/browser/dashboard.py), against a real nats-server and two agents: the page shows
//! the fleet and both agents, the achieved rate goes above zero, a scale from the page
//! changes what `status --json` reports, the event shows up, a device's drill-down shows
//! its seq, a detached scenario run shows with its check and verdict, and a read-only
//! dashboard shows no controls. Screenshots are kept in
//! `target/tmp/dashboard/` for a person to look at.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use pluribus_testkit::{bin_path, run, wait_until, Proc};
use support::{fleet, Cluster};

/// Starts a dashboard on a free port with `extra` flags; returns it and its URL.
async fn dashboard(c: &Cluster, extra: &[&str]) -> (Proc, String) {
    let mut args = vec!["dashboard", "--listen", "127.0.0.1:0", "--json"];
    args.extend_from_slice(extra);
    let url = c.nats.url();
    let p = Proc::spawn(
        &bin_path("pluribusctl"),
        &args,
        &[("PLURIBUS_NATS_URL", &url), ("PLURIBUS_NAMESPACE", &c.ns)],
    );
    wait_until(
        "the dashboard to print its URL",
        Duration::from_secs(30),
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

/// Fails with what to install when the browser or its driver is missing.
fn require_browser() {
    let chromium =
        std::env::var("PLURIBUS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no Chromium at {chromium}: run deploy/install-deps.sh (apt chromium) or set PLURIBUS_CHROMIUM"
    );
    let probe = run(
        Path::new("python3"),
        &["-c", "import playwright.sync_api"],
        &[],
        Duration::from_secs(60),
    );
    assert_eq!(
        probe.code, 0,
        "python3 cannot import playwright: run deploy/install-deps.sh (pip install playwright)\n{}",
        probe.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_works_in_a_real_browser() {
    require_browser();
    let mut c = Cluster::new("dash");
    c.agent("a1", &[]);
    c.agent("a2", &[]);
    c.wait_agents(2).await;
    c.ctl(&[
        "deploy-fleet",
        "web",
        "--count",
        "4",
        "--shard-size",
        "2",
        "--sink",
        "nats",
        "--interval",
        "500ms",
    ])
    .ok();
    // A fleet whose network impairments drop half its messages: the page charts them.
    c.ctl(&[
        "deploy-fleet",
        "lossy",
        "--count",
        "2",
        "--sink",
        "nats",
        "--interval",
        "200ms",
    ])
    .ok();
    c.ctl(&["network", "set", "lossy", "--loss", "50%"]).ok();
    // A detached scenario run with a passing check: the Scenarios section shows it.
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario_file = dir.path().join("dash-smoke.yaml");
    std::fs::write(
        &scenario_file,
        "fleets:\n  smoke: {count: 1, sink: {type: nats}}\nsteps:\n  - deploy: smoke\n  - expect: {checks: [agents_alive >= 1]}\n",
    )
    .expect("scenario file");
    let submitted = c
        .ctl(&[
            "scenario",
            "run",
            &scenario_file.display().to_string(),
            "--detach",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(submitted["scenario"], "dash-smoke", "{submitted}");
    // And one that stays running, in its last step, after a passing check.
    let long_file = dir.path().join("dash-long.yaml");
    std::fs::write(
        &long_file,
        "steps:\n  - expect: {checks: [agents_alive >= 1]}\n  - wait: 10m\n",
    )
    .expect("scenario file");
    c.ctl(&[
        "scenario",
        "run",
        &long_file.display().to_string(),
        "--detach",
    ])
    .ok();
    let (_dash, url) = dashboard(&c, &[]).await;
    let (_ro, ro_url) = dashboard(&c, &["--read-only"]).await;

    let shots: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.py");
    let shots_arg = shots.display().to_string();
    let script_arg = script.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        run(
            Path::new("python3"),
            &[
                &script_arg,
                &url,
                &ro_url,
                "web",
                "web-00001",
                "6",
                &shots_arg,
                "dash-smoke",
                "dash-long",
            ],
            &[],
            Duration::from_secs(240),
        )
    })
    .await
    .expect("the browser script");
    let seen = out.ok().json();
    eprintln!("browser saw: {seen}\nscreenshots in {}", shots.display());

    let mut agents: Vec<&str> = seen["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    agents.sort();
    assert_eq!(agents, ["a1", "a2"]);
    assert!(
        seen["achieved"]
            .as_str()
            .and_then(|a| a.parse::<f64>().ok())
            .is_some_and(|a| a > 0.0),
        "{seen}"
    );
    assert!(
        seen["notice"]
            .as_str()
            .is_some_and(|n| n.contains("from 4 to 6")),
        "{seen}"
    );
    assert!(seen["device_seq"].as_u64().is_some(), "{seen}");
    assert!(
        seen["device_agent"]
            .as_str()
            .is_some_and(|a| a.starts_with("a1") || a.starts_with("a2")),
        "{seen}"
    );
    assert!(
        seen["command_reply"]
            .as_str()
            .is_some_and(|r| r.contains("applied")),
        "{seen}"
    );
    assert!(seen["controls"].as_u64().is_some_and(|n| n > 0), "{seen}");
    assert_eq!(seen["read_only_controls"], 0, "{seen}");
    assert_eq!(seen["read_only_command_form"], false, "{seen}");
    assert_eq!(seen["report_has_svg"], true, "{seen}");
    // The chart of injected faults shows lossy's drops.
    assert!(
        seen["injected_dropped_per_s"]
            .as_f64()
            .is_some_and(|d| d > 0.0),
        "{seen}"
    );
    // The report holds `pluribusctl report`'s window figures: a table row, the JSON and
    // the CSV, each with web's messages, and lossy's injected drops.
    assert!(
        seen["report_window_messages"]
            .as_u64()
            .is_some_and(|m| m > 0),
        "{seen}"
    );
    assert_eq!(seen["report_json_scope"], "window", "{seen}");
    assert!(
        seen["report_json_web_messages"]
            .as_u64()
            .is_some_and(|m| m > 0),
        "{seen}"
    );
    assert!(
        seen["report_csv_web"]
            .as_str()
            .is_some_and(|r| r.starts_with("fleet,web,")),
        "{seen}"
    );
    assert!(
        seen["report_lossy_injected"]
            .as_str()
            .is_some_and(|t| t.contains("dropped")),
        "{seen}"
    );
    assert_eq!(seen["scenario_name"], "dash-smoke", "{seen}");
    assert_eq!(seen["scenario_state"], "done", "{seen}");
    assert_eq!(seen["scenario_verdict"], "passed", "{seen}");
    assert!(
        seen["scenario_check"]
            .as_str()
            .is_some_and(|n| n.contains("agents_alive")),
        "{seen}"
    );
    assert_eq!(seen["scenario_check_verdict"], "pass", "{seen}");
    // Two agents are alive: the value shown is theirs.
    assert!(
        seen["scenario_check_value"]
            .as_str()
            .is_some_and(|v| v.contains('2')),
        "{seen}"
    );
    assert_eq!(seen["long_state"], "running", "{seen}");
    assert_eq!(seen["long_step"], "2/2", "{seen}");
    assert_eq!(seen["long_step_text"], "wait 10m", "{seen}");
    assert_eq!(seen["long_verdict"], "-", "{seen}");
    assert_eq!(seen["page_errors"], serde_json::json!([]), "{seen}");
    // What the page did is what the CLI reports.
    assert_eq!(fleet(&c.status(), "web")["desired"], 6);
    assert!(shots.join("dashboard.png").is_file());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_listen_flags_are_refused_before_anything_starts() {
    let c = Cluster::new("dashflags");
    let out = c.ctl(&["dashboard", "--listen", "0.0.0.0:0"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("needs a token") && out.stderr.contains("--token"),
        "{}",
        out.stderr
    );
    let out = c.ctl(&["dashboard", "--token", "short"]);
    assert!(
        out.stderr.contains("--token is too short"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_refuses_other_hosts_posts_without_the_page_header_and_read_only_controls() {
    let c = Cluster::new("dashapi");
    let (_ro, url) = dashboard(&c, &["--read-only"]).await;
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let get = |host: &str, path: &str, post: Option<(&str, bool)>| -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).expect("connect");
        let req = match post {
            Some((body, header)) => format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                if header { "x-pluribus-dashboard: 1\r\n" } else { "" },
                body.len()
            ),
            None => format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        };
        s.write_all(req.as_bytes()).expect("write");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read");
        let code = resp
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (code, resp)
    };
    assert_eq!(get(&addr, "/", None).0, 200);
    assert_eq!(get("attacker.example", "/", None).0, 403, "DNS rebinding");
    let scale = r#"{"action":"scale","fleet":"f","count":1}"#;
    assert_eq!(
        get(&addr, "/api/control", Some((scale, false))).0,
        403,
        "no page header"
    );
    let (code, body) = get(&addr, "/api/control", Some((scale, true)));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("read-only"), "{body}");
    let (code, body) = get(&addr, "/report?window=forever", None);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("window 'forever'"), "{body}");
    let (code, body) = get(&addr, "/api/device?id=nope-00001", None);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("no device nope-00001"), "{body}");
}
