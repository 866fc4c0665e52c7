//! The agent's liveness key and epoch record, kept by a task of its own so that nothing the
//! control loop does can delay them.
//!
//! Two keys (issue 9, section 8: renewals are followed by a few agents, not by everyone):
//! - the **liveness key** (`<agent id>` in the live bucket) has a short per-key TTL
//!   (`--lease-ttl`, default 3 s) and is renewed every third of it with a revision check.
//!   Only this agent and its ring neighbours watch it (`ring.rs`);
//! - the **epoch record** (`_live.<agent id>` in the leases bucket) is written once per
//!   epoch, right after the liveness key is made, and everybody follows it. Shard leases
//!   name the epoch and stand while the record does. It is deleted when the agent leaves,
//!   or by a watcher once the liveness key has expired (never before: see `ring.rs`).
//!
//! Fencing: each successful renewal moves the [`Fence`] to when it was sent plus 75% of
//! the TTL. Renewals that fail let the fence pass, and the shard runners stop sending before
//! the key can expire on the server (and so before anyone may delete the epoch record). A
//! renewal that finds the key gone (or another epoch in it), or an epoch record deleted
//! under us (the control loop revokes the epoch on the fence), closes the fence at once,
//! tells the control loop, and starts a new epoch: the leases of the old one are void, and
//! the control loop takes back with a revision check those nobody else took meanwhile.

use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{Operation, Store};
use pluribus_common::kv::{ttl_put, Buckets, KvError};
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
    /// The leases bucket (the epoch record).
    pub buckets: Buckets,
    /// The live bucket (the liveness key) and its name, for the TTL writes.
    pub live: Store,
    pub live_name: String,
    pub js: async_nats::jetstream::Context,
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
    /// Stops renewing and deletes the epoch record and the liveness key.
    pub(super) async fn stop(self) {
        self.token.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(7), self.done).await;
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
        let key = self.agent_id.clone();
        let (mut epoch, mut revision) = (0u64, 0u64);
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                _ = tick.tick() => {}
            }
            if epoch != 0 && self.fence.is_revoked() {
                tracing::warn!(
                    epoch,
                    "our epoch record was deleted: every shard stops here; starting a new epoch and taking back what nobody took"
                );
                let _ = self.tx.send(Internal::Lost { epoch });
                epoch = 0;
            }
            let sent = Instant::now();
            if epoch == 0 {
                if let Some((e, rev)) = self.create(&key).await {
                    (epoch, revision) = (e, rev);
                    self.fence.begin_epoch(epoch);
                    self.fence.extend_to(sent + self.fence_after);
                    tracing::info!(epoch, "liveness key and epoch record created");
                    let _ = self.tx.send(Internal::Live { epoch });
                }
                continue;
            }
            let put = ttl_put(
                &self.js,
                &self.live_name,
                &key,
                self.value(epoch),
                revision,
                Some(self.ttl),
            );
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
                            "liveness key expired (this agent was cut off or frozen longer than --lease-ttl): every shard stops here; taking back those nobody took"
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
        // The epoch record first: the others see this agent gone at once.
        let record = liveness_key(&self.agent_id);
        let del = self.buckets.leases.delete(&record);
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(3), del).await {
            tracing::debug!(error = %e, "epoch record not deleted (a watcher removes it)");
        }
        let del = self.live.delete(&key);
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(3), del).await {
            tracing::debug!(error = %e, "liveness key not deleted (it expires)");
        }
    }

    /// Makes a new liveness key, then the epoch record naming it; returns the epoch and the
    /// key's revision.
    async fn create(&self, key: &str) -> Option<(u64, u64)> {
        let epoch = new_epoch();
        let value = self.value(epoch);
        let rev = match self.create_key(key, value.clone()).await {
            Ok(rev) => rev,
            Err(e) => {
                tracing::warn!(error = %e, "could not create the liveness key");
                self.reopen_if_gone(&e).await;
                return None;
            }
        };
        // Written after the key: whoever sees this record and then finds the key gone knows
        // that this epoch is over.
        let put = self.buckets.leases.put(liveness_key(&self.agent_id), value);
        match tokio::time::timeout(self.every, put).await {
            Ok(Ok(_)) => Some((epoch, rev)),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not write the epoch record");
                if e.to_string().contains("no stream found") {
                    self.reopen.recreate().await;
                }
                None
            }
            Err(_) => {
                tracing::warn!("writing the epoch record timed out");
                None
            }
        }
    }

    /// Creates the liveness key with its TTL, also over a delete marker or a key of ours
    /// from an attempt that timed out but landed (nobody else writes it).
    async fn create_key(&self, key: &str, value: bytes::Bytes) -> Result<u64, KvError> {
        let put = ttl_put(
            &self.js,
            &self.live_name,
            key,
            value.clone(),
            0,
            Some(self.ttl),
        );
        match tokio::time::timeout(self.every, put).await {
            Ok(Err(KvError::Conflict)) => {}
            Ok(other) => return other,
            Err(_) => return Err(KvError::Other("creating the liveness key timed out".into())),
        }
        let last = match tokio::time::timeout(self.every, self.live.entry(key)).await {
            Ok(Ok(e)) => e.map(|e| e.revision).unwrap_or(0),
            Ok(Err(e)) => return Err(KvError::Other(e.to_string())),
            Err(_) => return Err(KvError::Other("reading the liveness key timed out".into())),
        };
        let put = ttl_put(&self.js, &self.live_name, key, value, last, Some(self.ttl));
        match tokio::time::timeout(self.every, put).await {
            Ok(r) => r,
            Err(_) => Err(KvError::Other("creating the liveness key timed out".into())),
        }
    }

    /// The buckets are gone (JetStream came back without its state): make them again, as
    /// the heartbeat would (it waits for this entry).
    async fn reopen_if_gone(&self, e: &KvError) {
        if e.to_string().contains("no stream found") {
            self.reopen.recreate().await;
        }
    }

    /// The key's epoch and revision (`Some(None)`: gone; `None`: could not read).
    async fn read(&self, key: &str) -> Option<Option<(u64, u64)>> {
        let entry = tokio::time::timeout(self.every, self.live.entry(key))
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
