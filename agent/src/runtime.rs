//! Running an agent as a process: logging, the open-files limit, the NATS connection and
//! signals. `pluribus-agent` and agents built on the library (examples/seed-mqtt) share it,
//! so a custom agent behaves exactly like the stock one.

use crate::cli::AgentArgs;
use crate::{Agent, Registry};

/// File descriptors kept for NATS, logs and the metrics endpoint.
const FD_RESERVE: u64 = 256;

/// Logs to stderr, as text or JSON lines; `RUST_LOG` overrides the level. Colours only
/// when stderr is a terminal (and `NO_COLOR` is unset), so a log file holds plain text.
pub fn init_tracing(json: bool) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

/// Raises the soft open-files limit to the hard one (each MQTT device holds a socket) and
/// returns the limit in force.
pub fn raise_nofile() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim = want;
            } else {
                tracing::warn!("could not raise the open-files limit");
            }
        }
    }
    (lim.rlim_cur > 0).then_some(lim.rlim_cur)
}

/// Runs an agent with `registry` until SIGINT or SIGTERM, then stops it gracefully.
pub async fn run(args: AgentArgs, registry: Registry, client_name: &str) -> anyhow::Result<()> {
    let mut cfg = args.config().map_err(anyhow::Error::msg)?;
    let nofile = raise_nofile();
    if cfg.max_connections.is_none() {
        cfg.max_connections = nofile.map(|n| n.saturating_sub(FD_RESERVE));
    }
    tracing::info!(
        open_files = %or_unknown(nofile),
        max_connections = %or_unknown(cfg.max_connections),
        "connection capacity"
    );
    let conn = args
        .nats
        .connect_with(client_name, |o| {
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
    cfg.liveness_client = Some(
        args.nats
            .connect_core(&format!("{client_name} liveness"))
            .await?,
    );
    let handle = Agent::start(cfg, conn, registry).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
    }
    handle.shutdown().await;
    Ok(())
}

/// A count as a user writes it, or `unknown`.
fn or_unknown(n: Option<u64>) -> String {
    n.map_or_else(|| "unknown".into(), |n| n.to_string())
}
