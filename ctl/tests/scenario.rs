//! `pluribusctl scenario`: real nats-server (and mosquitto), real agents, the real binary.
//! Each example of examples/scenarios runs small (variables) and passes; a failing check,
//! abort_on_fail, Ctrl-C and a malformed file end as documented, and clean up.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use pluribus_testkit::{bin_path, wait_until, Mosquitto, Output, Proc};
use support::Cluster;

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/scenarios")
        .join(name)
        .display()
        .to_string()
}

/// `pluribusctl scenario ARGS` in the cluster's namespace.
fn scenario(c: &Cluster, args: &[&str]) -> Output {
    let mut argv = vec!["scenario"];
    argv.extend_from_slice(args);
    c.ctl(&argv)
}

fn fleets(c: &Cluster) -> Vec<String> {
    c.status()["fleets"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(|f| f["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn show(o: &Output) -> String {
    format!(
        "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.code, o.stdout, o.stderr
    )
}

/// Reads a JUnit file with junitparser (PyPI): (suite, case, failed) for every case.
fn junit_cases(path: &Path) -> Vec<(String, String, bool)> {
    let script = r#"
import sys, json
from junitparser import JUnitXml, TestSuite
xml = JUnitXml.fromfile(sys.argv[1])
suites = [xml] if isinstance(xml, TestSuite) else list(xml)
out = []
for s in suites:
    for case in s:
        out.append([s.name, case.name, not case.is_passed])
print(json.dumps(out))
"#;
    let o = std::process::Command::new("python3")
        .args(["-c", script, &path.display().to_string()])
        .output()
        .expect("python3 runs (deploy/install-deps.sh installs junitparser)");
    assert!(
        o.status.success(),
        "junitparser cannot read {}: {}",
        path.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("json")
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).expect("write");
    p
}

/// broker soak (MQTT through mosquitto), small: exits 0; the JUnit file parses with a
/// third-party reader and holds one test case per check, all passed; the JSON report and
/// a second run against it as a baseline say the same checks; the fleet is gone.
#[tokio::test(flavor = "multi_thread")]
async fn broker_soak_passes_with_a_junit_file_a_report_and_a_baseline() {
    let broker = Mosquitto::start();
    let mut c = Cluster::new("scen-soak");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let junit = dir.path().join("junit.xml");
    let report = dir.path().join("report.json");
    let url = format!("BROKER={}", broker.url());
    let file = example("broker-soak.yaml");
    let common = [
        "run",
        file.as_str(),
        "--set",
        "DEVICES=20",
        "--set",
        "RAMP=1s",
        "--set",
        "HOLD=3s",
        "--set",
        url.as_str(),
        "--set",
        "P99=5s",
        "--set",
        "RATE_WINDOW=4s",
    ];
    let mut args = common.to_vec();
    let (j, r) = (junit.display().to_string(), report.display().to_string());
    args.extend(["--junit", j.as_str(), "--report", r.as_str()]);
    let out = scenario(&c, &args);
    assert_eq!(out.code, 0, "{}", show(&out));
    assert!(
        out.stdout.contains("scenario broker-soak: passed"),
        "{}",
        show(&out)
    );

    let cases = junit_cases(&junit);
    let names: Vec<&str> = cases.iter().map(|(_, n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "wait for all devices connected",
            "received >= 1",
            "loss == 0",
            "duplicates == 0",
            "p99 < 5s",
            "connect_failures == 0",
            "no shard_fenced",
            "rate >= 95% of scheduled",
        ],
        "{cases:?}"
    );
    assert!(
        cases
            .iter()
            .all(|(s, _, failed)| s == "broker-soak" && !failed),
        "{cases:?}"
    );

    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(doc["verdict"], "passed");
    assert_eq!(doc["checks"].as_array().map(Vec::len), Some(8));
    assert!(
        doc["probes"]["broker"]["received"].as_u64() > Some(0),
        "{doc}"
    );
    assert!(fleets(&c).is_empty(), "the cleanup deleted the fleet");

    // The same run against its own report: every check compared, none new or gone.
    let mut again = common.to_vec();
    again.extend(["--baseline", r.as_str()]);
    let out = scenario(&c, &again);
    assert_eq!(out.code, 0, "{}", show(&out));
    assert!(
        out.stdout.contains("compared with the baseline:"),
        "{}",
        show(&out)
    );
    for name in ["loss == 0", "p99 < 5s", "no shard_fenced"] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.contains(&format!(" {name}: ")) && !l.starts_with("new")),
            "{name} not compared: {}",
            show(&out)
        );
    }
}

/// A check nobody can pass: exit status 3, and the failing check is named in the table
/// and the JUnit file.
#[tokio::test(flavor = "multi_thread")]
async fn an_impossible_threshold_fails_with_exit_3_and_names_the_check() {
    let mut c = Cluster::new("scen-fail");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        &dir,
        "s.yaml",
        "fleets:\n  f: {count: 5, device: {interval: 200ms}, sink: {type: nats, subject: 'imp.{device_id}'}}\nsteps:\n  - probe: {subject: 'imp.>'}\n  - deploy: f\n  - wait: 4s\n  - expect:\n      checks:\n        - received >= 1\n        - {check: 'received >= 1000000000', name: a billion messages}\n",
    );
    let junit = dir.path().join("j.xml");
    let out = scenario(
        &c,
        &[
            "run",
            &file.display().to_string(),
            "--junit",
            &junit.display().to_string(),
        ],
    );
    assert_eq!(out.code, 3, "{}", show(&out));
    let failed = out
        .stdout
        .lines()
        .find(|l| l.contains("a billion messages"))
        .unwrap_or_default();
    assert!(
        failed.contains("FAIL") && failed.contains(">= 1000000000"),
        "{}",
        show(&out)
    );
    assert!(
        out.stdout.contains("FAILED (1 of 2 checks failed)"),
        "{}",
        show(&out)
    );
    let cases = junit_cases(&junit);
    assert_eq!(
        cases
            .iter()
            .map(|(_, n, f)| (n.as_str(), *f))
            .collect::<Vec<_>>(),
        [("received >= 1", false), ("a billion messages", true)]
    );
    assert!(fleets(&c).is_empty());
}

/// abort_on_fail: the run stops at the failing check (the 10-minute wait after it never
/// runs), exits 3, and still deletes what it deployed.
#[tokio::test(flavor = "multi_thread")]
async fn abort_on_fail_stops_early_and_cleans_up() {
    let mut c = Cluster::new("scen-abort");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        &dir,
        "s.yaml",
        "fleets:\n  f: {count: 4, sink: {type: nats}}\nsteps:\n  - deploy: f\n  - expect:\n      abort_on_fail: true\n      checks: [agents_alive >= 5]\n  - wait: 10m\n",
    );
    let started = std::time::Instant::now();
    let out = scenario(&c, &["run", &file.display().to_string(), "--json"]);
    assert_eq!(out.code, 3, "{}", show(&out));
    assert!(
        started.elapsed() < Duration::from_secs(80),
        "the wait after the failing check ran"
    );
    let doc = out.json();
    assert_eq!(doc["verdict"], "failed");
    assert!(
        doc["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("agents_alive >= 5"),
        "{doc}"
    );
    assert_eq!(
        doc["steps"].as_array().map(Vec::len),
        Some(2),
        "the wait never started: {doc}"
    );
    assert_eq!(doc["cleanup"][0], "fleet f deleted", "{doc}");
    assert!(fleets(&c).is_empty());
}

/// Ctrl-C during a step: the cleanup runs (nothing left in `status --json`), exit 130.
#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_cleans_up() {
    let mut c = Cluster::new("scen-int");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        &dir,
        "s.yaml",
        "fleets:\n  f: {count: 6, sink: {type: nats}}\n  g: {count: 3, sink: {type: nats}}\nsteps:\n  - parallel: [{deploy: f}, {deploy: g}]\n  - wait: 10m\n",
    );
    let url = c.nats.url();
    let mut p = Proc::spawn(
        &bin_path("pluribusctl"),
        &["scenario", "run", &file.display().to_string()],
        &[
            ("PLURIBUS_NATS_URL", url.as_str()),
            ("PLURIBUS_NAMESPACE", c.ns.as_str()),
        ],
    );
    wait_until(
        "both fleets deployed and the wait started",
        Duration::from_secs(30),
        || {
            let started = p.stderr().contains("[2/2] wait");
            async move { started }
        },
    )
    .await;
    assert_eq!(fleets(&c), ["f", "g"]);
    // SAFETY: sending a signal to a child process we own.
    unsafe {
        libc::kill(p.pid() as i32, libc::SIGINT);
    }
    wait_until("the run to end", Duration::from_secs(60), || {
        let running = p.is_running();
        async move { !running }
    })
    .await;
    let code = p.terminate(Duration::from_secs(1));
    assert_eq!(code, Some(130), "{}", p.stderr());
    assert!(
        p.stderr().contains("cleanup: fleet f deleted"),
        "{}",
        p.stderr()
    );
    assert!(fleets(&c).is_empty(), "{}", c.status());
}

/// A malformed scenario: `check` and `run` name the file, the line and the field, exit 2,
/// and nothing is deployed.
#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_scenario_names_line_and_field_and_deploys_nothing() {
    let mut c = Cluster::new("scen-bad");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        &dir,
        "bad.yaml",
        "fleets:\n  f: {count: 4, sink: {type: nats}}\nsteps:\n  - deploy: f\n  - scale: {fleet: f, count: 8}\n  - expect:\n      checks:\n        - p99 < soon\n",
    );
    let path = file.display().to_string();
    for verb in ["check", "run"] {
        let out = scenario(&c, &[verb, &path]);
        assert_eq!(out.code, 2, "{verb}: {}", show(&out));
        assert!(
            out.stderr.contains(&format!("{path}:8")),
            "{verb}: {}",
            show(&out)
        );
        assert!(
            out.stderr.contains("steps[2].expect.checks[0]"),
            "{verb}: {}",
            show(&out)
        );
        assert!(
            out.stderr.contains("not a duration"),
            "{verb}: {}",
            show(&out)
        );
    }
    let file = write(
        &dir,
        "unknown.yaml",
        "fleets:\n  f: {count: 4}\nsteps:\n  - deploy: f\n  - scale: {fleet: nope, count: 8}\n",
    );
    let out = scenario(&c, &["run", &file.display().to_string()]);
    assert_eq!(out.code, 2, "{}", show(&out));
    assert!(
        out.stderr.contains(
            "unknown.yaml:5: steps[1].scale.fleet: 'nope' is not one of the scenario's fleets"
        ),
        "{}",
        show(&out)
    );
    assert!(fleets(&c).is_empty(), "nothing deployed");
}

/// bad network, small: 10% of the devices partitioned with store and forward; every
/// buffered message arrives after (no loss).
#[tokio::test(flavor = "multi_thread")]
async fn bad_network_example_delivers_every_buffered_message() {
    let mut c = Cluster::new("scen-net");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let file = example("bad-network.yaml");
    let out = scenario(
        &c,
        &[
            "run",
            &file,
            "--set",
            "DEVICES=40",
            "--set",
            "PARTITION=3s",
            "--set",
            "SETTLE=3s",
            "--json",
        ],
    );
    assert_eq!(out.code, 0, "{}", show(&out));
    let doc = out.json();
    assert_eq!(doc["verdict"], "passed", "{doc}");
    // The rule was set and announced, its end (`for:`) announced too, and the devices
    // sent while partitioned: the probe saw every device and more messages than one per
    // device.
    assert_eq!(doc["events"]["network_changed"], 2, "{doc}");
    assert_eq!(doc["probes"]["delivered"]["devices"], 40, "{doc}");
    assert!(fleets(&c).is_empty());
}

/// failover drill, small: 3 agents, the one holding most of the fleet drained; every device
/// runs again within 15 s and no (device, seq) arrives twice.
#[tokio::test(flavor = "multi_thread")]
async fn failover_drill_example_passes_on_three_agents() {
    let mut c = Cluster::new("scen-drill");
    for n in ["a1", "a2", "a3"] {
        c.agent(n, &[]);
    }
    c.wait_agents(3).await;
    let file = example("failover-drill.yaml");
    let out = scenario(
        &c,
        &[
            "run",
            &file,
            "--set",
            "DEVICES=30",
            "--set",
            "SHARD=5",
            "--set",
            "HOLD=2s",
            "--json",
        ],
    );
    assert_eq!(out.code, 0, "{}", show(&out));
    let doc = out.json();
    let steps: Vec<&str> = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["kind"].as_str())
        .collect();
    assert!(steps.contains(&"kill_agent"), "{doc}");
    // The kill_agent step ended exactly one agent's process, as a crash would (137), and
    // the scenario still saw every device active again, with no (device, seq) twice.
    let mut dead = Vec::new();
    for (i, a) in c.agents.iter_mut().enumerate() {
        if !a.is_running() {
            dead.push(i);
        }
    }
    assert_eq!(
        dead.len(),
        1,
        "one agent should have been killed: {dead:?}\n{doc}"
    );
    let killed = &c.agents[dead[0]];
    assert!(
        killed.stderr().contains("kill command"),
        "{}",
        killed.stderr()
    );
    assert!(fleets(&c).is_empty());
}

/// connect storm, small: every device connected in time, no connect failure.
#[tokio::test(flavor = "multi_thread")]
async fn connect_storm_example_connects_everyone() {
    let broker = Mosquitto::start();
    let mut c = Cluster::new("scen-storm");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    let file = example("connect-storm.yaml");
    let url = format!("BROKER={}", broker.url());
    let out = scenario(
        &c,
        &[
            "run",
            &file,
            "--set",
            "DEVICES=50",
            "--set",
            "CONNECTED_WITHIN=30s",
            "--set",
            &url,
        ],
    );
    assert_eq!(out.code, 0, "{}", show(&out));
    assert!(
        out.stdout.contains("connect_failures == 0"),
        "{}",
        show(&out)
    );
    assert!(fleets(&c).is_empty());
}

/// From Rust: a scenario built in code, run with `pluribus_client::scenario::run`, judged.
#[tokio::test(flavor = "multi_thread")]
async fn a_scenario_built_in_code_runs_from_rust() {
    use clap::Parser;
    use pluribus_client::scenario::check::Check;
    use pluribus_client::scenario::steps::{CheckItem, Deploy, Expect, Probe, WaitFor};
    use pluribus_client::scenario::{run, RunOptions, Scenario, Step, Verdict};
    use pluribus_common::spec::FleetSpec;

    let mut c = Cluster::new("scen-rust");
    c.agent("a1", &[]);
    c.wait_agents(1).await;
    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        nats: pluribus_common::connect::NatsArgs,
    }
    let flags = Flags::parse_from(["t", "--nats-url", &c.nats.url(), "--namespace", &c.ns]);
    let ctx = pluribus_client::Ctx::open(&flags.nats, "scenario-test", |o| o)
        .await
        .expect("connect");

    let mut spec = FleetSpec::counted("coded", 8);
    spec.sink.kind = "nats".into();
    spec.sink
        .options
        .insert("subject".into(), "coded.{device_id}".into());
    let check = |s: &str| CheckItem::Plain(Check::parse(s).expect("check"));
    let s = Scenario {
        name: "coded".into(),
        description: None,
        fleets: [("coded".to_string(), spec)].into(),
        steps: vec![
            Step::Probe(Probe {
                name: "p".into(),
                subject: Some("coded.>".into()),
                broker: None,
                topic: None,
                qos: 0,
                username: None,
                password: None,
            }),
            Step::Deploy(Deploy::Name("coded".into())),
            Step::WaitFor(WaitFor::Condition(
                Check::parse("all devices active").expect("check"),
            )),
            Step::Wait(Duration::from_secs(4)),
            Step::Expect(Expect {
                checks: vec![
                    check("received >= 8"),
                    check("duplicates == 0"),
                    check("active >= 100%"),
                    check("errors == 0"),
                ],
                fleet: None,
                probe: None,
                window: None,
                abort_on_fail: false,
            }),
        ],
        cleanup: Default::default(),
        variables: Default::default(),
        origin: "code".into(),
        step_lines: Vec::new(),
    };
    s.validate().expect("valid");
    let outcome = run(&ctx, &s, RunOptions::default()).await.expect("runs");
    assert_eq!(outcome.verdict, Verdict::Passed, "{:#?}", outcome.checks);
    assert_eq!(outcome.checks.len(), 5);
    assert!(outcome.checks.iter().all(|k| k.passed));
    assert!(outcome.probes["p"].counts.received >= 8);
    assert_eq!(outcome.cleanup, ["fleet coded deleted"]);
}

/// `scenario status RUN --json`, parsed.
fn run_record(c: &Cluster, id: &str) -> serde_json::Value {
    scenario(c, &["status", id, "--json"]).ok().json()
}

/// A detached run survives SIGKILL of the agent executing it: another agent takes its
/// lease once it expires, resumes at the current step and finishes with a verdict; the
/// fleet it deployed is cleaned up. Then a second run is cancelled, and cleaned up too.
#[tokio::test(flavor = "multi_thread")]
async fn a_detached_run_survives_sigkill_of_its_agent_and_can_be_cancelled() {
    let mut c = Cluster::new("scen-detach");
    for n in ["d1", "d2", "d3"] {
        c.agent(n, &[]);
    }
    c.wait_agents(3).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        &dir,
        "long.yaml",
        "fleets:\n  held: {count: 9, shard_size: 3, sink: {type: nats}}\nsteps:\n  - deploy: held\n  - wait: 8s\n  - wait_for: {condition: all devices active, timeout: 40s}\n  - expect: {checks: [active >= 100%]}\n",
    );
    let doc = scenario(
        &c,
        &["run", &file.display().to_string(), "--detach", "--json"],
    )
    .ok()
    .json();
    let id = doc["run"].as_str().expect("a run id").to_string();

    // Wait until an agent runs it and is in the 8 s wait, then SIGKILL that agent.
    let mut holder = String::new();
    wait_until(
        "the run to reach its wait step",
        Duration::from_secs(30),
        || {
            let r = run_record(&c, &id);
            let at_wait = r["state"] == "running" && r["progress"]["step"] == 1;
            holder = r["holder"].as_str().unwrap_or_default().to_string();
            async move { at_wait }
        },
    )
    .await;
    let name = holder.split(' ').next().unwrap_or_default().to_string();
    let idx = ["d1", "d2", "d3"]
        .iter()
        .position(|n| *n == name)
        .unwrap_or_else(|| panic!("holder {holder}"));
    c.agents[idx].kill();

    // Another agent resumes it and it ends with a verdict (logs --follow exits with it).
    let out = c.ctl(&["scenario", "logs", &id, "--follow"]);
    assert_eq!(out.code, 0, "{}", show(&out));
    assert!(
        out.stdout.contains("resumes the run at step 2"),
        "{}",
        show(&out)
    );
    let r = run_record(&c, &id);
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["outcome"]["verdict"], "passed", "{r}");
    assert_eq!(r["takeovers"], 2, "{r}");
    assert!(
        !r["holder"].as_str().unwrap_or_default().starts_with(&name),
        "{r}"
    );
    assert!(fleets(&c).is_empty(), "the resumed run cleaned up");
    let list = scenario(&c, &["list", "--json"]).ok().json();
    assert_eq!(list[0]["verdict"], "passed", "{list}");

    // Cancel: the executing agent stops the run and deletes its fleet.
    let file = write(&dir, "forever.yaml", "fleets:\n  spin: {count: 2, sink: {type: nats}}\nsteps:\n  - deploy: spin\n  - wait: 10m\n");
    let doc = scenario(
        &c,
        &["run", &file.display().to_string(), "--detach", "--json"],
    )
    .ok()
    .json();
    let id = doc["run"].as_str().expect("a run id").to_string();
    wait_until(
        "the second run to reach its wait",
        Duration::from_secs(30),
        || {
            let at_wait = run_record(&c, &id)["progress"]["step"] == 1;
            async move { at_wait }
        },
    )
    .await;
    scenario(&c, &["cancel", &id]).ok();
    let r = run_record(&c, &id);
    assert_eq!(r["outcome"]["verdict"], "cancelled", "{r}");
    assert!(fleets(&c).is_empty(), "the cancelled run cleaned up");
}

/// The other steps against a real cluster: commands to a cohort with their replies judged,
/// scale, set_load, stop, a network rule set and cleared, drain and undrain, repeat and
/// parallel; every check passes and nothing is left.
#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_step_runs() {
    let mut c = Cluster::new("scen-steps");
    c.agent("s1", &[]);
    c.agent("s2", &[]);
    c.wait_agents(2).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        &dir,
        "steps.yaml",
        r#"fleets:
  m: {count: 10, shard_size: 5, device: {interval: 500ms}, sink: {type: nats, subject: "steps.{device_id}"}}
steps:
  - deploy: m
  - wait_for: all devices active
  - command: {fleet: m, cohort: 50%, payload: {set: {temperature: 30}}, within: 10s, expect: replies >= 100%}
  - command: {fleet: m, device: m-00003, payload: {set: {temperature: 31}}, expect: "replies == 1"}
  - parallel:
      - scale: {fleet: m, count: 14}
      - network: {fleet: m, set: {cohort: 10%, loss: {probability: 0.5}}}
  - wait_for: {condition: active >= 14, timeout: 30s}
  - repeat:
      times: 2
      steps:
        - network: {fleet: m, clear: true}
        - wait: 500ms
  - set_load: {fleet: m, load: {rate: {target: 7}}}
  - stop: {fleet: m, device: m-00001}
  - wait_for: {condition: active <= 13, timeout: 30s}
  - drain: {agent: s1}
  - wait_for: {condition: all devices active, timeout: 30s}
  - expect:
      window: 2s
      checks: [scheduled <= 7, agents_alive == 2, errors == 0]
"#,
    );
    let out = scenario(&c, &["run", &file.display().to_string(), "--json"]);
    assert_eq!(out.code, 0, "{}", show(&out));
    let doc = out.json();
    let names: Vec<&str> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["name"].as_str())
        .collect();
    assert!(names.iter().any(|n| n.contains("replies >= 100%")), "{doc}");
    assert_eq!(doc["events"]["fleet_scaled"], 1, "{doc}");
    assert_eq!(doc["events"]["network_changed"], 3, "{doc}");
    assert!(
        doc["cleanup"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap_or_default().contains("takes work again")),
        "{doc}"
    );
    assert!(fleets(&c).is_empty());
    let agents = c.ctl(&["agents", "--json"]).ok().json();
    assert!(
        agents["agents"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["draining"] == false),
        "{agents}"
    );
}
