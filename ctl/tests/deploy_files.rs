//! The ready-made deployments hold together, checked offline (no Docker engine or
//! Kubernetes cluster here): deploy/compose is valid for `docker-compose config` and wires
//! what it says; deploy/k8s is a well-formed Deployment + PodDisruptionBudget whose probes,
//! ports and selectors agree; every flag they pass exists in the real binaries' --help.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use pluribus_testkit::{bin_path, run};
use serde_yaml_ng::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `--flag` names in `args` (`--flag=value` or `--flag value`).
fn flags(args: &[String]) -> Vec<String> {
    args.iter()
        .filter(|a| a.starts_with("--"))
        .map(|a| a.split('=').next().unwrap_or(a).to_string())
        .collect()
}

/// Panics unless every flag is in `bin ... --help`.
fn known(bin: &str, sub: &[&str], used: &[String]) {
    let mut args: Vec<&str> = sub.to_vec();
    args.push("--help");
    let help = run(&bin_path(bin), &args, &[], Duration::from_secs(30));
    help.ok();
    for f in used {
        assert!(
            help.stdout.contains(&format!("{f} "))
                || help.stdout.contains(&format!("{f}\n"))
                || help.stdout.contains(&format!("{f}="))
                || help.stdout.contains(&format!("{f} <")),
            "{bin} {sub:?} has no flag {f}"
        );
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_compose_file_is_valid_and_wires_a_whole_setup() {
    let file = repo().join("deploy/compose/docker-compose.yml");
    let out = run(
        Path::new("docker-compose"),
        &["-f", &file.display().to_string(), "config"],
        &[("PLURIBUS_DASHBOARD_TOKEN", "test-token-123456")],
        Duration::from_secs(60),
    );
    assert_eq!(
        out.code, 0,
        "docker-compose config refused it (install it with deploy/install-deps.sh):\n{}",
        out.stderr
    );
    let doc: Value = serde_yaml_ng::from_str(&out.stdout).expect("config prints YAML");
    let services = doc["services"].as_mapping().expect("services");
    let names: Vec<&str> = services.keys().filter_map(|k| k.as_str()).collect();
    for want in [
        "nats-1",
        "nats-2",
        "nats-3",
        "agent-1",
        "agent-2",
        "agent-3",
        "mosquitto",
        "prometheus",
        "grafana",
        "dashboard",
    ] {
        assert!(names.contains(&want), "no service {want} in {names:?}");
    }
    for n in ["nats-1", "nats-2", "nats-3"] {
        let cmd = strings(&doc["services"][n]["command"]).join(" ");
        assert!(
            cmd.contains("--js") && cmd.contains("--routes"),
            "{n}: {cmd}"
        );
    }
    let mut agent_flags = Vec::new();
    for a in ["agent-1", "agent-2", "agent-3"] {
        let s = &doc["services"][a];
        let cmd = strings(&s["command"]);
        assert_eq!(cmd[0], "pluribus-agent", "{a}");
        let text = cmd.join(" ");
        assert!(
            text.contains("--kv-replicas 3") && text.contains("--metrics-listen 0.0.0.0:9464"),
            "{a}: {text}"
        );
        let url = s["environment"]["PLURIBUS_NATS_URL"]
            .as_str()
            .unwrap_or_default();
        for u in url.split(',') {
            assert!(
                u.strip_prefix("nats://")
                    .and_then(|h| h.split(':').next())
                    .is_some_and(|h| names.contains(&h)),
                "{a}: PLURIBUS_NATS_URL {url}: {u} names no NATS service"
            );
        }
        agent_flags.extend(flags(&cmd[1..]));
    }
    roles_are_wired(&doc);
    known("pluribus-agent", &[], &agent_flags);
    let dash = strings(&doc["services"]["dashboard"]["command"]);
    assert_eq!(&dash[..2], ["pluribusctl", "dashboard"]);
    known("pluribusctl", &["dashboard"], &flags(&dash[2..]));
    assert_eq!(
        doc["services"]["dashboard"]["environment"]["PLURIBUS_DASHBOARD_TOKEN"],
        "test-token-123456"
    );
    // Prometheus scrapes the agents by their service names and metrics port.
    let prom: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo().join("deploy/grafana/prometheus.yml"))
            .expect("prometheus.yml"),
    )
    .expect("prometheus.yml is YAML");
    let targets = strings(&prom["scrape_configs"][0]["static_configs"][0]["targets"]);
    assert_eq!(targets, ["agent-1:9464", "agent-2:9464", "agent-3:9464"]);
    // Grafana mounts files that exist.
    for v in strings(&doc["services"]["grafana"]["volumes"]) {
        let src = v.split(':').next().unwrap_or_default();
        assert!(
            Path::new(src).exists(),
            "grafana mounts {src}, which does not exist"
        );
    }
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.matches("\nFROM ").count() + usize::from(dockerfile.starts_with("FROM ")) >= 2,
        "multi-stage"
    );
    assert!(
        dockerfile.contains("-p pluribus-agent -p pluribusctl"),
        "both binaries"
    );
}

/// Users and passwords of deploy/nats/roles.conf (`user: NAME, password: PW`).
fn role_users() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("deploy/nats/roles.conf")).expect("roles.conf");
    text.lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("user:")?;
            let (user, pw) = rest.split_once(", password:")?;
            Some((user.trim().to_string(), pw.trim().to_string()))
        })
        .collect()
}

/// NATS runs with deploy/nats/roles.conf (a config the real nats-server accepts), the agents
/// log in as `agent` and the dashboard and ctl as `operator`, with roles.conf's passwords.
fn roles_are_wired(doc: &Value) {
    let users = role_users();
    let names: Vec<&str> = users.iter().map(|(u, _)| u.as_str()).collect();
    assert_eq!(names, ["operator", "viewer", "agent"], "roles.conf users");
    for n in ["nats-1", "nats-2", "nats-3"] {
        let s = &doc["services"][n];
        let cmd = strings(&s["command"]);
        let conf = cmd
            .iter()
            .position(|a| a == "-c")
            .and_then(|i| cmd.get(i + 1))
            .unwrap_or_else(|| panic!("{n} runs without -c CONFIG: {cmd:?}"));
        // The mounted files, under their names in the container, as nats-server reads them.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut mounted = Vec::new();
        for v in strings(&s["volumes"]) {
            let mut parts = v.split(':');
            let (Some(src), Some(dst)) = (parts.next(), parts.next()) else {
                continue;
            };
            if !dst.starts_with("/etc/nats/") {
                continue;
            }
            let file = dst.trim_start_matches("/etc/nats/");
            std::fs::copy(src, dir.path().join(file))
                .unwrap_or_else(|e| panic!("{n} mounts {src}: {e}"));
            mounted.push(file.to_string());
        }
        assert!(
            mounted.contains(&"roles.conf".to_string()),
            "{n} mounts no roles.conf: {mounted:?}"
        );
        let local = dir.path().join(conf.trim_start_matches("/etc/nats/"));
        let text = std::fs::read_to_string(&local)
            .unwrap_or_else(|e| panic!("{n}: -c {conf} is not mounted: {e}"));
        assert!(text.contains("include ./roles.conf"), "{n}: {conf}");
        let out = run(
            pluribus_testkit::nats_server_binary(),
            &["-t", "-c", &local.display().to_string()],
            &[],
            Duration::from_secs(30),
        );
        assert_eq!(
            out.code, 0,
            "nats-server refuses {conf} of {n}: {}{}",
            out.stdout, out.stderr
        );
    }
    let login = |service: &str, role: &str| {
        let env = &doc["services"][service]["environment"];
        assert_eq!(
            env["PLURIBUS_NATS_USER"], role,
            "{service} logs in as {role}"
        );
        let pw = users
            .iter()
            .find(|(u, _)| u == role)
            .map(|(_, p)| p.as_str());
        assert_eq!(
            env["PLURIBUS_NATS_PASSWORD"].as_str(),
            pw,
            "{service}: the default password is roles.conf's"
        );
    };
    for a in ["agent-1", "agent-2", "agent-3"] {
        login(a, "agent");
    }
    login("dashboard", "operator");
    login("ctl", "operator");
}

#[test]
fn the_kubernetes_manifests_agree_with_themselves_and_the_agent() {
    let text = std::fs::read_to_string(repo().join("deploy/k8s/agents.yaml")).expect("agents.yaml");
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("each document is YAML"))
        .collect();
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"] == k)
            .unwrap_or_else(|| panic!("no {k}"))
    };
    let dep = kind("Deployment");
    assert_eq!(dep["apiVersion"], "apps/v1");
    let selector = &dep["spec"]["selector"]["matchLabels"];
    let labels = dep["spec"]["template"]["metadata"]["labels"]
        .as_mapping()
        .expect("labels");
    for (k, v) in selector.as_mapping().expect("selector") {
        assert_eq!(labels.get(k), Some(v), "the selector matches the pods");
    }
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    for what in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(!c["resources"][what][r].is_null(), "resources.{what}.{r}");
        }
    }
    let args = strings(&c["args"]);
    let listen = args
        .iter()
        .find_map(|a| a.strip_prefix("--metrics-listen="))
        .expect("--metrics-listen");
    let port: u64 = listen
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port");
    let ports = c["ports"].as_sequence().expect("ports");
    let metrics = ports
        .iter()
        .find(|p| p["name"] == "metrics")
        .expect("a port named metrics");
    assert_eq!(metrics["containerPort"].as_u64(), Some(port));
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(c[probe]["httpGet"]["path"], "/metrics", "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "metrics", "{probe}");
    }
    known("pluribus-agent", &[], &flags(&args));
    let pdb = kind("PodDisruptionBudget");
    assert_eq!(pdb["apiVersion"], "policy/v1");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector);

    let values: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo().join("deploy/k8s/nats-values.yaml"))
            .expect("nats-values.yaml"),
    )
    .expect("values are YAML");
    assert_eq!(values["config"]["jetstream"]["enabled"], true);
    assert_eq!(values["config"]["cluster"]["replicas"], 3);
}
