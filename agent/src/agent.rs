//! Starting and stopping an agent. [`Agent::start`] gives an [`AgentHandle`]; `main` only
//! wires signals to [`AgentHandle::shutdown`].

use std::net::SocketAddr;
use std::time::Duration;

use pluribus_common::connect::Connection;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::stores::{Stores, STARTUP_PATIENCE};
use crate::control::{Control, Shared};
use crate::metrics::Metrics;
use crate::registry::Registry;

pub use crate::config::{
    AgentConfig, DEFAULT_HEARTBEAT, DEFAULT_LEASE_TTL, DEFAULT_WAKE_GRID, FENCE_FRACTION,
};

/// The agent as a value.
#[derive(Debug)]
pub struct Agent;

/// A running agent.
#[derive(Debug)]
pub struct AgentHandle {
    /// The agent's id (new per process).
    pub id: String,
    /// Where `/metrics` is served, if it is (the bound address: a port 0 is resolved).
    pub metrics_addr: Option<SocketAddr>,
    token: CancellationToken,
    tracker: TaskTracker,
    done: tokio::task::JoinHandle<()>,
}

impl Agent {
    /// Binds the metrics address (if any), opens the buckets, subscribes and starts the
    /// control loop and the metrics exporter.
    pub async fn start(
        cfg: AgentConfig,
        conn: Connection,
        registry: Registry,
    ) -> anyhow::Result<AgentHandle> {
        let listener = match cfg.metrics_listen {
            Some(addr) => Some(crate::prometheus::bind(addr).await?),
            None => None,
        };
        let secrets =
            crate::secrets::Secrets::new(cfg.secrets.clone()).map_err(anyhow::Error::msg)?;
        let stores =
            Stores::open_patiently(&conn.js, &conn.ns, conn.kv_replicas, STARTUP_PATIENCE).await?;
        let buckets = stores.buckets.clone();
        // Events are published either way; the stream only keeps their history.
        if let Err(e) =
            pluribus_common::kv::open_events(&conn.js, &conn.ns, conn.kv_replicas, conn.events)
                .await
        {
            tracing::warn!(error = %e, "no event history: `pluribusctl events --since` will show only new events");
        }
        let id = uuid::Uuid::new_v4().to_string();
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        let metrics = Metrics::default();
        let mut metrics_addr = None;
        if let Some(listener) = listener {
            metrics_addr = listener.local_addr().ok();
            if let Some(addr) = metrics_addr {
                tracing::info!(%addr, "serving Prometheus metrics at /metrics");
            }
            crate::prometheus::spawn(
                listener,
                metrics.clone(),
                cfg.name.clone(),
                token.clone(),
                &tracker,
            );
        }
        secrets.spawn_refresh(token.clone(), &tracker);
        // Detached scenario runs: this agent takes those no other agent holds.
        tracker.spawn(pluribus_client::scenario::detached::serve(
            pluribus_client::Ctx {
                conn: conn.clone(),
                buckets: buckets.clone(),
                url: String::new(),
            },
            id.clone(),
            cfg.name.clone(),
            token.clone(),
        ));
        let control = Control::new(
            id.clone(),
            cfg,
            conn,
            stores,
            registry,
            Shared {
                secrets,
                metrics,
                token: token.clone(),
                tracker: tracker.clone(),
            },
        )
        .await?;
        let done = tokio::spawn(control.run());
        Ok(AgentHandle {
            id,
            metrics_addr,
            token,
            tracker,
            done,
        })
    }
}

impl AgentHandle {
    /// Stops the agent: devices run on_stop, leases are released so others take over at
    /// once, "left" is announced and NATS flushed.
    pub async fn shutdown(self) {
        self.token.cancel();
        let _ = self.done.await;
        self.tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.tracker.wait()).await;
    }

    /// True once the control loop has ended (after shutdown, or if it failed).
    pub fn is_finished(&self) -> bool {
        self.done.is_finished()
    }
}
