//! Keeping leases. Shard leases are not renewed: each names the epoch of its holder's
//! liveness entry (`liveness.rs`) and stands while that entry does. This file keeps the
//! control loop's side of that: whether a lease still stands, the fence (every shard stops
//! once the liveness entry could not be renewed in time), and rewriting a held lease when
//! its devices or generation change, so that `pluribusctl` counts what runs.

use pluribus_common::kv::KvError;
use pluribus_common::messages::EventKind;

use super::{Control, Internal, LeaseView};

impl Control {
    pub(super) async fn on_internal(&mut self, ev: Internal) {
        match ev {
            Internal::Rewritten { key, result } => self.on_rewritten(&key, result),
            Internal::Stopped { key } => self.on_stopped(&key),
            Internal::Live { epoch } => {
                self.epoch = epoch;
                self.changed = true;
                // Take back at once what is still in our name (after a lost entry).
                if self.synced.iter().all(|s| *s) {
                    self.adopt_orphans().await;
                }
            }
            Internal::PeerUnwritten => self.peer_written = None,
            Internal::Lost { epoch } => {
                if self.epoch == epoch {
                    self.epoch = 0;
                }
                self.fence_all().await;
            }
        }
    }

    /// True while `lease` stands: its holder's liveness entry is there at the epoch the
    /// lease names, or the lease is newer than what the watch has delivered (its holder's
    /// entry, written before it, may not have reached us yet).
    pub(super) fn stands(&self, lease: &LeaseView) -> bool {
        lease.revision > self.lease_pos || self.live.get(&lease.agent_id) == Some(&lease.epoch)
    }

    /// True when `key` is held by a lease that stands.
    pub(super) fn is_held(&self, key: &str) -> bool {
        self.held.contains_key(key) || self.leases.get(key).is_some_and(|l| self.stands(l))
    }

    /// Once the fence has passed (the liveness entry could not be renewed in time, or is
    /// gone), stops every shard: the runners already send nothing. The leases stay; they
    /// are taken back when the entry is renewed or made again, unless another agent took
    /// them first.
    pub(super) async fn fence_stale(&mut self) {
        if !self.held.is_empty() && !self.fence.is_open() {
            self.fence_all().await;
        }
        self.rewrite_leases();
    }

    async fn fence_all(&mut self) {
        let keys: Vec<String> = self.held.keys().cloned().collect();
        if keys.is_empty() {
            return;
        }
        tracing::warn!(
            shards = keys.len(),
            "could not renew the liveness entry in time; stopping every shard (fenced)"
        );
        for key in keys {
            let Some(h) = self.held.remove(&key) else {
                continue;
            };
            let (fleet, shard) = (h.fleet.clone(), h.shard);
            drop(self.stop_in_background(&key, h.handle, "fenced"));
            self.event(EventKind::ShardFenced {
                fleet,
                shard,
                agent_id: self.id.clone(),
            })
            .await;
        }
        self.sync_command_subs().await;
    }

    /// Rewrites the held leases whose devices or generation changed (one write each, with
    /// a revision check; the lease watch shows whoever else took one).
    fn rewrite_leases(&mut self) {
        if self.epoch == 0 || !self.fence.is_open() {
            return;
        }
        let due: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| !h.rewriting && h.written != (h.devices, h.generation))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let Some((record, _)) = self
                .held
                .get(&key)
                .and_then(|h| self.fleets.get(&h.fleet))
                .cloned()
            else {
                continue;
            };
            let Some(h) = self.held.get(&key) else {
                continue;
            };
            let (shard, prev) = (h.shard, h.revision);
            let value = self.lease_value(&record, shard);
            let written = (record.shard_desired(shard), record.generation);
            if let Some(h) = self.held.get_mut(&key) {
                h.rewriting = true;
                h.written = written;
            }
            let buckets = self.buckets.clone();
            let tx = self.internal_tx.clone();
            self.tracker.spawn(async move {
                let put = buckets.lease_put(&key, value, prev, None);
                let result = match tokio::time::timeout(super::IO_TIMEOUT, put).await {
                    Ok(r) => r,
                    Err(_) => Err(KvError::Other("lease rewrite timed out".into())),
                };
                let _ = tx.send(Internal::Rewritten { key, result });
            });
        }
    }

    fn on_rewritten(&mut self, key: &str, result: Result<u64, KvError>) {
        let Some(h) = self.held.get_mut(key) else {
            return;
        };
        h.rewriting = false;
        match result {
            Ok(rev) => h.revision = h.revision.max(rev),
            // Another agent took it (the lease watch stops the shard), or a write of ours
            // landed meanwhile (the watch moved the revision): try again on the next tick.
            Err(e) => {
                tracing::debug!(lease = %key, error = %e, "lease rewrite failed");
                h.written = (0, 0);
            }
        }
    }

    /// A lease we held belongs to someone else now (or is gone): stop at once, touch nothing.
    pub(super) async fn drop_lost(&mut self, key: &str) {
        if let Some(h) = self.held.remove(key) {
            // Stop sending at once; the on_stop messages follow in the background.
            let _ = h.handle.why.set("lease lost".into());
            h.handle.token.cancel();
            drop(self.stop_in_background(key, h.handle, "lease lost"));
        }
        self.sync_command_subs().await;
    }
}
