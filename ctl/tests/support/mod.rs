//! Shared helpers of pluribusctl's end-to-end tests: a real nats-server, real agents and
//! the real pluribusctl binary, driven the way a user drives them.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use pluribus_testkit::{bin_path, run, NatsServer, Output, Proc};

mod pki;
#[allow(unused_imports)]
pub use pki::Pki;

/// A namespace on a NATS server, with agents.
pub struct Cluster {
    pub nats: NatsServer,
    pub ns: String,
    pub agents: Vec<Proc>,
}

impl Cluster {
    /// A new nats-server and no agents.
    pub fn new(ns: &str) -> Self {
        Self {
            nats: NatsServer::start(),
            ns: ns.to_string(),
            agents: Vec::new(),
        }
    }

    /// Starts an agent with a fast heartbeat and `extra` flags; returns its index.
    pub fn agent(&mut self, name: &str, extra: &[&str]) -> usize {
        let p = spawn_agent(&self.nats, &self.ns, name, extra);
        self.agents.push(p);
        self.agents.len() - 1
    }

    /// The namespace, whose methods spell this cluster's subjects and buckets.
    pub fn namespace(&self) -> pluribus_common::subjects::Namespace {
        pluribus_common::subjects::Namespace::new(&self.ns).expect("a valid namespace")
    }

    /// Waits until `n` agents are alive in status.
    pub async fn wait_agents(&self, n: usize) {
        wait_status(
            self,
            &format!("{n} live agents"),
            Duration::from_secs(15),
            |s| {
                s["agents"]
                    .as_array()
                    .is_some_and(|a| a.iter().filter(|a| a["alive"] == true).count() == n)
            },
        )
        .await;
    }

    /// Runs pluribusctl in this namespace (60 s at most).
    pub fn ctl(&self, args: &[&str]) -> Output {
        ctl_at(&self.nats.url(), &self.ns, args)
    }

    /// `status --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        self.ctl(&["status", "--json"]).ok().json()
    }

    /// A client on the server.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.nats.url())
            .await
            .expect("connect to nats")
    }
}

/// A failing test shows what its agents logged (the last lines of each), so that a CI
/// failure can be understood from its output alone.
impl Drop for Cluster {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (i, a) in self.agents.iter().enumerate() {
            let log = a.stderr();
            let lines: Vec<&str> = log.lines().collect();
            let from = lines.len().saturating_sub(80);
            eprintln!(
                "--- agent #{i} (namespace {}), last {} log lines:\n{}",
                self.ns,
                lines.len() - from,
                lines[from..].join("\n")
            );
        }
    }
}

/// Prints the last log lines of `agents` if the test panics while it lives (for tests that
/// start agents without a [`Cluster`]).
pub struct LogsOnPanic<'a>(pub Vec<(&'a str, &'a Proc)>);

impl Drop for LogsOnPanic<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (name, a) in &self.0 {
            let log = a.stderr();
            let lines: Vec<&str> = log.lines().collect();
            let from = lines.len().saturating_sub(80);
            eprintln!(
                "--- agent {name}, last {} log lines:\n{}",
                lines.len() - from,
                lines[from..].join("\n")
            );
        }
    }
}

pub use pluribus_testkit::spawn_agent;

pub fn ctl_at(url: &str, ns: &str, args: &[&str]) -> Output {
    run(
        &bin_path("pluribusctl"),
        args,
        &[("PLURIBUS_NATS_URL", url), ("PLURIBUS_NAMESPACE", ns)],
        Duration::from_secs(90),
    )
}

/// `fleets[]` entry of a status document.
pub fn fleet<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["fleets"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == name))
        .unwrap_or_else(|| panic!("fleet {name} not in status: {status}"))
}

/// Telemetry seen on a subscription: seqs per device, in arrival order.
#[derive(Debug, Default)]
pub struct Seen {
    pub seqs: HashMap<String, Vec<u64>>,
    pub payloads: Vec<serde_json::Value>,
}

impl Seen {
    /// Devices whose seqs do not go up by exactly one.
    pub fn gaps(&self) -> Vec<(String, Vec<u64>)> {
        self.seqs
            .iter()
            .filter(|(_, s)| s.windows(2).any(|w| w[1] != w[0] + 1))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Devices that sent a seq twice or went backwards (two copies running).
    pub fn repeats(&self) -> Vec<String> {
        self.seqs
            .iter()
            .filter(|(_, s)| s.windows(2).any(|w| w[1] <= w[0]))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

impl Seen {
    /// Adds one telemetry message.
    pub fn add(&mut self, msg: &async_nats::Message) {
        let v: serde_json::Value = serde_json::from_slice(&msg.payload).expect("telemetry is JSON");
        // Periodic telemetry only: an event shares its tick's seq.
        if let (Some(id), Some(seq), true) = (
            v["device_id"].as_str(),
            v["seq"].as_u64(),
            v["event"].is_null(),
        ) {
            self.seqs.entry(id.to_string()).or_default().push(seq);
        }
        self.payloads.push(v);
    }
}

/// Collects telemetry for `window`.
pub async fn collect(sub: &mut async_nats::Subscriber, window: Duration) -> Seen {
    let mut seen = Seen::default();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, sub.next()).await {
        seen.add(&msg);
    }
    seen
}

/// Collects telemetry until `done` holds, then for `tail` more (so that anything extra,
/// a second on_stop say, is seen too); panics naming `what` if `done` does not hold by
/// `timeout`.
pub async fn collect_until(
    sub: &mut async_nats::Subscriber,
    what: &str,
    timeout: Duration,
    tail: Duration,
    done: impl Fn(&Seen) -> bool,
) -> Seen {
    let mut seen = Seen::default();
    let deadline = tokio::time::Instant::now() + timeout;
    while !done(&seen) {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(msg)) => seen.add(&msg),
            _ => panic!("{what}: not seen within {timeout:?}"),
        }
    }
    let end = tokio::time::Instant::now() + tail;
    while let Ok(Some(msg)) = tokio::time::timeout_at(end, sub.next()).await {
        seen.add(&msg);
    }
    seen
}

/// Waits until `count` distinct devices send within a 2 s window; panics at `timeout`.
pub async fn wait_sending(
    sub: &mut async_nats::Subscriber,
    count: usize,
    what: &str,
    timeout: Duration,
) -> Seen {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let seen = collect(sub, Duration::from_secs(2)).await;
        if seen.seqs.len() == count {
            return seen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {} of {count} devices sending after {timeout:?}",
            seen.seqs.len()
        );
    }
}

/// Polls `status --json` until `check` holds; panics with the last status at `timeout`.
pub async fn wait_status(
    c: &Cluster,
    what: &str,
    timeout: Duration,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_status_at(&c.nats.url(), &c.ns, what, timeout, check).await
}

/// [`wait_status`] through the NATS server at `url`; a failing `status` counts as "not
/// yet" (the server may be electing a leader).
pub async fn wait_status_at(
    url: &str,
    ns: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let out = ctl_at(url, ns, &["status", "--json"]);
        if out.code == 0 {
            let s = out.json();
            if check(&s) {
                return s;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last status: {}{}",
            out.stdout,
            out.stderr
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Starts pluribusctl on a blocking thread, so several can run at once.
pub fn ctl_bg(c: &Cluster, args: &[&str]) -> tokio::task::JoinHandle<pluribus_testkit::Output> {
    let (url, ns) = (c.nats.url(), c.ns.clone());
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ctl_at(&url, &ns, &args)
    })
}

/// Writes `text` to `name` in `dir`; returns the path.
pub fn write_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write file");
    path.to_str().expect("utf-8 path").to_string()
}
