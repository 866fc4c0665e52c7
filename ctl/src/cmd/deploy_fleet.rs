//! `deploy-fleet`: a fleet from flags (--count) or from a file (--file).

use std::path::PathBuf;

use anyhow::Result;
use pluribus_common::record::RecordKind;
use pluribus_common::spec::{load_fleet_file, FleetSpec};
use pluribus_common::SpecError;
use serde::Serialize;

use super::deploy::{bad_spec, check_spec, DeployFlags};
use super::Global;
use crate::apply;
use crate::output::{plural, print_json, shares_text};
use crate::state::{running, Share};

/// Deploy a fleet.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Fleet name (optional with --file when the file names the fleet).
    #[arg(value_name = "NAME", required_unless_present = "file")]
    pub name: Option<String>,
    /// Number of devices, with ids from --id-template.
    #[arg(long, value_name = "N", required_unless_present = "file")]
    pub count: Option<u64>,
    /// Fleet file (.yaml, .yml, .toml or .json). --count, --shard-size, --interval,
    /// --jitter, --placement, --duration, --seed and the load flags given with it win over
    /// the file (a load flag changes only its part of the file's load); the type, profile
    /// and sink are the file's (edit it to change them).
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with_all = [
            "id_template", "device_type", "sink", "subject", "profile",
            "url", "method", "header", "http_timeout", "http_retries", "http_concurrency",
            "http_ca", "http_cert", "http_key",
            "broker", "protocol", "topic", "qos", "retain", "keepalive", "persistent_session",
            "client_id", "username", "password", "ca", "cert", "key", "connect_rate",
            "max_connecting", "source_ips", "command_topic", "response_topic", "will", "birth",
            "role", "subscribe", "fix_host", "sender_comp_id", "target_comp_id", "fix_version",
            "heartbeat", "message", "symbols", "no_reset_seq_num", "fix_username",
            "fix_password", "fix_ca", "logon_rate",
        ]
    )]
    pub file: Option<PathBuf>,
    /// Devices per shard (one agent runs a whole shard) [default: 500].
    #[arg(long, value_name = "S")]
    pub shard_size: Option<u32>,
    /// Device ids, with {fleet} and {index} or {index:05} [default: {fleet}-{index:05}].
    #[arg(long, value_name = "T")]
    pub id_template: Option<String>,
    /// How the devices behave and how to deploy them.
    #[command(flatten)]
    pub flags: DeployFlags,
    /// How devices come online and how fast the fleet sends.
    #[command(flatten)]
    pub load: super::load_flags::LoadFlags,
}

impl Args {
    /// The spec the arguments describe, validated.
    pub fn spec(&self) -> Result<FleetSpec, SpecError> {
        let spec = match (&self.file, self.count) {
            (Some(path), count) => {
                let mut spec = load_fleet_file(path, self.name.as_deref())?;
                if let Some(n) = count {
                    if !spec.devices.is_empty() {
                        return Err(SpecError::new(
                            "--count",
                            "the file lists its devices: drop --count, or edit the list",
                        ));
                    }
                    spec.count = Some(n);
                }
                if let Some(s) = self.shard_size {
                    spec.shard_size = s;
                }
                self.flags.override_file(&mut spec);
                let count = spec.count.unwrap_or(spec.devices.len() as u64);
                spec.load = self
                    .load
                    .merge(spec.load.as_ref(), 0.0, count, spec.seed.unwrap_or(0))?
                    .load;
                spec
            }
            (None, count) => {
                let mut spec = FleetSpec::counted(
                    self.name.as_deref().unwrap_or_default(),
                    count.unwrap_or_default(),
                );
                if let Some(s) = self.shard_size {
                    spec.shard_size = s;
                }
                spec.id_template = self.id_template.clone();
                self.flags.apply_to(&mut spec)?;
                spec.load = self.load.spec()?;
                spec
            }
        };
        check_spec(&spec)?;
        Ok(spec)
    }
}

#[derive(Serialize)]
struct Output<'a> {
    fleet: &'a str,
    desired: u64,
    /// Devices in shards held by agents (their leases).
    assigned: u64,
    /// Deprecated: the same as `assigned`; will be removed.
    running: u64,
    agents: Vec<Share>,
    unchanged: bool,
}

/// Runs `deploy-fleet`.
pub async fn run(g: &Global, args: Args) -> Result<()> {
    let spec = args.spec().map_err(bad_spec)?;
    let done = apply::deploy(
        &g.open().await?,
        args.flags.request(RecordKind::Fleet, spec),
    )
    .await?;
    let run = running(&done.record, &done.leases);
    let out = Output {
        fleet: done.record.name(),
        desired: done.record.desired(),
        assigned: run.devices,
        running: run.devices,
        agents: run.agents,
        unchanged: done.unchanged,
    };
    if g.json {
        return print_json(&out);
    }
    let same = if out.unchanged {
        " (deployed already with this spec: unchanged)"
    } else {
        ""
    };
    if out.assigned >= out.desired {
        println!(
            "fleet {}: {}/{} devices assigned to {}{same}: {}",
            out.fleet,
            out.assigned,
            out.desired,
            plural(out.agents.len() as u64, "agent"),
            shares_text(&out.agents)
        );
    } else {
        println!(
            "fleet {}: {}/{} devices assigned so far{same}: see `pluribusctl status {}`",
            out.fleet, out.assigned, out.desired, out.fleet
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::{Cli, Command};
    use clap::Parser;
    use std::time::Duration;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        let mut argv = vec!["pluribusctl", "deploy-fleet"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv)?;
        let Command::DeployFleet(a) = cli.command else {
            unreachable!("parsed as another command")
        };
        Ok(*a)
    }

    #[test]
    fn flags_build_a_counted_fleet() {
        let a = parse(&[
            "f1",
            "--count",
            "1000",
            "--shard-size",
            "100",
            "--id-template",
            "dev-{index}",
            "--interval",
            "2s",
            "--sink",
            "nats",
        ])
        .expect("parses");
        let s = a.spec().expect("valid");
        assert_eq!(s.name, "f1");
        assert_eq!(s.count, Some(1000));
        assert_eq!(s.shard_size, 100);
        assert_eq!(s.id_template.as_deref(), Some("dev-{index}"));
        assert_eq!(s.device.interval, Duration::from_secs(2));
        assert_eq!(s.sink.kind, "nats");
        let d = parse(&["f1", "--count", "3"])
            .expect("parses")
            .spec()
            .expect("valid");
        assert_eq!(d.shard_size, pluribus_common::spec::DEFAULT_SHARD_SIZE);
    }

    #[test]
    fn file_and_count_exclude_each_other() {
        let e = parse(&["--file", "f.yaml", "--sink", "nats"]).expect_err("conflict");
        assert!(e.to_string().contains("cannot be used with"), "{e}");
        parse(&["--file", "f.yaml", "--interval", "2s", "--count", "3"]).expect("overrides");
        // Flags about the deploy itself go with a file.
        parse(&[
            "--file",
            "f.yaml",
            "--replace",
            "--no-wait",
            "--timeout",
            "5s",
        ])
        .expect("ok");
        let e = parse(&["f"]).expect_err("missing count");
        assert!(e.to_string().contains("--count"), "{e}");
        let e = parse(&["--count", "3"]).expect_err("missing name");
        assert!(e.to_string().contains("NAME"), "{e}");
    }

    #[test]
    fn files_give_the_spec() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fleet.yaml");
        std::fs::write(&path, "name: meters\ncount: 20\nshard_size: 5\n").expect("write");
        let p = path.to_string_lossy().to_string();
        let s = parse(&["--file", &p])
            .expect("parses")
            .spec()
            .expect("valid");
        assert_eq!(
            (s.name.as_str(), s.count, s.shard_size),
            ("meters", Some(20), 5)
        );
        let e = parse(&["other", "--file", &p])
            .expect("parses")
            .spec()
            .expect_err("names differ");
        assert!(e.message.contains("drop one of them"), "{e}");
    }

    /// The profile's interval when no flag is given; the flag's when one is (it was ignored).
    #[test]
    fn a_flag_wins_over_a_profile_and_a_file() {
        let interval = |s: &FleetSpec| {
            let profile = s.device.options.get("interval").and_then(|v| v.as_str());
            (s.device.interval, profile.map(str::to_string))
        };
        let p = |args: &[&str]| parse(args).expect("parses").spec().expect("valid");
        let own = p(&["pp", "--count", "5", "--profile", "temperature-humidity"]);
        assert_eq!(
            interval(&own),
            (Duration::from_secs(10), Some("10s".into()))
        );
        let flag = p(&[
            "pp",
            "--count",
            "5",
            "--profile",
            "temperature-humidity",
            "--interval",
            "1s",
        ]);
        assert_eq!(interval(&flag), (Duration::from_secs(1), Some("1s".into())));
        let jitter = p(&[
            "pp",
            "--count",
            "5",
            "--profile",
            "temperature-humidity",
            "--jitter",
            "2s",
        ]);
        assert_eq!(jitter.device.jitter, Duration::from_secs(2));
        assert_eq!(interval(&jitter).0, Duration::from_secs(10));

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fleet.yaml");
        std::fs::write(
            &path,
            "name: m\ncount: 20\nseed: 1\ndevice:\n  type: profile\n  options: {name: x, interval: 5s, fields: {a: 1}}\n",
        )
        .expect("write");
        let f = path.to_string_lossy().to_string();
        let from_file = p(&["--file", &f]);
        assert_eq!(
            interval(&from_file),
            (Duration::from_secs(1), Some("5s".into()))
        );
        let over = p(&[
            "--file",
            &f,
            "--interval",
            "2s",
            "--count",
            "7",
            "--seed",
            "9",
        ]);
        assert_eq!(interval(&over), (Duration::from_secs(2), Some("2s".into())));
        assert_eq!((over.count, over.seed), (Some(7), Some(9)));
        // A load flag changes its part of the file's load only.
        std::fs::write(
            &path,
            "name: m\ncount: 20\nload:\n  arrival: {ramp: {over: 60s}}\n",
        )
        .expect("write");
        let rate = p(&["--file", &f, "--rate", "50/s"]);
        let load = rate.load.expect("a load");
        assert!(load.arrival.is_some(), "the file's arrival is kept");
        assert_eq!(load.rate.map(|r| r.target), Some(50.0));
    }

    #[test]
    fn spec_errors_name_the_field() {
        let e = parse(&["f", "--count", "3", "--shard-size", "0"])
            .expect("parses")
            .spec()
            .expect_err("shard size");
        assert_eq!(e.field, "shard_size");
        let e = parse(&["f.x", "--count", "3"])
            .expect("parses")
            .spec()
            .expect_err("name");
        assert_eq!(e.field, "name");
        let e = parse(&["f", "--count", "3", "--id-template", "same"])
            .expect("parses")
            .spec()
            .expect_err("template");
        assert_eq!(e.field, "id_template");
    }
}
