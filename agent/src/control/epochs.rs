//! The control loop's side of the ring (`ring.rs`): which liveness keys to follow, and
//! deleting the epoch record of an agent whose liveness key is gone, so that every agent
//! treats its leases as void.
//!
//! An epoch record is deleted only once its liveness key is known gone, always with a
//! revision check, and only when it still names the epoch that key had:
//! - the ring watch saw the key renewed under epoch E, then the server's marker (expired or
//!   deleted); or
//! - the key was already gone when the watch started (its marker is the first thing the
//!   watch delivers), and the epoch is the one the record named *before* the watch started:
//!   the record of an epoch is written after its key is made, so that key existed, and is
//!   gone now; or
//! - the reconcile leader's sweep (the backstop for a key whose watchers all died with it,
//!   every [`SWEEP`]) read the record first, then found the key absent or under another
//!   epoch.
//!
//! A key expires a whole TTL after its last renewal, and its agent stopped sending at 75%
//! of it (the fence): nobody takes over a shard its holder may still be running.

use std::time::{Duration, Instant};

use async_nats::jetstream::kv::Operation;
use pluribus_common::messages::Liveness;
use pluribus_common::subjects::liveness_key;
use pluribus_common::wire;

use super::ring::{self, RingEntry};
use super::{Control, IO_TIMEOUT};

/// How often the reconcile leader checks every liveness key itself.
pub(super) const SWEEP: Duration = Duration::from_secs(10);

impl Control {
    /// Follows this agent's liveness key and its ring predecessors' (by the epoch records
    /// in view); the watch starts again when that set changes.
    pub(super) fn update_ring(&mut self) {
        let preds = ring::predecessors(&self.id, self.live.keys());
        let mut ids = vec![self.id.clone()];
        ids.extend(preds.iter().cloned());
        if self.ring_tx.borrow().ids == ids {
            return;
        }
        let epochs = preds
            .iter()
            .filter_map(|id| self.live.get(id).map(|e| (id.clone(), *e)))
            .collect();
        self.ring_seen.retain(|id, _| ids.contains(id));
        tracing::debug!(watched = %ids[1..].join(","), "following these agents' liveness keys");
        self.ring_tx.send_modify(|w| {
            w.generation += 1;
            w.ids = ids;
            w.epochs = epochs;
        });
    }

    /// One liveness entry from the ring watch.
    pub(super) async fn on_ring(&mut self, e: RingEntry) {
        let (generation, from_start) = {
            let w = self.ring_tx.borrow();
            (w.generation, w.epochs.get(&e.entry.key).copied())
        };
        if e.generation != generation {
            return;
        }
        let entry = e.entry;
        let id = entry.key.clone();
        if entry.operation == Operation::Put {
            let epoch = wire::decode::<Liveness>(&entry.value)
                .ok()
                .filter(|l| l.agent_id == id)
                .map(|l| l.epoch);
            match epoch {
                Some(_) if id == self.id => self.clock_sample(&entry),
                Some(epoch) => {
                    self.ring_seen.insert(id, epoch);
                }
                None => tracing::warn!(agent = %id, "a liveness key holds no valid entry; ignored"),
            }
            return;
        }
        // Our own key gone: the liveness task finds out on its next renewal.
        if id == self.id {
            return;
        }
        if let Some(epoch) = self.ring_seen.remove(&id).or(from_start) {
            self.remove_epoch_record(&id, epoch, "its liveness key expired")
                .await;
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
    /// agent's liveness key, and removes the epoch record of any whose key is gone or under
    /// another epoch (the records are read first, then the keys).
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
            let got = tokio::time::timeout(IO_TIMEOUT, self.live_store.entry(&id)).await;
            let gone = match got {
                Ok(Ok(None)) => true,
                Ok(Ok(Some(e))) if e.operation != Operation::Put => true,
                // Another epoch's key: this one is over. A value that is no entry at all
                // (a foreign write) proves nothing: its agent finds out on its next renewal.
                Ok(Ok(Some(e))) => wire::decode::<Liveness>(&e.value)
                    .is_ok_and(|l| l.agent_id == id && l.epoch != epoch),
                _ => false,
            };
            if gone {
                self.remove_epoch_record(&id, epoch, "its liveness key is gone (leader's sweep)")
                    .await;
            }
        }
    }
}
