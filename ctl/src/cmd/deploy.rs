//! `deploy`: one device, and the flags every deploy command shares.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use pluribus_common::names::validate_name;
use pluribus_common::record::RecordKind;
use pluribus_common::spec::{DeviceEntry, DeviceTemplate, FleetSpec, SinkSpec, DEFAULT_INTERVAL};
use pluribus_common::SpecError;
use serde::Serialize;

use super::sink_flags::SinkFlags;
use super::Global;
use crate::apply::{self, DeployRequest};
use crate::output::print_json;

/// How the devices behave and how to deploy them; shared by `deploy` and `deploy-fleet`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeployFlags {
    /// Device type: `generic`, or a custom type registered in the agents.
    #[arg(long = "type", value_name = "TYPE", default_value = "generic")]
    pub device_type: String,
    /// Describe the devices with a profile: a file (.yaml, .toml, .json) or a built-in
    /// name (see `pluribusctl profiles`). Sets the device type to `profile`.
    #[arg(long, value_name = "FILE|NAME", conflicts_with = "device_type")]
    pub profile: Option<String>,
    /// Where telemetry goes: `console` (JSON lines on the agent's stdout), `nats`, `mqtt` (one
    /// connection per device), `http`, `fix` (FIX 4.4 sessions), or a custom sink registered
    /// in the agents.
    #[arg(long, value_name = "SINK", default_value = "console")]
    pub sink: String,
    /// Subject template for the nats sink, with {fleet}, {device_id}, {index}
    /// [default: pluribus.telemetry.{fleet}.{device_id}].
    #[arg(long, value_name = "TEMPLATE")]
    pub subject: Option<String>,
    /// Time between two telemetry messages of a device, e.g. 1s, 250ms. Given, it wins
    /// over a --profile's own interval [default: the profile's interval, else 1s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub interval: Option<Duration>,
    /// Each message goes out up to this much after its slot; shorter than --interval.
    /// Given, it wins over a --profile's own jitter [default: the profile's, else 0s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub jitter: Option<Duration>,
    /// Agent labels the devices need, e.g. zone=a,rack=3 (the flag may repeat).
    #[arg(long, value_name = "K=V,...", value_delimiter = ',', value_parser = parse_label)]
    pub placement: Vec<(String, String)>,
    /// Stop and delete the deployment this long after it was first deployed, e.g. 10m.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Seed for the devices' random values, so a run can be repeated exactly.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Replace a deployment of the same name that has a different spec.
    #[arg(long)]
    pub replace: bool,
    /// Return once the deployment is recorded and offered; do not wait for agents to run it.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for every device to run.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Options of the http sink (`--url`, `--header`, ...).
    #[command(flatten)]
    pub http: super::http_flags::HttpFlags,
    /// Options of the mqtt sink (`--broker`, `--topic`, `--qos`, ...).
    #[command(flatten)]
    pub mqtt: super::mqtt_flags::MqttFlags,
    /// Options of the fix sink (`--fix-host`, `--target-comp-id`, ...).
    #[command(flatten)]
    pub fix: super::fix_flags::FixFlags,
}

/// `k=v`.
fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
            Ok((k.trim().to_string(), v.trim().to_string()))
        }
        _ => Err(format!(
            "'{s}' is not a label: write key=value, e.g. zone=a"
        )),
    }
}

impl DeployFlags {
    /// The sink the flags describe.
    fn sink_spec(&self) -> Result<SinkSpec, SpecError> {
        self.http.check_sink(&self.sink)?;
        self.mqtt.check_sink(&self.sink)?;
        self.fix.check_sink(&self.sink)?;
        match (self.sink.as_str(), &self.subject) {
            ("nats", subject) => Ok(SinkSpec::nats(subject.as_deref())),
            ("http", subject) => self.http.sink_spec(subject.as_deref()),
            ("mqtt", subject) => self.mqtt.sink_spec(subject.as_deref()),
            ("fix", subject) => self.fix.sink_spec(subject.as_deref()),
            ("console", Some(_)) => Err(SpecError::new(
                "sink.subject",
                "--subject goes with --sink nats (or a custom sink): add --sink nats or drop --subject",
            )),
            (kind, subject) => {
                let mut s = SinkSpec {
                    kind: kind.to_string(),
                    options: Default::default(),
                };
                if let Some(subject) = subject {
                    s.options.insert("subject".into(), subject.clone().into());
                }
                Ok(s)
            }
        }
    }

    /// The device template: `--type`, or `--profile` (a file or a built-in name).
    fn device_template(&self) -> Result<DeviceTemplate, SpecError> {
        let Some(p) = &self.profile else {
            return Ok(DeviceTemplate {
                kind: self.device_type.clone(),
                interval: self.interval.unwrap_or(DEFAULT_INTERVAL),
                jitter: self.jitter.unwrap_or_default(),
                options: serde_json::Value::Null,
            });
        };
        let path = std::path::Path::new(p);
        let mut profile = if path.exists() {
            pluribus_common::profile::load_profile(path)?
        } else if let Some(b) = pluribus_common::profile::builtin_profile(p) {
            b
        } else {
            let names: Vec<&str> = pluribus_common::profile::builtin()
                .iter()
                .map(|(n, _)| *n)
                .collect();
            return Err(SpecError::new(
                "--profile",
                format!(
                    "'{p}' is neither a file nor a built-in profile: give a path, or one of {}",
                    names.join(", ")
                ),
            ));
        };
        // A flag on the command line wins over the profile's own value; without the flag the
        // profile's applies, and without either the fleet default.
        if let Some(i) = self.interval {
            profile.interval = Some(i);
        }
        if let Some(j) = self.jitter {
            profile.jitter = Some(j);
            profile.interval = profile.interval.or(Some(DEFAULT_INTERVAL));
        }
        profile.validate().map_err(|e| {
            let flag = match e.field.as_str() {
                "interval" | "jitter" => format!("--{}", e.field),
                other => format!("--profile: {other}"),
            };
            SpecError::new(flag, e.message)
        })?;
        let options = serde_json::to_value(&profile)
            .map_err(|e| SpecError::new("--profile", format!("cannot encode the profile: {e}")))?;
        Ok(DeviceTemplate {
            kind: "profile".into(),
            interval: profile.interval.unwrap_or(DEFAULT_INTERVAL),
            jitter: profile.jitter.unwrap_or_default(),
            options,
        })
    }

    /// Sets on a spec read from a file what the command line gives explicitly: a flag wins
    /// over the file (--interval, --jitter, --placement, --duration, --seed).
    pub fn override_file(&self, spec: &mut FleetSpec) {
        spec.device.override_timing(self.interval, self.jitter);
        if !self.placement.is_empty() {
            spec.placement = self.placement.iter().cloned().collect();
        }
        if self.duration.is_some() {
            spec.duration = self.duration;
        }
        if self.seed.is_some() {
            spec.seed = self.seed;
        }
    }

    /// Sets what the flags say on `spec`: device template, sink, placement, duration.
    pub fn apply_to(&self, spec: &mut FleetSpec) -> Result<(), SpecError> {
        spec.device = self.device_template()?;
        spec.sink = self.sink_spec()?;
        spec.placement = self.placement.iter().cloned().collect::<BTreeMap<_, _>>();
        spec.duration = self.duration;
        spec.seed = self.seed;
        Ok(())
    }

    /// The deploy request for `spec`.
    pub fn request(&self, kind: RecordKind, spec: FleetSpec) -> DeployRequest {
        DeployRequest {
            kind,
            spec,
            replace: self.replace,
            no_wait: self.no_wait,
            timeout: self.timeout,
        }
    }
}

/// Checks a spec before any I/O (names are safe as KV keys, subjects and topics).
pub fn check_spec(spec: &FleetSpec) -> Result<(), SpecError> {
    spec.validate()
}

/// The error for a bad spec.
pub fn bad_spec(e: SpecError) -> anyhow::Error {
    anyhow::anyhow!("bad spec: {e}")
}

/// Deploy one device.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The device id [default: a new random UUID, so each call adds a device].
    #[arg(long, value_name = "ID")]
    pub device_id: Option<String>,
    /// How the device behaves and how to deploy it.
    #[command(flatten)]
    pub flags: DeployFlags,
}

/// The spec of a single device: a fleet named after it, listing only it, one shard.
pub fn device_spec(device_id: &str, flags: &DeployFlags) -> Result<FleetSpec, SpecError> {
    validate_name("device_id", device_id)?;
    let mut spec = FleetSpec::counted(device_id, 0);
    spec.count = None;
    spec.devices = vec![DeviceEntry {
        device_id: device_id.to_string(),
        kind: None,
        sink: None,
        interval: None,
        options: serde_json::Value::Null,
    }];
    spec.shard_size = 1;
    flags.apply_to(&mut spec)?;
    check_spec(&spec).map_err(|e| {
        if e.field == "name" {
            SpecError::new("device_id", e.message)
        } else {
            e
        }
    })?;
    Ok(spec)
}

#[derive(Serialize)]
struct Output<'a> {
    device_id: &'a str,
    fleet: &'a str,
    agent_id: Option<&'a str>,
    agent_name: Option<&'a str>,
    unchanged: bool,
}

/// Runs `deploy`.
pub async fn run(g: &Global, args: Args) -> Result<()> {
    let id = args
        .device_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let spec = device_spec(&id, &args.flags).map_err(bad_spec)?;
    let done = apply::deploy(
        &g.open().await?,
        args.flags.request(RecordKind::Device, spec),
    )
    .await?;
    let holder = done
        .leases
        .get(&0)
        .filter(|l| l.generation == done.record.generation);
    if g.json {
        return print_json(&Output {
            device_id: &id,
            fleet: done.record.name(),
            agent_id: holder.map(|l| l.agent_id.as_str()),
            agent_name: holder.map(|l| l.agent_name.as_str()),
            unchanged: done.unchanged,
        });
    }
    let same = if done.unchanged {
        " (deployed already with this spec: unchanged)"
    } else {
        ""
    };
    match holder {
        Some(l) => println!(
            "device {id} running on agent {} ({}){same}",
            l.agent_name, l.agent_id
        ),
        None => println!(
            "device {id} recorded{same}; no agent runs it yet: see `pluribusctl status {id}`"
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `deploy-fleet --help` said "console, nats, or a custom sink".
    #[test]
    fn sink_help_lists_every_builtin_sink() {
        use clap::CommandFactory;
        let mut cli = crate::cmd::Cli::command();
        let help = cli
            .find_subcommand_mut("deploy-fleet")
            .expect("deploy-fleet")
            .render_long_help()
            .to_string();
        let sink = help
            .split("--sink <SINK>")
            .nth(1)
            .and_then(|rest| rest.split("\n\n").next())
            .expect("--sink in the help");
        for name in pluribus_common::spec::BUILTIN_SINKS {
            assert!(
                sink.contains(&format!("`{name}`")),
                "--sink help misses {name}: {sink}"
            );
        }
    }
    use crate::cmd::{Cli, Command};
    use clap::Parser;

    fn flags(args: &[&str]) -> DeployFlags {
        let mut argv = vec!["pluribusctl", "deploy"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("parses");
        let Command::Deploy(a) = cli.command else {
            unreachable!("parsed as another command")
        };
        a.flags
    }

    #[test]
    fn a_device_is_a_fleet_of_one_listed_device() {
        let f = flags(&["--interval", "250ms", "--placement", "zone=a,rack=3"]);
        let s = device_spec("dev-1", &f).expect("valid");
        assert_eq!(s.name, "dev-1");
        assert_eq!(s.count, None);
        assert_eq!(s.devices.len(), 1);
        assert_eq!(s.devices[0].device_id, "dev-1");
        assert_eq!(s.shard_size, 1);
        assert_eq!(s.device.interval, Duration::from_millis(250));
        assert_eq!(s.placement.get("rack").map(String::as_str), Some("3"));
        assert_eq!(s.sink, SinkSpec::console());
    }

    #[test]
    fn sink_flags_build_the_sink() {
        let s = device_spec(
            "d",
            &flags(&["--sink", "nats", "--subject", "t.{device_id}"]),
        )
        .expect("valid");
        assert_eq!(s.sink, SinkSpec::nats(Some("t.{device_id}")));
        let s = device_spec("d", &flags(&["--sink", "kafka"])).expect("valid");
        assert_eq!(s.sink.kind, "kafka");
        let e = device_spec("d", &flags(&["--subject", "t.x"])).expect_err("console+subject");
        assert_eq!(e.field, "sink.subject");
        let e = device_spec("d", &flags(&["--sink", "nats", "--subject", "t.*"]))
            .expect_err("wildcard");
        assert_eq!(e.field, "sink.subject");
    }

    #[test]
    fn bad_values_name_the_field() {
        let e = device_spec("a.b", &flags(&[])).expect_err("dot");
        assert_eq!(e.field, "device_id");
        let e = device_spec("a:b", &flags(&[])).expect_err("colon");
        assert_eq!(e.field, "device_id");
        assert!(e.message.contains("letters, digits"), "{e}");
        let e =
            device_spec("d", &flags(&["--interval", "1s", "--jitter", "2s"])).expect_err("jitter");
        assert_eq!(e.field, "device.jitter");
        assert_eq!(
            bad_spec(e).to_string(),
            "bad spec: device.jitter: 2s must be shorter than the interval (1s)"
        );
    }

    #[test]
    fn durations_and_labels_are_checked_by_clap() {
        let e = Cli::try_parse_from(["pluribusctl", "deploy", "--interval", "1x"])
            .expect_err("bad duration");
        assert!(e.to_string().contains("--interval"), "{e}");
        let e = Cli::try_parse_from(["pluribusctl", "deploy", "--placement", "zone"])
            .expect_err("bad label");
        assert!(e.to_string().contains("key=value"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }
}
