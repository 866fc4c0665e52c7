//! The KV stores an agent works with, opened (or created) together: the three buckets of
//! [`Buckets`], the peers bucket and the two live buckets. One place opens them, for start-up,
//! for the liveness connection and for buckets made again after JetStream lost them.

use std::time::Duration;

use async_nats::jetstream::{self, kv::Store};
use pluribus_common::kv::{open_live, open_peers, Buckets};
use pluribus_common::subjects::Namespace;

/// How long an agent that starts while JetStream cannot answer yet (a cluster still
/// electing its leaders, a server still starting) keeps trying before it gives up.
pub(crate) const STARTUP_PATIENCE: Duration = Duration::from_secs(30);

/// Every store an agent opens.
#[derive(Clone)]
pub(crate) struct Stores {
    /// Fleets, leases (and epoch records), agents (heartbeats).
    pub buckets: Buckets,
    /// Peer records.
    pub peers: Store,
    /// Liveness keys: the two live buckets, the first one first.
    pub live: [Store; 2],
}

impl Stores {
    /// The names of every bucket [`Stores::open`] opens.
    pub(crate) fn names(ns: &Namespace) -> [String; 6] {
        let [live, live2] = ns.live_buckets();
        [
            ns.fleets_bucket(),
            ns.leases_bucket(),
            ns.agents_bucket(),
            ns.peers_bucket(),
            live,
            live2,
        ]
    }

    /// Opens (or creates) every store once.
    pub(crate) async fn open(
        js: &jetstream::Context,
        ns: &Namespace,
        replicas: usize,
    ) -> Result<Self, String> {
        Ok(Self {
            buckets: Buckets::open(js, ns, replicas).await?,
            peers: open_peers(js, ns, replicas).await?,
            live: open_live(js, ns, replicas).await?,
        })
    }

    /// Opens every store, trying again for `patience`: an agent started beside NATS (a
    /// server still starting, a new cluster electing its JetStream leaders) waits for it
    /// rather than exiting on the first timeout.
    pub(crate) async fn open_patiently(
        js: &jetstream::Context,
        ns: &Namespace,
        replicas: usize,
        patience: Duration,
    ) -> anyhow::Result<Self> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut said = false;
        loop {
            match Self::open(js, ns, replicas).await {
                Ok(s) => return Ok(s),
                Err(e) if tokio::time::Instant::now() < deadline => {
                    if !said {
                        tracing::warn!(error = %e, "cannot open the KV buckets yet; trying again for {}s", patience.as_secs());
                        said = true;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(anyhow::Error::msg(e)),
            }
        }
    }
}
