//! The agent's liveness keys and epoch record, kept by a task of its own so that nothing
//! the control loop does can delay them.
//!
//! Two kinds of key (issue 9, section 8: renewals are followed by a few agents, not by
//! everyone):
//! - the **liveness keys** (`<agent id>` in each of the two live buckets) have a short
//!   per-key TTL (`--lease-ttl`, default 3 s) and are renewed every third of it with a
//!   revision check, both at once. Only this agent and its ring neighbours watch them
//!   (`ring.rs`). Two buckets, whose streams have their leaders on different NATS nodes,
//!   so that a node's death stops the renewals of one key at most (`live_pair.rs`);
//! - the **epoch record** (`_live.<agent id>` in the leases bucket) is written once per
//!   epoch, right after the liveness keys are made, and everybody follows it. Shard leases
//!   name the epoch and stand while the record does. It is deleted when the agent leaves,
//!   or by a watcher once both liveness keys are gone (never before: see `epochs.rs`).
//!
//! Fencing: each round in which a key that counts for the epoch is renewed moves the
//! [`Fence`] to when the round was sent plus 75% of the TTL. Rounds that renew nothing let
//! the fence pass, and the shard runners stop sending before the keys can expire on the
//! server (and so before anyone may delete the epoch record). Once neither key counts (both
//! were found gone, or under another epoch), or the epoch record was deleted under us (the
//! control loop revokes the epoch on the fence), the fence closes at once, the control
//! loop is told, and a new epoch starts: the leases of the old one are void, and the
//! control loop takes back with a revision check those nobody else took meanwhile.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::Store;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use pluribus_common::kv::{leader_entry, ttl_put, Buckets, KvError};
use pluribus_common::messages::Liveness;
use pluribus_common::subjects::liveness_key;
use pluribus_common::{wire, PROTOCOL_VERSION};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::live_pair::{Key, Outcome, Pair, Verdict};
use super::Internal;
use crate::fence::Fence;

/// What the liveness task needs.
pub(super) struct Keeper {
    /// The leases bucket (the epoch record).
    pub buckets: Buckets,
    /// The two live buckets (the liveness keys), the first one first.
    pub live: [Store; 2],
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

/// The running task: stopped (and the keys deleted) last, after the leases are released.
pub(super) struct Handle {
    token: CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

impl Handle {
    /// Stops renewing and deletes the epoch record and the liveness keys.
    pub(super) async fn stop(self) {
        self.token.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(7), self.done).await;
    }
}

/// A fresh epoch: random, never 0.
fn new_epoch() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0 | 1
}

/// The running keeper: what it was given, and whether a check for lost buckets is under
/// way (one at a time, beside the renewals, which it must never hold up).
struct Running {
    k: Keeper,
    reopening: Arc<AtomicBool>,
}

impl Keeper {
    /// Starts the task. Its token is not a child of the agent's: the keys must outlive the
    /// graceful hand-off of the shards.
    pub(super) fn spawn(self, tracker: &TaskTracker) -> Handle {
        let token = CancellationToken::new();
        let t = token.clone();
        let running = Running {
            k: self,
            reopening: Default::default(),
        };
        let done = tracker.spawn(running.run(t));
        Handle { token, done }
    }
}

impl Running {
    fn value(&self, epoch: u64) -> bytes::Bytes {
        wire::encode(&Liveness {
            v: PROTOCOL_VERSION,
            agent_id: self.k.agent_id.clone(),
            agent_name: self.k.agent_name.clone(),
            epoch,
        })
    }

    async fn run(self, token: CancellationToken) {
        let k = &self.k;
        let (mut epoch, mut pair) = (0u64, Pair::default());
        let mut tick = tokio::time::interval(k.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                _ = tick.tick() => {}
            }
            if epoch != 0 && k.fence.is_revoked() {
                tracing::warn!(
                    epoch,
                    "our epoch record was deleted: every shard stops here; starting a new epoch and taking back what nobody took"
                );
                let _ = k.tx.send(Internal::Lost { epoch });
                epoch = 0;
            }
            let sent = Instant::now();
            if epoch == 0 {
                if let Some((e, p)) = self.create().await {
                    (epoch, pair) = (e, p);
                    k.fence.begin_epoch(epoch);
                    k.fence.extend_to(sent + k.fence_after);
                    tracing::info!(epoch, "liveness keys and epoch record created");
                    let _ = k.tx.send(Internal::Live { epoch });
                }
                continue;
            }
            let [a, b] = pair.keys;
            let out =
                futures::future::join(self.bounded(0, epoch, a), self.bounded(1, epoch, b)).await;
            match pair.apply([out.0, out.1]) {
                Verdict::Extend => k.fence.extend_to(sent + k.fence_after),
                Verdict::Hold => {}
                Verdict::Over => {
                    k.fence.close();
                    tracing::warn!(
                        epoch,
                        "both liveness keys expired (this agent was cut off or frozen longer than --lease-ttl): every shard stops here; taking back those nobody took"
                    );
                    let _ = k.tx.send(Internal::Lost { epoch });
                    epoch = 0;
                    tick.reset_immediately();
                }
            }
        }
        k.fence.close();
        // The epoch record first: the others see this agent gone at once.
        let record = liveness_key(&k.agent_id);
        let del = k.buckets.leases.delete(&record);
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(3), del).await {
            tracing::debug!(error = %e, "epoch record not deleted (a watcher removes it)");
        }
        let dels = k.live.iter().map(|s| {
            let del = s.delete(&k.agent_id);
            async move {
                if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(3), del).await {
                    tracing::debug!(error = %e, "liveness key not deleted (it expires)");
                }
            }
        });
        futures::future::join_all(dels).await;
    }

    /// [`Running::step`], within one renewal period. A round waits for both keys, so a
    /// bucket whose requests hang (its stream electing a leader, its server gone) must not
    /// hold up the other key's next renewal past the fence. A renewal acknowledged later
    /// than that counts as unknown; if it landed, the next round finds it (`Resynced`).
    /// With `--lease-ttl 30s` the period is 10 s.
    async fn bounded(&self, i: usize, epoch: u64, key: Key) -> Outcome {
        let step = tokio::time::timeout(self.k.every, self.step(i, epoch, key));
        step.await.unwrap_or_else(|_| {
            tracing::warn!(bucket = %self.k.live[i].name, "liveness renewal timed out");
            Outcome::Unknown
        })
    }

    /// One key's part of a round: renews it, or makes it when there is none. Unbounded
    /// itself: [`Running::bounded`] bounds it.
    async fn step(&self, i: usize, epoch: u64, key: Key) -> Outcome {
        let k = &self.k;
        let id = &k.agent_id;
        if key.revision == 0 {
            return match self.create_key(i, self.value(epoch)).await {
                Ok(rev) => Outcome::Made(rev),
                Err(e) => {
                    tracing::debug!(bucket = %k.live[i].name, error = %e, "could not make the liveness key again");
                    self.reopen_if_gone(&e);
                    Outcome::Unknown
                }
            };
        }
        let name = &k.live[i].name;
        let put = ttl_put(
            &k.js,
            name,
            id,
            self.value(epoch),
            key.revision,
            Some(k.ttl),
        );
        match put.await {
            Ok(rev) => Outcome::Renewed(rev),
            Err(KvError::Conflict) => match self.read(i).await {
                // A renewal that timed out here had landed: carry on from it.
                Some(Some((e, rev))) if e == epoch => Outcome::Resynced(rev),
                // Unknown (NATS away): the fence runs out unless a renewal succeeds.
                None => Outcome::Unknown,
                Some(_) => {
                    tracing::info!(bucket = %name, epoch, "liveness key expired (its stream had no leader?): making it again");
                    Outcome::Gone
                }
            },
            Err(e) => {
                tracing::warn!(bucket = %name, error = %e, "liveness renewal failed");
                self.reopen_if_gone(&e);
                Outcome::Unknown
            }
        }
    }

    /// Makes new liveness keys, then the epoch record naming them; returns the epoch and
    /// its pair. At least one key must be made (the other is made later).
    async fn create(&self) -> Option<(u64, Pair)> {
        let k = &self.k;
        let epoch = new_epoch();
        let value = self.value(epoch);
        let made = futures::future::join(
            self.create_key(0, value.clone()),
            self.create_key(1, value.clone()),
        )
        .await;
        let made = [made.0, made.1].map(|r| {
            r.map_err(|e| {
                tracing::warn!(error = %e, "could not create a liveness key");
                self.reopen_if_gone(&e);
            })
            .ok()
        });
        let pair = Pair::begin(made)?;
        // Written after the keys: whoever sees this record and then finds both keys gone
        // knows that this epoch is over.
        let put = k.buckets.leases.put(liveness_key(&k.agent_id), value);
        match tokio::time::timeout(k.every, put).await {
            Ok(Ok(_)) => Some((epoch, pair)),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not write the epoch record");
                if e.to_string().contains("no stream found") {
                    k.reopen.recreate().await;
                }
                None
            }
            Err(_) => {
                tracing::warn!("writing the epoch record timed out");
                None
            }
        }
    }

    /// Creates the liveness key in bucket `i` with its TTL, also over a delete marker or a
    /// key of ours from an attempt that timed out but landed (nobody else writes it).
    async fn create_key(&self, i: usize, value: bytes::Bytes) -> Result<u64, KvError> {
        let k = &self.k;
        let (name, id) = (&k.live[i].name, &k.agent_id);
        let put = ttl_put(&k.js, name, id, value.clone(), 0, Some(k.ttl));
        match tokio::time::timeout(k.every, put).await {
            Ok(Err(KvError::Conflict)) => {}
            Ok(other) => return other,
            Err(_) => return Err(KvError::Other("creating the liveness key timed out".into())),
        }
        // Its last message, a marker or a put of ours, as the stream's leader has it.
        let last = self.last_revision(i).await?;
        let put = ttl_put(&k.js, name, id, value, last, Some(k.ttl));
        match tokio::time::timeout(k.every, put).await {
            Ok(r) => r,
            Err(_) => Err(KvError::Other("creating the liveness key timed out".into())),
        }
    }

    /// The revision of the key's last message whatever it is (a marker included).
    async fn last_revision(&self, i: usize) -> Result<u64, KvError> {
        let store = &self.k.live[i];
        let subject = format!("{}{}", store.prefix, self.k.agent_id);
        let get = store.stream.get_last_raw_message_by_subject(&subject);
        match tokio::time::timeout(self.k.every, get).await {
            Ok(Ok(m)) => Ok(m.sequence),
            Ok(Err(e)) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => Ok(0),
            Ok(Err(e)) => Err(KvError::Other(e.to_string())),
            Err(_) => Err(KvError::Other("reading the liveness key timed out".into())),
        }
    }

    /// The buckets are gone (JetStream came back without its state): make them again, as
    /// the heartbeat would (it waits for these keys). In a task of its own, one at a time:
    /// checking takes requests that must not hold up the other key's renewal.
    fn reopen_if_gone(&self, e: &KvError) {
        if !e.to_string().contains("no stream found") {
            return;
        }
        if self.reopening.swap(true, Ordering::SeqCst) {
            return;
        }
        let (reopen, busy) = (self.k.reopen.clone(), self.reopening.clone());
        tokio::spawn(async move {
            reopen.recreate().await;
            busy.store(false, Ordering::SeqCst);
        });
    }

    /// The key's epoch and revision in bucket `i`, as the stream's leader has it
    /// (`Some(None)`: gone; `None`: could not read). Bounded by [`Running::bounded`].
    async fn read(&self, i: usize) -> Option<Option<(u64, u64)>> {
        let k = &self.k;
        let entry = leader_entry(&k.live[i], &k.agent_id).await.ok()?;
        Some(entry.and_then(|(value, rev)| {
            wire::decode::<Liveness>(&value)
                .ok()
                .filter(|l| l.agent_id == k.agent_id)
                .map(|l| (l.epoch, rev))
        }))
    }
}
