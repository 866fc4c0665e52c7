//! `dashboard`: a web page over the same NATS feeds as `watch`, `events` and `status`:
//! overview of agents and fleets, live charts, events, a device drill-down, controls
//! (operator credentials only) and a downloadable HTML report. No database: everything
//! comes from NATS, and the last minutes of figures are kept in memory.
//!
//! ```text
//! hub task: agents/fleets/leases/scenarios KV feeds + evt.> ──► Model every second ──► watch channel
//!                                                   └► History (points), EventLog
//! axum: /  /app.js  /api/stream (SSE, one frame per model and page)  /api/control  /report
//! ```

mod access;
mod auth;
mod controls;
mod device;
mod eventlog;
mod frame;
mod history;
mod hub;
mod latency;
mod model;
mod report;
mod routes;
mod scenarios;
mod window;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use pluribus_common::time::now_ms;
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::cmd::Global;
use crate::output::print_json;

/// Serve the dashboard.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on. Anything but a loopback address needs --token.
    #[arg(
        long,
        value_name = "ADDR:PORT",
        default_value = "127.0.0.1:8080",
        env = "PLURIBUS_DASHBOARD_LISTEN"
    )]
    pub listen: SocketAddr,
    /// Token the browser must present (open the page with ?token=TOKEN once; a cookie keeps
    /// it). Required to listen beyond localhost.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "PLURIBUS_DASHBOARD_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Show no controls even if the NATS credential may change the cluster.
    #[arg(long)]
    pub read_only: bool,
    /// How much of the figures to keep for the charts and reports.
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = humantime::parse_duration)]
    pub history: Duration,
}

#[derive(Serialize)]
struct Started<'a> {
    url: &'a str,
    read_only: bool,
    why: Option<&'a str>,
}

/// Host headers that name a loopback listener.
fn loopback_hosts(addr: SocketAddr) -> Vec<String> {
    let port = addr.port();
    vec![
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        addr.to_string(),
    ]
}

/// Runs `dashboard` until Ctrl-C.
pub async fn run(g: &Global, args: Args) -> Result<()> {
    if args.token.as_deref().is_some_and(|t| t.trim().len() < 8) {
        bail!("--token is too short: give at least 8 characters (e.g. `openssl rand -hex 16`)");
    }
    if !args.listen.ip().is_loopback() && args.token.is_none() {
        bail!(
            "--listen {}: anything but localhost needs a token: give --token or PLURIBUS_DASHBOARD_TOKEN (e.g. `openssl rand -hex 16`)",
            args.listen
        );
    }
    if args.history < hub::TICK * 60 || args.history > Duration::from_secs(24 * 3600) {
        bail!("--history must be between 1m and 24h, e.g. 15m");
    }
    let (violations, _) = broadcast::channel(16);
    let ctx = g
        .open_with("pluribusctl-dashboard", access::tune(violations.clone()))
        .await?;
    let access = if args.read_only {
        access::Access::read_only("read-only: started with --read-only")
    } else {
        access::probe(&ctx, &violations).await
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: is the port taken? choose another with --listen",
                args.listen
            )
        })?;
    let local = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let (tx, rx) = watch::channel(Arc::new(model::Model {
        ts_ms: now_ms(),
        ..Default::default()
    }));
    let shared = Arc::new(hub::Shared {
        ctx,
        model: rx,
        history: RwLock::new(history::History::new(args.history.as_millis() as u64)),
        events: RwLock::new(eventlog::EventLog::default()),
        desired: RwLock::new(model::Desired::default()),
        access: RwLock::new(access.clone()),
        anchors: RwLock::new(window::Anchors::new(args.history.as_millis() as u64)),
        beats: RwLock::new(latency::Beats::default()),
        scenarios: RwLock::new(scenarios::Board::default()),
    });
    let guard = Arc::new(auth::Guard {
        token: args.token.clone(),
        hosts: if args.token.is_none() {
            loopback_hosts(local)
        } else {
            Vec::new()
        },
    });
    let app = routes::router(shared.clone())
        .layer(axum::middleware::from_fn_with_state(guard, auth::guard));
    let url = format!("http://{local}/");
    if g.json {
        print_json(&Started {
            url: &url,
            read_only: access.read_only,
            why: access.why.as_deref(),
        })?;
    } else {
        println!(
            "dashboard on {url}{}",
            if args.token.is_some() {
                "?token=..."
            } else {
                ""
            }
        );
        if let Some(why) = &access.why {
            println!("{why}");
        }
    }
    if !local.ip().is_loopback() {
        eprintln!(
            "warning: serving plain HTTP on {local}: the token and the page cross the network in clear; put the dashboard behind a TLS proxy or reach it through an ssh tunnel"
        );
    }
    let hub = tokio::spawn(hub::run(shared.clone(), tx));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::select! {
        r = axum::serve(listener, app) => r.context("the web server stopped"),
        r = hub => match r {
            Ok(r) => r,
            Err(e) => Err(e).context("the dashboard's NATS task failed"),
        },
        _ = ctrl_c => Ok(()),
    }
}
