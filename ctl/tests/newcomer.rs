//! What a new user stumbled on (issue 10), each end to end against a real nats-server and
//! real agents: the documented fleet files deploy, events keep their history, a closed
//! stdout ends pluribusctl quietly, agent logs are plain text, and `--interval` wins over a
//! profile's own interval.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use pluribus_testkit::bin_path;
use pluribus_testkit::docs::doc_blocks;
use support::{collect, fleet, wait_status, write_file, Cluster};

/// Every fleet file in the docs deploys as written and its devices run.
#[tokio::test(flavor = "multi_thread")]
async fn documented_fleet_files_deploy_and_run() {
    let mut c = Cluster::new("docs");
    // The README's fleet asks for agents labelled zone=a.
    c.agent("a1", &["--labels", "zone=a"]);
    c.wait_agents(1).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let fleets: Vec<_> = doc_blocks()
        .into_iter()
        .filter(|b| b.lang == "yaml" && b.text.lines().any(|l| l.starts_with("name:")))
        .collect();
    assert!(fleets.len() >= 2, "found only {} fleet files", fleets.len());
    for (i, b) in fleets.iter().enumerate() {
        let path = write_file(&dir, &format!("fleet-{i}.yaml"), &b.text);
        let out = c.ctl(&["deploy-fleet", "--file", &path, "--no-wait", "--json"]);
        assert_eq!(out.code, 0, "{}: deploy failed: {}", b.at(), out.stderr);
        let name = out.json()["fleet"]
            .as_str()
            .expect("fleet name")
            .to_string();
        wait_status(
            &c,
            &format!("{}: devices running", b.at()),
            Duration::from_secs(45),
            |s| fleet(s, &name)["running"].as_u64().unwrap_or(0) > 0,
        )
        .await;
        c.ctl(&["delete-fleet", &name]).ok();
    }
}

/// `events` shows what happened before it started (kept in a bounded JetStream stream);
/// `--since 0s` shows nothing old; the agent's retention flags reach the stream.
#[tokio::test(flavor = "multi_thread")]
async fn events_keep_a_bounded_history() {
    let mut c = Cluster::new("hist");
    c.agent("a1", &["--events-max-age", "2h", "--events-max-mb", "8"]);
    c.wait_agents(1).await;
    c.ctl(&[
        "deploy-fleet",
        "past",
        "--count",
        "3",
        "--sink",
        "nats",
        "--subject",
        "hist-tel.{device_id}",
    ])
    .ok();

    let out = c.ctl(&["events", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let kinds: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect();
    let has = |kind: &str| kinds.iter().any(|e| e["event"] == kind);
    assert!(
        has("agent_joined") && has("fleet_created") && has("shard_claimed"),
        "{}",
        out.stdout
    );

    let none = c.ctl(&["events", "--since", "0s"]);
    assert_eq!(
        (none.code, none.stdout.as_str()),
        (0, ""),
        "{}",
        none.stderr
    );
    assert!(none.stderr.contains("no events"), "{}", none.stderr);

    let js = async_nats::jetstream::new(c.client().await);
    let mut stream = js
        .get_stream(c.namespace().events_stream())
        .await
        .expect("the agent created the events stream");
    let config = stream.info().await.expect("stream info").config.clone();
    assert_eq!(config.max_age, Duration::from_secs(7200));
    assert_eq!(config.max_bytes, 8 * 1024 * 1024);

    let bad = c.ctl(&["events", "--events-max-age", "5s"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("--events-max-age") && bad.stderr.contains("1m"),
        "{}",
        bad.stderr
    );
}

/// `pluribusctl agents --json | head -c 20` and `watch | head -2` used to panic or print
/// "Broken pipe"; a closed stdout now ends the program quietly, as it ends `ls`.
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_stdout_ends_quietly() {
    let mut c = Cluster::new("pipe");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let spawn = |args: &[&str]| {
        Command::new(bin_path("pluribusctl"))
            .args(args)
            .env("PLURIBUS_NATS_URL", c.nats.url())
            .env("PLURIBUS_NAMESPACE", &c.ns)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pluribusctl")
    };
    let quiet = |child: std::process::Child, what: &str| {
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let by_sigpipe = out.status.signal() == Some(libc::SIGPIPE);
        assert!(
            out.status.success() || by_sigpipe,
            "{what}: exit {:?}: {stderr}",
            out.status
        );
        assert!(
            !stderr.contains("Broken pipe") && !stderr.contains("panicked"),
            "{what}: {stderr}"
        );
    };

    // The reader is gone before the first write.
    let mut agents = spawn(&["agents", "--json"]);
    drop(agents.stdout.take());
    quiet(agents, "agents --json");

    // The reader goes after two frames, while watch keeps writing.
    let mut watch = spawn(&["watch", "--interval", "200ms"]);
    let stdout = watch.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    for _ in 0..2 {
        lines.next().expect("a line").expect("utf-8");
    }
    drop(lines);
    quiet(watch, "watch | head -2");
}

/// The agent's log, written to a file, holds no colour codes and no Rust debug forms.
#[tokio::test(flavor = "multi_thread")]
async fn agent_logs_are_plain_text() {
    let mut c = Cluster::new("logs");
    let i = c.agent("a1", &["--metrics-listen", "127.0.0.1:0"]);
    c.wait_agents(1).await;
    let log = c.agents[i].stderr();
    assert!(log.contains("connection capacity"), "{log}");
    assert!(!log.contains('\u{1b}'), "ANSI codes in a log file:\n{log}");
    assert!(
        !log.contains("Some("),
        "Rust debug forms in the log:\n{log}"
    );
}

/// `--interval` given with `--profile` wins over the profile's own interval (it used to be
/// ignored: the profile's 10 s applied).
#[tokio::test(flavor = "multi_thread")]
async fn interval_wins_over_a_profile() {
    let mut c = Cluster::new("pint");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let client = c.client().await;
    let mut sub = client.subscribe("pint-tel.>").await.expect("subscribe");
    client.flush().await.expect("flush");
    c.ctl(&[
        "deploy-fleet",
        "pp",
        "--count",
        "2",
        "--profile",
        "temperature-humidity",
        "--interval",
        "200ms",
        "--sink",
        "nats",
        "--subject",
        "pint-tel.{device_id}",
    ])
    .ok();
    tokio::time::timeout(Duration::from_secs(20), sub.next())
        .await
        .expect("the first message within 20 s");
    // Devices send their on_start at once and their first slot ~2 s later. At 200 ms, 2
    // devices then send ~30 messages in 5 s; at the profile's 10 s, at most 4 with on_start.
    let seen = collect(&mut sub, Duration::from_secs(5)).await;
    let n: usize = seen.seqs.values().map(Vec::len).sum();
    assert!(
        n >= 12,
        "{n} messages in 5 s: --interval 200ms was not applied"
    );
}

/// `deploy/demo.sh stop` says that it keeps the fleets; `reset` forgets them; the first
/// build shows its progress; an unknown argument is refused.
#[test]
fn the_demo_script_stops_resets_and_shows_its_build() {
    let root = pluribus_testkit::docs::workspace_root();
    let script = root.join("deploy/demo.sh");
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("demo");
    std::fs::create_dir_all(state.join("js")).expect("mkdir");
    let demo = |arg: &str| {
        Command::new("bash")
            .arg(&script)
            .arg(arg)
            .env("PLURIBUS_DEMO_DIR", &state)
            .output()
            .expect("run demo.sh")
    };
    let stop = demo("stop");
    let said = String::from_utf8_lossy(&stop.stdout);
    assert!(stop.status.success() && said.contains("reset"), "{said}");
    assert!(state.join("js").exists(), "stop must keep the store");
    let reset = demo("reset");
    assert!(
        reset.status.success(),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    assert!(!state.exists(), "reset must delete the store");
    let bad = demo("bogus");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("reset"));
    let text = std::fs::read_to_string(&script).expect("read demo.sh");
    let build = text
        .lines()
        .find(|l| l.trim_start().starts_with("cargo build"))
        .expect("demo.sh builds");
    assert!(
        !build.contains("--quiet"),
        "the build must show progress: {build}"
    );
}
