//! The control loop's side of the ring (`ring.rs`): which liveness keys to follow, and
//! deleting the epoch record of an agent whose liveness keys are both gone, so that every
//! agent treats its leases as void.
//!
//! An epoch record is deleted only once both of its agent's liveness keys (one in each live
//! bucket) are known gone, always with a revision check, and only when it still names the
//! epoch those keys had. "Known gone" is read on each stream's leader (a replica may lag),
//! both reads at once and within half a TTL: an agent makes a lost key again only while its
//! other key stands, and that key must then be renewed, a round later, before the new one
//! counts (`live_pair.rs`); a key cannot expire within half a TTL of such a renewal. So two
//! reads that close together that both find no key mean that there was a moment when the
//! epoch had no key at all, and its agent's fence had closed for good. The reads happen:
//! - when the ring watch delivers a marker (expired or deleted) for a watched key; or
//! - in the reconcile leader's sweep (the backstop for a key whose watchers all died with
//!   it, every [`SWEEP`]), for every record it holds.
//!
//! A key expires a whole TTL after its last renewal, and its agent stopped sending at 75%
//! of it (the fence): nobody takes over a shard its holder may still be running.

use std::time::{Duration, Instant};

use async_nats::jetstream::kv::Operation;
use pluribus_common::kv::leader_entry;
use pluribus_common::messages::Liveness;
use pluribus_common::subjects::liveness_key;
use pluribus_common::wire;

use super::ring::{self, RingEntry};
use super::{Control, IO_TIMEOUT};

/// How often the reconcile leader checks every liveness key itself.
pub(super) const SWEEP: Duration = Duration::from_secs(10);

impl Control {
    /// Follows this agent's liveness keys and its ring predecessors' (by the epoch records
    /// in view); the watches start again when that set changes.
    pub(super) fn update_ring(&mut self) {
        let preds = ring::predecessors(&self.id, self.live.keys());
        let mut ids = vec![self.id.clone()];
        ids.extend(preds);
        if self.ring_tx.borrow().ids == ids {
            return;
        }
        tracing::debug!(watched = %ids[1..].join(","), "following these agents' liveness keys");
        self.ring_tx.send_modify(|w| {
            w.generation += 1;
            w.ids = ids;
        });
    }

    /// One liveness entry from the ring watch.
    pub(super) async fn on_ring(&mut self, e: RingEntry) {
        if e.generation != self.ring_tx.borrow().generation {
            return;
        }
        let entry = e.entry;
        let id = entry.key.clone();
        if entry.operation == Operation::Put {
            let valid = wire::decode::<Liveness>(&entry.value).is_ok_and(|l| l.agent_id == id);
            if !valid {
                tracing::warn!(agent = %id, "a liveness key holds no valid entry; ignored");
            } else if id == self.id && e.bucket == 0 {
                self.clock_sample(&entry);
            }
            return;
        }
        // Our own key gone: the liveness task finds out on its next renewal.
        if id == self.id {
            return;
        }
        let Some(&epoch) = self.live.get(&id) else {
            return;
        };
        if self.keys_of(&id, epoch).await == Keys::Gone {
            self.remove_epoch_record(&id, epoch, "both its liveness keys expired")
                .await;
        }
    }

    /// What `id`'s two liveness keys say of `epoch`, read at once on their streams'
    /// leaders, within half a TTL.
    async fn keys_of(&self, id: &str, epoch: u64) -> Keys {
        let reads = self.live_stores.iter().map(|s| leader_entry(s, id));
        let bound = self.cfg.lease_ttl / 2;
        let Ok(got) = tokio::time::timeout(bound, futures::future::join_all(reads)).await else {
            return Keys::Unknown;
        };
        let mut standing = false;
        for g in got {
            match g {
                Err(_) => return Keys::Unknown,
                Ok(None) => {}
                Ok(Some((value, _))) => match wire::decode::<Liveness>(&value) {
                    // Another epoch's key: this one is over.
                    Ok(l) if l.agent_id == id && l.epoch != epoch => {}
                    Ok(l) if l.agent_id == id => standing = true,
                    // A value that is no entry at all (a foreign write) proves nothing: its
                    // agent finds out on its next renewal.
                    _ => return Keys::Unknown,
                },
            }
        }
        if standing {
            Keys::Standing
        } else {
            Keys::Gone
        }
    }

    /// Deletes `id`'s epoch record if it still names `epoch` (revision check): every agent's
    /// lease watch then offers that agent's shards.
    async fn remove_epoch_record(&mut self, id: &str, epoch: u64, why: &str) {
        if self.live.get(id) != Some(&epoch) {
            return;
        }
        let Some(rev) = self.live_revisions.get(id).copied() else {
            return;
        };
        let key = liveness_key(id);
        let del = self.buckets.lease_delete(&key, rev);
        match tokio::time::timeout(IO_TIMEOUT, del).await {
            Ok(Ok(())) => {
                tracing::info!(agent = %id, epoch, reason = why, "removed a gone agent's epoch record")
            }
            other => {
                tracing::debug!(agent = %id, ?other, "epoch record not removed (another agent may have)")
            }
        }
    }

    /// The backstop of the ring: every [`SWEEP`], the reconcile leader reads every other
    /// agent's liveness keys, and removes the epoch record of any whose keys are both gone
    /// or under another epoch (the records are read first, then the keys). It also keeps
    /// the two live buckets' leaders on different nodes (`leaders.rs`).
    pub(super) async fn sweep_liveness(&mut self) {
        if self.epoch == 0 || self.last_sweep.elapsed() < SWEEP || !self.is_reconcile_leader() {
            return;
        }
        self.last_sweep = Instant::now();
        let records: Vec<(String, u64)> = self
            .live
            .iter()
            .filter(|(id, _)| **id != self.id)
            .map(|(id, e)| (id.clone(), *e))
            .collect();
        for (id, epoch) in records {
            match self.keys_of(&id, epoch).await {
                Keys::Gone => {
                    self.remove_epoch_record(
                        &id,
                        epoch,
                        "its liveness keys are gone (leader's sweep)",
                    )
                    .await
                }
                Keys::Standing => {}
                // A stream without a leader, say: the next sweep goes on.
                Keys::Unknown => break,
            }
        }
        super::leaders::keep_apart(&self.conn.js, &self.live_stores).await;
    }
}

/// What an agent's two liveness keys say of an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    /// Neither holds it: the epoch is over.
    Gone,
    /// One holds it.
    Standing,
    /// A read failed or was too slow.
    Unknown,
}
