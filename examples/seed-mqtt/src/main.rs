//! `seed-mqtt-agent`: the stock Pluribus agent plus the seed README's MQTT device
//! (`mqtt-metrics`) and aggregator (`mqtt-aggregator`). Parses flags, connects, starts the
//! agent with the extended registry and wires signals to its shutdown.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use pluribus_agent::cli::AgentArgs;
use pluribus_agent::Registry;
use pluribus_common::spec::BrokerUrl;
use pluribus_example_seed::aggregator::{parse_broker, AggregatorFactory};
use pluribus_example_seed::device::MetricsDeviceFactory;
use pluribus_example_seed::{DEVICE_TYPE, SINK_TYPE};

/// A Pluribus agent that also runs the seed README's MQTT devices: device type
/// `mqtt-metrics`, sink `mqtt-aggregator`.
#[derive(Debug, Parser)]
#[command(name = "seed-mqtt-agent", version)]
struct Args {
    #[command(flatten)]
    agent: AgentArgs,
    /// Broker of the mqtt-aggregator sinks whose spec names none, e.g. mqtt://127.0.0.1:1883.
    #[arg(long, env = "SEED_MQTT_BROKER", value_name = "URL", value_parser = parse_default_broker)]
    broker: Option<BrokerUrl>,
}

fn parse_default_broker(url: &str) -> Result<BrokerUrl, String> {
    parse_broker("--broker", url)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    pluribus_agent::runtime::init_tracing(args.agent.log_json);
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let aggregator = args
        .broker
        .map(AggregatorFactory::with_default_broker)
        .unwrap_or_default();
    let registry = Registry::builtin()
        .with_device(DEVICE_TYPE, Arc::new(MetricsDeviceFactory))
        .with_sink(SINK_TYPE, Arc::new(aggregator));
    pluribus_agent::runtime::run(args.agent, registry, "seed-mqtt-agent").await
}
