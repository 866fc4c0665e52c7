//! The agent's liveness entry (`_live.<agent id>` in the leases bucket), kept by a task of
//! its own so that nothing the control loop does can delay it.
//!
//! The entry has a short per-key TTL (`--lease-ttl`, default 3 s) and is renewed every third
//! of it with a revision check. Shard leases carry no TTL and are not renewed: each names
//! the epoch of its holder's entry, and stands while that entry does. So an agent writes
//! one key a second whatever it holds, and its death is seen by every agent (the server's
//! expiry marker in their lease watch) within a TTL.
//!
//! Fencing: each successful renewal moves the [`Fence`] to when it was sent plus 75% of
//! the TTL. Renewals that fail let the fence pass, and the shard runners stop sending before
//! the entry can expire on the server. A renewal that finds the entry gone (or another
//! epoch in it) closes the fence at once, tells the control loop, and starts a new epoch:
//! the leases of the old one are void, and the control loop takes back with a revision
//! check those nobody else took meanwhile.

use std::time::{Duration, Instant};

use async_nats::jetstream::kv::Operation;
use pluribus_common::kv::{Buckets, KvError};
use pluribus_common::messages::Liveness;
use pluribus_common::subjects::liveness_key;
use pluribus_common::{wire, PROTOCOL_VERSION};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Internal;
use crate::fence::Fence;

/// What the liveness task needs.
pub(super) struct Keeper {
    pub buckets: Buckets,
    pub agent_id: String,
    pub agent_name: String,
    pub ttl: Duration,
    pub every: Duration,
    pub fence_after: Duration,
    pub fence: Fence,
    pub tx: mpsc::UnboundedSender<Internal>,
    /// Creates the buckets again when JetStream lost them.
    pub reopen: super::watch::Reopen,
}

/// The running task: stopped (and the entry deleted) last, after the leases are released.
pub(super) struct Handle {
    token: CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

impl Handle {
    /// Stops renewing and deletes the entry.
    pub(super) async fn stop(self) {
        self.token.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.done).await;
    }
}

/// A fresh epoch: random, never 0.
fn new_epoch() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0 | 1
}

impl Keeper {
    fn value(&self, epoch: u64) -> bytes::Bytes {
        wire::encode(&Liveness {
            v: PROTOCOL_VERSION,
            agent_id: self.agent_id.clone(),
            agent_name: self.agent_name.clone(),
            epoch,
        })
    }

    /// Starts the task. Its token is not a child of the agent's: the entry must outlive the
    /// graceful hand-off of the shards.
    pub(super) fn spawn(self, tracker: &TaskTracker) -> Handle {
        let token = CancellationToken::new();
        let t = token.clone();
        let done = tracker.spawn(self.run(t));
        Handle { token, done }
    }

    async fn run(self, token: CancellationToken) {
        let key = liveness_key(&self.agent_id);
        let (mut epoch, mut revision) = (0u64, 0u64);
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                _ = tick.tick() => {}
            }
            let sent = Instant::now();
            if epoch == 0 {
                if let Some((e, rev)) = self.create(&key).await {
                    (epoch, revision) = (e, rev);
                    self.fence.extend_to(sent + self.fence_after);
                    tracing::info!(epoch, "liveness entry created");
                    let _ = self.tx.send(Internal::Live { epoch });
                }
                continue;
            }
            let put = self
                .buckets
                .lease_put(&key, self.value(epoch), revision, Some(self.ttl));
            // A slow acknowledgement still counts (the fence follows the time it was sent):
            // wait for it up to the fence, not just a renewal period.
            match tokio::time::timeout(self.fence_after, put).await {
                Ok(Ok(rev)) => {
                    revision = rev;
                    self.fence.extend_to(sent + self.fence_after);
                }
                Ok(Err(KvError::Conflict)) => match self.read(&key).await {
                    // A renewal that timed out here had landed: carry on from it.
                    Some(Some((e, rev))) if e == epoch => revision = rev,
                    // Unknown (NATS away): the fence runs out unless a renewal succeeds.
                    None => {}
                    Some(_) => {
                        self.fence.close();
                        tracing::warn!(
                            epoch,
                            "liveness entry expired (this agent was cut off or frozen longer than --lease-ttl): every shard stops here; taking back those nobody took"
                        );
                        let _ = self.tx.send(Internal::Lost { epoch });
                        epoch = 0;
                        tick.reset_immediately();
                    }
                },
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "liveness renewal failed");
                    self.reopen_if_gone(&e).await;
                }
                Err(_) => tracing::warn!("liveness renewal timed out"),
            }
        }
        self.fence.close();
        let del = self.buckets.leases.delete(&key);
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(3), del).await {
            tracing::debug!(error = %e, "liveness entry not deleted (it expires)");
        }
    }

    /// Creates a new entry; returns its epoch and revision.
    async fn create(&self, key: &str) -> Option<(u64, u64)> {
        let epoch = new_epoch();
        let value = self.value(epoch);
        let create = self
            .buckets
            .lease_create(key, value.clone(), Some(self.ttl));
        match tokio::time::timeout(self.every, create).await {
            Ok(Ok(rev)) => Some((epoch, rev)),
            // Ours from an attempt that timed out but landed (nobody else writes this key):
            // overwrite it; no lease names that epoch, as it was never announced.
            Ok(Err(KvError::Held { revision, .. })) => {
                let put = self.buckets.lease_put(key, value, revision, Some(self.ttl));
                match tokio::time::timeout(self.every, put).await {
                    Ok(Ok(rev)) => Some((epoch, rev)),
                    _ => None,
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not create the liveness entry");
                self.reopen_if_gone(&e).await;
                None
            }
            Err(_) => {
                tracing::warn!("creating the liveness entry timed out");
                None
            }
        }
    }

    /// The leases bucket is gone (JetStream came back without its state): make the
    /// buckets again, as the heartbeat would (it waits for this entry).
    async fn reopen_if_gone(&self, e: &KvError) {
        if e.to_string().contains("no stream found") {
            self.reopen.recreate().await;
        }
    }

    /// The entry's epoch and revision (`Some(None)`: gone; `None`: could not read).
    async fn read(&self, key: &str) -> Option<Option<(u64, u64)>> {
        let entry = tokio::time::timeout(self.every, self.buckets.leases.entry(key))
            .await
            .ok()?
            .ok()?;
        Some(entry.and_then(|e| {
            (e.operation == Operation::Put)
                .then(|| wire::decode::<Liveness>(&e.value).ok())
                .flatten()
                .filter(|l| l.agent_id == self.agent_id)
                .map(|l| (l.epoch, e.revision))
        }))
    }
}
