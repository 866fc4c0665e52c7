//! `probe`: measure what the system under test delivers (latency, loss, duplicates, order),
//! and `probe merge`: combine probes saved on several machines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use pluribus_common::spec::BrokerUrl;
use pluribus_common::time::now_ms;
use tokio_util::sync::CancellationToken;

use super::Global;
use crate::output::{print_json, Progress};
use crate::probe::checks::{self, Check, Limits};
use crate::probe::injected::{self, Injected};
use crate::probe::mqtt::{self, MqttProbe};
use crate::probe::state::{ProbeState, FORMAT};
use crate::probe::summary::{live_line, Summary};
use crate::probe::{ingest, nats, tls};

/// Subscribe where the system under test delivers and report what arrived.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    /// Combine saved probes instead.
    #[command(subcommand)]
    pub merge: Option<Sub>,
    /// The probe to run.
    #[command(flatten)]
    pub run: RunArgs,
}

/// `probe merge`.
#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// Combine probes saved with --save (on several machines) into one summary.
    Merge(MergeArgs),
}

/// Where to listen and for how long.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// MQTT broker the system under test delivers to (with --topic): mqtt://host:1883,
    /// mqtts://host:8883 (TLS), or MQTT over WebSocket: ws://host:80/mqtt, wss://host:443/mqtt
    /// (path /mqtt if none is given). TLS trusts --ca, or the system's roots without it.
    #[arg(long, value_name = "URL", requires = "topic")]
    pub broker: Option<String>,
    /// MQTT topic filter to subscribe to, e.g. telemetry/# (with --broker).
    #[arg(long, value_name = "FILTER", requires = "broker")]
    pub topic: Option<String>,
    /// NATS subject to subscribe to (on the --nats-url server), e.g. 'pluribus.telemetry.>'.
    #[arg(long, value_name = "SUBJECT", conflicts_with_all = ["broker", "topic"])]
    pub subject: Option<String>,
    /// MQTT subscription QoS.
    #[arg(long, value_name = "0|1|2", default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// MQTT user name (with --password).
    #[arg(
        long,
        alias = "mqtt-user",
        value_name = "USER",
        requires = "password",
        env = "PLURIBUS_PROBE_MQTT_USER"
    )]
    pub username: Option<String>,
    /// MQTT password (with --username).
    #[arg(
        long,
        alias = "mqtt-password",
        value_name = "PASSWORD",
        requires = "username",
        env = "PLURIBUS_PROBE_MQTT_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// CA certificate (PEM) that signed the broker's certificate, for mqtts:// and wss://
    /// [default: the system's CA roots].
    #[arg(
        long,
        value_name = "FILE",
        requires = "broker",
        conflicts_with = "subject"
    )]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mqtts:// and wss:// brokers that want one (with --key).
    #[arg(long, value_name = "FILE", requires_all = ["broker", "key"], conflicts_with = "subject")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM; with --cert).
    #[arg(long, value_name = "FILE", requires_all = ["broker", "cert"], conflicts_with = "subject")]
    pub key: Option<PathBuf>,
    /// Stop after this long (default: at Ctrl-C).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Also write what was seen to FILE, for `probe merge`.
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// Report every device, not just every fleet.
    #[arg(long)]
    pub per_device: bool,
    /// Pass/fail limits.
    #[command(flatten)]
    pub limits: Limits,
}

/// `probe merge FILE...`.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// Files written by `probe --save`.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Report every device, not just every fleet.
    #[arg(long)]
    pub per_device: bool,
    /// Also write the merged state to FILE.
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// Pass/fail limits on the merged result.
    #[command(flatten)]
    pub limits: Limits,
}

/// A probe's source, validated.
enum Source {
    Nats(String),
    Mqtt(MqttProbe),
}

impl RunArgs {
    fn source(&self) -> Result<Source> {
        if self.duration.is_some_and(|d| d.is_zero()) {
            bail!("--duration must be longer than 0, e.g. 30s (or leave it out to stop at Ctrl-C)");
        }
        match (&self.subject, &self.broker, &self.topic) {
            (Some(s), None, None) => {
                nats::check_subject(s).map_err(anyhow::Error::msg)?;
                Ok(Source::Nats(s.clone()))
            }
            (None, Some(b), Some(t)) => {
                let broker = BrokerUrl::parse("--broker", b)?;
                mqtt::check_topic(t).map_err(anyhow::Error::msg)?;
                let tls = if broker.tls {
                    let config = tls::client_config(
                        self.ca.as_deref(),
                        self.cert.as_deref(),
                        self.key.as_deref(),
                    )
                    .map_err(anyhow::Error::msg)?;
                    Some(config)
                } else {
                    if let Some(flag) = [("--ca", &self.ca), ("--cert", &self.cert), ("--key", &self.key)]
                        .iter()
                        .find_map(|(f, v)| v.is_some().then_some(f))
                    {
                        bail!("{flag} is for TLS brokers: write the --broker URL as mqtts:// or wss:// (or leave {flag} out)");
                    }
                    None
                };
                Ok(Source::Mqtt(MqttProbe {
                    broker,
                    tls,
                    topic: t.clone(),
                    qos: self.qos,
                    credentials: self.username.clone().zip(self.password.clone()),
                }))
            }
            _ => bail!(
                "probe needs a source: --subject SUBJECT (NATS), or --broker URL with --topic FILTER (MQTT)"
            ),
        }
    }
}

impl Source {
    fn name(&self) -> String {
        match self {
            Self::Nats(s) => format!("nats:{s}"),
            Self::Mqtt(p) => format!("{} {}", mqtt::url(&p.broker), p.topic),
        }
    }
}

/// Runs `probe` or `probe merge`.
pub async fn run(g: &Global, args: Args) -> Result<()> {
    match args.merge {
        Some(Sub::Merge(m)) => merge(g, m),
        None => probe(g, args.run).await,
    }
}

async fn probe(g: &Global, args: RunArgs) -> Result<()> {
    let source = args.source()?;
    let token = CancellationToken::new();
    let mut rx = match &source {
        Source::Nats(subject) => {
            let client = g.nats.connect_core("pluribusctl probe").await?;
            nats::subscribe(&client, subject, token.clone()).await?
        }
        Source::Mqtt(p) => mqtt::subscribe(p, token.clone()).await?,
    };
    let name = source.name();
    let until = args.duration.map_or("until Ctrl-C".to_string(), |d| {
        format!("for {}", crate::output::duration(d))
    });
    // The agents' counters now, to tell what they injected during the probe.
    let before = injected::before(g.open()).await;
    eprintln!("probe: listening on {name} {until}");
    let mut state = ProbeState::new(&name, now_ms());
    let deadline = async {
        match args.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot watch for SIGTERM")?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut progress = Progress::new();
    let mut last = (std::time::Instant::now(), 0u64);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = term.recv() => break,
            _ = &mut deadline => break,
            d = rx.recv() => match d {
                Some(d) => {
                    ingest(&mut state, &d);
                    // Take what is queued without going through select! for each.
                    while let Ok(d) = rx.try_recv() {
                        ingest(&mut state, &d);
                    }
                }
                None => {
                    progress.finish();
                    eprintln!("probe: the connection closed; reporting what arrived");
                    break;
                }
            },
            _ = tick.tick() => {
                let received = state.counts().received;
                let dt = last.0.elapsed().as_secs_f64().max(0.001);
                progress.show(&live_line(&state, received.saturating_sub(last.1) as f64 / dt));
                last = (std::time::Instant::now(), received);
            }
        }
    }
    while let Ok(d) = rx.try_recv() {
        ingest(&mut state, &d);
    }
    token.cancel();
    progress.finish();
    state.ended_ms = now_ms();
    if let Some(path) = &args.save {
        save(&state, path)?;
    }
    let summary = Summary::of(&state, args.per_device);
    let injected = injected::since(before, &summary).await;
    report(g, summary, injected, &args.limits)
}

fn merge(g: &Global, args: MergeArgs) -> Result<()> {
    let mut merged = ProbeState::new("", 0);
    for path in &args.files {
        merged.merge(&load(path)?);
    }
    if let Some(path) = &args.save {
        save(&merged, path)?;
    }
    let summary = Summary::of(&merged, args.per_device);
    report(g, summary, BTreeMap::new(), &args.limits)
}

/// The summary with the checks and their verdict, as `--json` prints it.
#[derive(serde::Serialize)]
struct Report<'a> {
    #[serde(flatten)]
    summary: &'a Summary,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    checks: Vec<Check>,
    /// Per fleet: what the agents' network impairments injected meanwhile.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    injected: BTreeMap<String, Injected>,
    /// False when a check failed.
    passed: bool,
}

/// Prints the summary and the checks; fails with [`checks::ChecksFailed`] (exit status 3)
/// when a check did.
fn report(
    g: &Global,
    summary: Summary,
    injected: BTreeMap<String, Injected>,
    limits: &Limits,
) -> Result<()> {
    let checks = limits.evaluate(&summary);
    let verdict = checks::verdict(&checks);
    if g.json {
        print_json(&Report {
            summary: &summary,
            passed: verdict.is_ok(),
            checks,
            injected,
        })?;
    } else {
        print!("{}", summary.render());
        print!("{}", injected::render(&injected));
        if !checks.is_empty() {
            print!("\n{}", checks::render(&checks));
        }
    }
    Ok(verdict?)
}

/// Writes `state` to `path` (through a temporary file, so a reader never sees half of it).
fn save(state: &ProbeState, path: &Path) -> Result<()> {
    let text = serde_json::to_vec(state).context("cannot encode the probe state")?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write --save {}", path.display()))?;
    eprintln!(
        "probe: saved to {} (combine with `pluribusctl probe merge`)",
        path.display()
    );
    Ok(())
}

/// Reads a state written by [`save`].
fn load(path: &Path) -> Result<ProbeState> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let state: ProbeState = serde_json::from_slice(&text).map_err(|e| {
        anyhow!(
            "{}: not a probe saved with `pluribusctl probe --save`: {e}",
            path.display()
        )
    })?;
    if state.format != FORMAT {
        bail!(
            "{}: saved in format {}, this pluribusctl reads {FORMAT}",
            path.display(),
            state.format
        );
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::Cli;
    use clap::Parser;

    fn parse(args: &[&str]) -> std::result::Result<Cli, clap::Error> {
        Cli::try_parse_from([&["pluribusctl", "probe"], args].concat())
    }

    fn run_args(args: &[&str]) -> RunArgs {
        match parse(args).expect("parses").command {
            crate::cmd::Command::Probe(a) => a.run,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_flags_are_named() {
        let e = parse(&["--broker", "mqtt://h"]).expect_err("no topic");
        assert!(e.to_string().contains("--topic"), "{e}");
        let e =
            parse(&["--subject", "a.>", "--broker", "mqtt://h", "--topic", "t"]).expect_err("both");
        assert!(e.to_string().contains("--subject"), "{e}");
        let e = parse(&["--subject", "a", "--qos", "3"]).expect_err("qos");
        assert!(e.to_string().contains("--qos"), "{e}");
        let e = run_args(&[]).source().err().expect("no source");
        assert!(e.to_string().contains("--subject") && e.to_string().contains("--broker"));
        let e = run_args(&["--subject", "a", "--duration", "0s"])
            .source()
            .err()
            .expect("zero");
        assert!(e.to_string().contains("--duration"));
        let e = run_args(&["--broker", "http://x", "--topic", "t"])
            .source()
            .err()
            .expect("url");
        assert!(e.to_string().contains("--broker"));
        assert!(run_args(&["--subject", "t.>"]).source().is_ok());
        assert!(parse(&["merge", "a.json", "b.json", "--json"]).is_ok());
        assert!(parse(&["merge"]).is_err(), "merge needs files");
    }

    #[test]
    fn every_broker_scheme_of_the_mqtt_sink_is_taken_and_tls_flags_need_tls() {
        let source = |args: &[&str]| run_args(&[&["--topic", "t/#"], args].concat()).source();
        for (url, name) in [
            ("mqtt://h", "mqtt://h:1883 t/#"),
            ("ws://h:8080", "ws://h:8080/mqtt t/#"),
            ("ws://[::1]:9/x", "ws://[::1]:9/x t/#"),
        ] {
            let s = source(&["--broker", url]).expect(url);
            assert_eq!(s.name(), name);
        }
        let e = source(&["--broker", "mqtt://h", "--ca", "/x.pem"])
            .err()
            .expect("--ca without TLS");
        assert!(e.to_string().starts_with("--ca is for TLS brokers"), "{e}");
        let e = source(&["--broker", "mqtts://h", "--ca", "/nonexistent/ca.pem"])
            .err()
            .expect("missing CA file");
        assert!(
            e.to_string().starts_with("--ca /nonexistent/ca.pem: "),
            "{e}"
        );
        let e = source(&["--broker", "wss://h/mqtt", "--ca", "/nonexistent/ca.pem"])
            .err()
            .expect("missing CA file");
        assert!(e.to_string().contains("--ca"), "{e}");
        let e = parse(&["--broker", "mqtts://h", "--topic", "t", "--cert", "c.pem"])
            .expect_err("--cert without --key");
        assert!(e.to_string().contains("--key"), "{e}");
        let e = parse(&["--subject", "a", "--ca", "c.pem"]).expect_err("--ca with NATS");
        assert!(e.to_string().contains("--subject"), "{e}");
        let e = source(&["--broker", "mqtt://h/path"]).err().expect("path");
        assert!(e.to_string().starts_with("--broker: "), "{e}");
    }

    #[test]
    fn saved_files_load_back_and_others_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        let mut s = ProbeState::new("nats:x", 5);
        s.unreadable();
        save(&s, &path).unwrap();
        assert_eq!(load(&path).unwrap(), s);
        std::fs::write(&path, "{}").unwrap();
        assert!(load(&path)
            .unwrap_err()
            .to_string()
            .contains("not a probe saved"));
    }
}
