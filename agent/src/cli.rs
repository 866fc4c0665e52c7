//! `pluribus-agent` flags, turned into a validated [`AgentConfig`] before any I/O.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use pluribus_common::connect::NatsArgs;
use pluribus_common::names::validate_name;

use crate::config::{AgentConfig, DEFAULT_HEARTBEAT, DEFAULT_LEASE_TTL, DEFAULT_WAKE_GRID};

/// Runs Pluribus virtual devices: claims shards of fleets from NATS and runs them until
/// told otherwise. Start as many as you like; they share the work.
#[derive(Debug, Parser)]
#[command(name = "pluribus-agent", version, about, long_about = None)]
pub struct AgentArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Name shown in status (default: host name and process id).
    #[arg(long, env = "PLURIBUS_AGENT_NAME")]
    pub name: Option<String>,
    /// Labels fleets can require with placement, e.g. zone=a,rack=3.
    #[arg(long, env = "PLURIBUS_AGENT_LABELS", value_parser = parse_labels, default_value = "")]
    pub labels: BTreeMap<String, String>,
    /// Most devices this agent runs; it claims no more (default: no limit).
    #[arg(long, env = "PLURIBUS_MAX_DEVICES")]
    pub max_devices: Option<u64>,
    /// Most devices with a connection of their own (MQTT) this agent runs (default: its
    /// open-files limit less 256, so failover never overloads a survivor).
    #[arg(long, env = "PLURIBUS_MAX_CONNECTIONS")]
    pub max_connections: Option<u64>,
    /// Time-to-live of the agent's liveness entry, on which its shard leases stand: a dead
    /// agent's devices run elsewhere about this long after it dies, and an agent cut off
    /// from NATS stops its devices after 75% of it [default: 3s].
    #[arg(long, env = "PLURIBUS_LEASE_TTL", value_parser = humantime::parse_duration)]
    pub lease_ttl: Option<Duration>,
    /// Heartbeat interval [default: 2s].
    #[arg(long, env = "PLURIBUS_HEARTBEAT", value_parser = humantime::parse_duration)]
    pub heartbeat: Option<Duration>,
    /// Wake-up grid of the device timers, 1ms to 50ms [default: 1ms]: a device's message
    /// goes out at the first multiple of it at or after its slot, so every shard due in the
    /// same grid step wakes once and sends in one burst. A coarser grid costs less CPU per
    /// message (fewer wake-ups of the agent and of the broker) and adds up to one step of
    /// tick lag.
    #[arg(long, env = "PLURIBUS_WAKE_GRID", value_parser = humantime::parse_duration)]
    pub wake_grid: Option<Duration>,
    /// Do not release shards to less loaded agents by itself (`pluribusctl rebalance` still works).
    #[arg(long, env = "PLURIBUS_NO_AUTO_REBALANCE")]
    pub no_auto_rebalance: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 0.0.0.0:9464 (default: off).
    #[arg(long, env = "PLURIBUS_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Sink specs may reference secrets as `file:NAME` (or an absolute path) only for
    /// regular files under this directory, at most 64 KiB each (default: no files).
    #[arg(long, env = "PLURIBUS_SECRETS_DIR", value_name = "DIR")]
    pub secrets_dir: Option<std::path::PathBuf>,
    /// Sink specs may reference secrets as `env:VAR` only for variables starting with
    /// this prefix ("" allows none). The agent's own NATS credentials never qualify.
    #[arg(
        long,
        env = "PLURIBUS_SECRETS_ENV_PREFIX",
        value_name = "PREFIX",
        default_value = crate::secrets::DEFAULT_ENV_PREFIX
    )]
    pub secrets_env_prefix: String,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "PLURIBUS_LOG_JSON")]
    pub log_json: bool,
}

fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("'{pair}' is not key=value: write e.g. zone=a,rack=3"))?;
        validate_name("label key", k).map_err(|e| e.to_string())?;
        validate_name("label value", v).map_err(|e| e.to_string())?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

impl AgentArgs {
    /// The agent configuration, validated.
    pub fn config(&self) -> Result<AgentConfig, String> {
        let name = match &self.name {
            Some(n) => n.clone(),
            None => default_name(),
        };
        validate_name("--name", &name).map_err(|e| e.to_string())?;
        // The defaults live in agent.rs (DEFAULT_LEASE_TTL, DEFAULT_HEARTBEAT) only.
        let lease_ttl = self.lease_ttl.unwrap_or(DEFAULT_LEASE_TTL);
        let heartbeat = self.heartbeat.unwrap_or(DEFAULT_HEARTBEAT);
        if lease_ttl < Duration::from_secs(3) {
            return Err(format!(
                "--lease-ttl {:?} is too short: use 3s or more (default {:?})",
                lease_ttl, DEFAULT_LEASE_TTL
            ));
        }
        if heartbeat < Duration::from_millis(200) || heartbeat > Duration::from_secs(30) {
            return Err(format!(
                "--heartbeat {:?} is out of range: use 200ms to 30s (default {:?})",
                heartbeat, DEFAULT_HEARTBEAT
            ));
        }
        let wake_grid = self.wake_grid.unwrap_or(DEFAULT_WAKE_GRID);
        if wake_grid < Duration::from_millis(1)
            || wake_grid > Duration::from_millis(50)
            || !wake_grid.subsec_nanos().is_multiple_of(1_000_000)
        {
            return Err(format!(
                "--wake-grid {:?} is out of range: use whole milliseconds from 1ms to 50ms (default {:?})",
                wake_grid, DEFAULT_WAKE_GRID
            ));
        }
        if self.max_devices == Some(0) {
            return Err(
                "--max-devices 0 would take no work: give at least 1, or leave it out for no limit"
                    .into(),
            );
        }
        Ok(AgentConfig {
            name,
            labels: self.labels.clone(),
            max_devices: self.max_devices,
            max_connections: self.max_connections,
            lease_ttl,
            heartbeat,
            wake_grid,
            reconcile: Duration::from_secs(2),
            auto_rebalance: !self.no_auto_rebalance,
            metrics_listen: self.metrics_listen,
            secrets: crate::secrets::SecretPolicy {
                dir: self.secrets_dir.clone(),
                env_prefix: self.secrets_env_prefix.clone(),
                forbidden_files: [
                    &self.nats.nats_creds,
                    &self.nats.nats_nkey,
                    &self.nats.nats_key,
                ]
                .into_iter()
                .flatten()
                .cloned()
                .collect(),
            },
            liveness_client: None,
        })
    }
}

fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "agent".into());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_and_errors_say_how() {
        let l = parse_labels("zone=a, rack=3").expect("ok");
        assert_eq!(l.get("zone").map(String::as_str), Some("a"));
        assert!(parse_labels("zone").expect_err("bad").contains("key=value"));
        assert!(parse_labels("zo.ne=a").is_err());
        assert!(parse_labels("").expect("empty").is_empty());
    }

    #[test]
    fn config_checks_ranges() {
        let args = AgentArgs::parse_from(["pluribus-agent", "--lease-ttl", "1s"]);
        assert!(args.config().expect_err("short").contains("--lease-ttl"));
        let args = AgentArgs::parse_from(["pluribus-agent", "--max-devices", "0"]);
        assert!(args.config().expect_err("zero").contains("--max-devices"));
        for bad in ["0ms", "60ms", "1500us"] {
            let args = AgentArgs::parse_from(["pluribus-agent", "--wake-grid", bad]);
            assert!(
                args.config().expect_err(bad).contains("--wake-grid"),
                "{bad}"
            );
        }
        let args = AgentArgs::parse_from(["pluribus-agent", "--wake-grid", "5ms"]);
        assert_eq!(
            args.config().expect("5ms").wake_grid,
            Duration::from_millis(5)
        );
        let args = AgentArgs::parse_from(["pluribus-agent", "--name", "a1", "--labels", "zone=a"]);
        let c = args.config().expect("ok");
        assert_eq!(c.name, "a1");
        let e = AgentArgs::try_parse_from(["pluribus-agent", "--metrics-listen", "nope"])
            .expect_err("bad address");
        assert!(e.to_string().contains("--metrics-listen"), "{e}");
    }
}
