//! `pluribus-agent`: parses flags, connects, starts the agent and wires signals to its
//! shutdown. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;
use pluribus_agent::cli::AgentArgs;
use pluribus_agent::{Agent, Registry};

#[tokio::main]
async fn main() -> ExitCode {
    let args = AgentArgs::parse();
    init_tracing(args.log_json);
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

/// Raises the soft open-files limit to the hard one: each MQTT device holds a socket.
/// File descriptors kept for NATS, logs and the metrics endpoint.
const FD_RESERVE: u64 = 256;

/// Raises the soft open-files limit to the hard one and returns the limit.
fn raise_nofile() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::warn!("could not raise the open-files limit");
                lim.rlim_cur = 0;
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
            }
        }
        (lim.rlim_cur > 0).then_some(lim.rlim_cur)
    }
}

async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let mut cfg = args.config().map_err(anyhow::Error::msg)?;
    let nofile = raise_nofile();
    if cfg.max_connections.is_none() {
        cfg.max_connections = nofile.map(|n| n.saturating_sub(FD_RESERVE));
    }
    tracing::info!(open_files = ?nofile, max_connections = ?cfg.max_connections, "connection capacity");
    let conn = args
        .nats
        .connect_with("pluribus-agent", |o| {
            o.event_callback(|ev| async move {
                match ev {
                    async_nats::Event::Connected => tracing::info!("NATS connected"),
                    async_nats::Event::Disconnected => {
                        tracing::warn!("NATS disconnected; retrying")
                    }
                    other => tracing::info!(event = %other, "NATS event"),
                }
            })
            .client_capacity(65_536)
        })
        .await?;
    let handle = Agent::start(cfg, conn, Registry::builtin()).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
    }
    handle.shutdown().await;
    Ok(())
}
