//! The command line: global flags, the subcommands, and the connection they share.

mod agents;
pub mod delete_fleet;
pub mod deploy;
mod deploy_fleet;
pub mod drain;
pub mod events;
mod http_flags;
pub mod load_flags;
mod mqtt_flags;
mod probe;
mod profiles;
mod rebalance;
mod report;
pub mod scale;
pub mod set_load;
mod status;
pub mod stop;
mod watch;

use anyhow::{anyhow, Result};
use clap::{Parser, Subcommand};
use pluribus_common::connect::{Connection, NatsArgs};
use pluribus_common::kv::Buckets;

/// Deploy, scale, stop and watch Pluribus device fleets over NATS.
///
/// Agents (`pluribus-agent`) run the devices; pluribusctl records what should run in
/// JetStream KV, offers the work to the agents and waits for them to take it.
#[derive(Debug, Parser)]
#[command(name = "pluribusctl", version, about, long_about = None)]
pub struct Cli {
    /// NATS connection.
    #[command(flatten, next_help_heading = "NATS connection (any command)")]
    pub nats: NatsArgs,
    /// Print JSON on stdout instead of tables and sentences (one document; one per line for
    /// `watch` and `events`).
    #[arg(long, global = true, help_heading = "Output (any command)")]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Deploy one device (a new one with a random id unless --device-id is given).
    Deploy(Box<deploy::Args>),
    /// Deploy a fleet of N devices (--count) or the fleet in a file (--file).
    DeployFleet(Box<deploy_fleet::Args>),
    /// Show agents and fleets: devices desired, running and pending, and why.
    Status(status::Args),
    /// List the agents.
    Agents,
    /// Grow or shrink a fleet.
    Scale(scale::Args),
    /// Change a running fleet's load shape (arrival and rate), or clear it with --clear.
    SetLoad(set_load::Args),
    /// Stop one device (of a fleet, or deployed alone).
    Stop(stop::Args),
    /// Delete a fleet (or a single device) and wait for its devices to stop.
    DeleteFleet(delete_fleet::Args),
    /// Live view per fleet and per agent: devices, scheduled and achieved rates, errors,
    /// latency percentiles, saturation.
    #[command(alias = "top")]
    Watch(watch::Args),
    /// Measure what the system under test delivers: end-to-end latency, loss, duplicates
    /// and order, from an MQTT broker or a NATS subject (`probe merge` combines saved probes).
    Probe(probe::Args),
    /// Per-fleet and per-agent figures for a run window (--window), or since the agents
    /// started.
    Report(report::Args),
    /// Make an agent hand off its work and take none (or take work again with --undo).
    Drain(drain::Args),
    /// Ask every agent to release shards above its fair share now.
    Rebalance,
    /// Print events (fleets created, scaled, deleted; shards claimed; agents joining) as
    /// they happen.
    Events(events::Args),
    /// List the built-in device profiles, or print one (`profiles show NAME`).
    Profiles(profiles::Args),
    /// Serve a live web dashboard: agents, fleets, charts, events, a device drill-down,
    /// controls (with an operator NATS credential) and an HTML report.
    Dashboard(crate::dashboard::Args),
}

/// The global flags, given to every command.
#[derive(Debug)]
pub struct Global {
    /// NATS connection flags.
    pub nats: NatsArgs,
    /// `--json`.
    pub json: bool,
}

/// A connection with the buckets open.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The connection (client, JetStream, namespace).
    pub conn: Connection,
    /// The KV buckets.
    pub buckets: Buckets,
    /// The NATS URL, for messages.
    pub url: String,
}

impl Global {
    /// Connects to NATS.
    pub async fn connect(&self) -> Result<Connection> {
        Ok(self.nats.connect("pluribusctl").await?)
    }

    /// Connects to NATS and opens the KV buckets (creating missing ones).
    pub async fn open(&self) -> Result<Ctx> {
        self.open_with("pluribusctl", |o| o).await
    }

    /// Like [`Global::open`], with a connection name and options adjusted by `tune`.
    pub async fn open_with(
        &self,
        name: &str,
        tune: impl FnOnce(async_nats::ConnectOptions) -> async_nats::ConnectOptions,
    ) -> Result<Ctx> {
        let conn = self.nats.connect_with(name, tune).await?;
        let buckets = Buckets::open(&conn.js, &conn.ns, conn.kv_replicas)
            .await
            .map_err(anyhow::Error::msg)?;
        Ok(Ctx {
            conn,
            buckets,
            url: self.nats.nats_url.clone(),
        })
    }
}

impl Ctx {
    /// The command that starts an agent on this NATS and namespace, for messages.
    pub fn agent_command(&self) -> String {
        match self.conn.ns.name() {
            "" => format!("pluribus-agent --nats-url {}", self.url),
            ns => format!("pluribus-agent --nats-url {} --namespace {ns}", self.url),
        }
    }
}

/// Runs the command line.
pub async fn run(cli: Cli) -> Result<()> {
    let g = Global {
        nats: cli.nats,
        json: cli.json,
    };
    match cli.command {
        Command::Deploy(a) => deploy::run(&g, *a).await,
        Command::DeployFleet(a) => deploy_fleet::run(&g, *a).await,
        Command::Status(a) => status::run(&g, a).await,
        Command::Agents => agents::run(&g).await,
        Command::Scale(a) => scale::run(&g, a).await,
        Command::SetLoad(a) => set_load::run(&g, a).await,
        Command::Stop(a) => stop::run(&g, a).await,
        Command::DeleteFleet(a) => delete_fleet::run(&g, a).await,
        Command::Watch(a) => watch::run(&g, a).await,
        Command::Probe(a) => probe::run(&g, a).await,
        Command::Report(a) => report::run(&g, a).await,
        Command::Drain(a) => drain::run(&g, a).await,
        Command::Rebalance => rebalance::run(&g).await,
        Command::Events(a) => events::run(&g, a).await,
        Command::Profiles(a) => profiles::run(&g, a),
        Command::Dashboard(a) => crate::dashboard::run(&g, a).await,
    }
}

/// The error for a fleet name that is not in the fleets bucket.
pub fn no_fleet(name: &str) -> anyhow::Error {
    anyhow!("no fleet named {name}: see `pluribusctl status`")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_has_help() {
        fn check(cmd: &clap::Command, path: &str) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(arg.get_help().is_some(), "{path} {id} has no help text");
            }
            for sub in cmd.get_subcommands() {
                assert!(
                    sub.get_about().is_some(),
                    "{path} {} has no about",
                    sub.get_name()
                );
                check(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        check(&Cli::command(), "pluribusctl");
    }
}
