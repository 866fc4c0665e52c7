//! The command line: global flags, the subcommands, and the connection they share.

mod agents;
pub mod delete_fleet;
pub mod deploy;
mod deploy_fleet;
#[cfg(test)]
mod docs_tests;
pub mod drain;
pub mod events;
mod fix_flags;
mod http_flags;
pub mod load_flags;
mod mqtt_flags;
mod network;
mod probe;
mod profiles;
mod rebalance;
pub(crate) mod report;
pub mod scale;
mod scenario;
mod scenario_args;
mod scenario_detached;
pub mod set_load;
mod sink_flags;
mod status;
pub mod stop;
mod watch;

use anyhow::Result;
use clap::{Parser, Subcommand};
use pluribus_common::connect::{Connection, NatsArgs};

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
    /// Show agents and fleets: devices desired, assigned (to an agent's leases), active
    /// (running now) and pending, and why.
    Status(status::Args),
    /// List the agents: devices assigned and active on each.
    Agents(agents::Args),
    /// Grow or shrink a fleet.
    Scale(scale::Args),
    /// Change a running fleet's load shape (arrival and rate), or clear it with --clear.
    SetLoad(set_load::Args),
    /// Stop one device (of a fleet, or deployed alone).
    Stop(stop::Args),
    /// Delete a fleet (or a single device) and wait for its devices to stop.
    DeleteFleet(delete_fleet::Args),
    /// Live view per fleet and per agent: active devices, scheduled and achieved rates, errors,
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
    /// Impair a running fleet's network (latency, loss, duplicates, reordering, bandwidth,
    /// corruption, clock skew) for all or a cohort of its devices, for ever or --for a
    /// while; clear it; show what is in force; list the presets.
    Network(network::Args),
    /// Check or run a scenario: steps (deploy, scale, network trouble, commands, drains,
    /// probes) with checks (`p99 < 200ms`, `loss <= 0.1%`), a verdict, JUnit and JSON reports.
    Scenario(scenario_args::Args),
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
    /// Permission violations seen on the connection.
    pub denials: crate::denied::Denials,
}

pub use pluribus_client::{no_fleet, Ctx};

impl Global {
    /// Connects to NATS.
    pub async fn connect(&self) -> Result<Connection> {
        let denials = self.denials.clone();
        Ok(self
            .nats
            .connect_with("pluribusctl", |o| denials.watch(o))
            .await?)
    }

    /// Connects to NATS and opens the KV buckets (creating missing ones). A permissions
    /// violation on this connection ends the command with the role it needs.
    pub async fn open(&self) -> Result<Ctx> {
        let denials = self.denials.clone();
        self.open_with("pluribusctl", move |o| denials.watch(o))
            .await
    }

    /// Like [`Global::open`], with a connection name and options adjusted by `tune`.
    pub async fn open_with(
        &self,
        name: &str,
        tune: impl FnOnce(async_nats::ConnectOptions) -> async_nats::ConnectOptions,
    ) -> Result<Ctx> {
        Ctx::open(&self.nats, name, tune).await
    }
}

/// Runs the command line.
pub async fn run(cli: Cli) -> Result<()> {
    let g = Global {
        nats: cli.nats,
        json: cli.json,
        denials: Default::default(),
    };
    // The dashboard meets permission refusals on purpose (it probes whether its credential
    // may change anything, and shows a read-only page if not): it handles them itself.
    if matches!(cli.command, Command::Dashboard(_)) {
        return dispatch(&g, cli.command).await;
    }
    let needs = needs(&cli.command);
    let denials = g.denials.clone();
    tokio::select! {
        r = dispatch(&g, cli.command) => r,
        said = denials.first() => Err(crate::denied::error(needs, &said)),
    }
}

/// What a command does and the role it needs (deploy/nats/roles.conf).
fn needs(c: &Command) -> crate::denied::Needs {
    use crate::denied::Needs;
    let op = |action| Needs {
        action,
        role: "operator",
    };
    let view = |action| Needs {
        action,
        role: "viewer",
    };
    match c {
        Command::Deploy(_) => op("deploy devices"),
        Command::DeployFleet(_) => op("deploy fleets"),
        Command::Scale(_) => op("scale fleets"),
        Command::SetLoad(_) => op("change load shapes"),
        Command::Stop(_) => op("stop devices"),
        Command::DeleteFleet(_) => op("delete fleets"),
        Command::Drain(_) => op("drain agents"),
        Command::Rebalance => op("rebalance agents"),
        Command::Status(_) | Command::Agents(_) => view("read status"),
        Command::Watch(_) => view("watch fleets"),
        Command::Report(_) => view("read reports"),
        Command::Events(_) => view("follow events"),
        Command::Probe(_) => view("probe telemetry"),
        Command::Profiles(_) => view("list profiles"),
        Command::Dashboard(_) => view("serve the dashboard"),
        Command::Scenario(a) => match a.verb {
            scenario_args::Verb::Check(_) => view("check scenarios"),
            scenario_args::Verb::Run(_) | scenario_args::Verb::Cancel(_) => op("run scenarios"),
            scenario_args::Verb::List
            | scenario_args::Verb::Status(_)
            | scenario_args::Verb::Logs(_) => view("read scenario runs"),
        },
        Command::Network(a) => match a.verb {
            network::Verb::Set(_) | network::Verb::Clear(_) => op("change network impairments"),
            network::Verb::Show(_) | network::Verb::Presets => view("read network impairments"),
        },
    }
}

async fn dispatch(g: &Global, command: Command) -> Result<()> {
    match command {
        Command::Deploy(a) => deploy::run(g, *a).await,
        Command::DeployFleet(a) => deploy_fleet::run(g, *a).await,
        Command::Status(a) => status::run(g, a).await,
        Command::Agents(a) => agents::run(g, a).await,
        Command::Scale(a) => scale::run(g, a).await,
        Command::SetLoad(a) => set_load::run(g, a).await,
        Command::Stop(a) => stop::run(g, a).await,
        Command::DeleteFleet(a) => delete_fleet::run(g, a).await,
        Command::Watch(a) => watch::run(g, a).await,
        Command::Probe(a) => probe::run(g, a).await,
        Command::Report(a) => report::run(g, a).await,
        Command::Drain(a) => drain::run(g, a).await,
        Command::Rebalance => rebalance::run(g).await,
        Command::Events(a) => events::run(g, a).await,
        Command::Profiles(a) => profiles::run(g, a),
        Command::Network(a) => network::run(g, a).await,
        Command::Dashboard(a) => crate::dashboard::run(g, a).await,
        Command::Scenario(a) => scenario::run(g, a).await,
    }
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
