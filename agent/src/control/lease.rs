//! Keeping leases: renewing every held lease each fifth of the TTL (with a revision check,
//! so a lease someone else took is never overwritten), and fencing: a shard whose lease
//! could not be renewed for 75% of the TTL is stopped before the lease can expire and
//! another agent start the same devices.

use std::time::Instant;

use pluribus_common::kv::KvError;
use pluribus_common::messages::{EventKind, LeaseRecord};
use pluribus_common::wire;

use super::{Control, Internal, IO_TIMEOUT};

impl Control {
    /// Starts a renewal of every held lease that has none in flight.
    pub(super) fn renew_all(&mut self) {
        let (ttl, attempt) = (self.cfg.lease_ttl, self.cfg.renew_every());
        let keys: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| !h.renewing)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            let Some((record, _)) = self
                .held
                .get(&key)
                .and_then(|h| self.fleets.get(&h.fleet))
                .cloned()
            else {
                continue;
            };
            let Some(h) = self.held.get_mut(&key) else {
                continue;
            };
            h.renewing = true;
            let prev = h.revision;
            let shard = h.shard;
            let value = self.lease_value(&record, shard);
            let buckets = self.buckets.clone();
            let tx = self.internal_tx.clone();
            self.tracker.spawn(async move {
                let sent_at = Instant::now();
                let result =
                    match tokio::time::timeout(attempt, buckets.lease_put(&key, value, prev, ttl))
                        .await
                    {
                        Ok(r) => r,
                        Err(_) => Err(KvError::Other("renewal timed out".into())),
                    };
                let _ = tx.send(Internal::Renewed {
                    key,
                    prev,
                    sent_at,
                    result,
                });
            });
        }
    }

    pub(super) async fn on_renewed(
        &mut self,
        key: String,
        prev: u64,
        sent_at: Instant,
        result: Result<u64, KvError>,
    ) {
        let Some(h) = self.held.get_mut(&key) else {
            return;
        };
        h.renewing = false;
        match result {
            Ok(rev) => {
                h.revision = h.revision.max(rev);
                h.last_ok = h.last_ok.max(sent_at);
            }
            // The lease watch has shown a later write of ours (an attempt that timed out
            // here but landed): the next renewal starts from it.
            Err(KvError::Conflict) if h.revision != prev => {}
            Err(KvError::Conflict) => self.on_conflict(&key, prev).await,
            Err(e) => tracing::warn!(lease = %key, error = %e, "lease renewal failed"),
        }
    }

    /// A renewal found the lease at another revision than ours. A renewal that timed out
    /// here may have landed (the lease is then still ours, one revision on): read it, and
    /// stop the shard only if another agent holds it or it is gone.
    async fn on_conflict(&mut self, key: &str, prev: u64) {
        let read = tokio::time::timeout(IO_TIMEOUT, self.buckets.leases.entry(key)).await;
        let entry = match read {
            Ok(Ok(entry)) => entry,
            // Unknown: keep the shard; the next renewal tries again, the fence still holds.
            _ => return,
        };
        let ours = entry.as_ref().is_some_and(|e| {
            e.operation == async_nats::jetstream::kv::Operation::Put
                && wire::decode::<LeaseRecord>(&e.value).is_ok_and(|l| l.agent_id == self.id)
        });
        match (entry, self.held.get_mut(key)) {
            (Some(e), Some(h)) if ours => {
                tracing::debug!(lease = %key, prev, now = e.revision, "a renewal that timed out had landed; carrying on");
                h.revision = h.revision.max(e.revision);
            }
            _ => {
                tracing::warn!(lease = %key, "lease was taken over; stopping the shard here");
                self.drop_lost(key).await;
            }
        }
    }

    /// Stops every shard whose lease has not been renewed for the fence time.
    pub(super) async fn fence_stale(&mut self) {
        let fence = self.cfg.fence_after();
        let stale: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| h.last_ok.elapsed() > fence)
            .map(|(k, _)| k.clone())
            .collect();
        if stale.is_empty() {
            return;
        }
        for key in stale {
            let Some(h) = self.held.remove(&key) else {
                continue;
            };
            tracing::warn!(lease = %key, "could not renew the lease in time; stopping the shard (fenced)");
            let (fleet, shard) = (h.fleet.clone(), h.shard);
            // Stopping must not wait on the dead connection: the runner's stop is bounded.
            let handle = h.handle;
            self.tracker.spawn(handle.stop("fenced"));
            self.event(EventKind::ShardFenced {
                fleet,
                shard,
                agent_id: self.id.clone(),
            })
            .await;
        }
        self.sync_command_subs().await;
    }

    /// A lease we held belongs to someone else now (or is gone): stop at once, touch nothing.
    pub(super) async fn drop_lost(&mut self, key: &str) {
        if let Some(h) = self.held.remove(key) {
            // Stop sending at once; the on_stop messages follow in the background.
            let _ = h.handle.why.set("lease lost".into());
            h.handle.token.cancel();
            self.tracker.spawn(h.handle.stop("lease lost"));
        }
        self.sync_command_subs().await;
    }
}
