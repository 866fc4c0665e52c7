//! Giving work back: releasing a shard (stop its devices, then delete the lease, then
//! offer it so another agent takes it at once), rebalancing above the fair share, draining
//! and the graceful shutdown.

use std::time::Duration;

use pluribus_common::messages::{EventKind, ShardOffer};

use super::{Control, IO_TIMEOUT};

impl Control {
    /// Releases a held shard. With `reoffer`, the shard is offered again once the lease is
    /// deleted (never before: an offer while the lease stands would be refused by all).
    pub(super) async fn release(&mut self, key: &str, reoffer: bool, reason: &str) {
        let Some(h) = self.held.remove(key) else {
            return;
        };
        tracing::info!(lease = %key, reason, "releasing shard");
        let buckets = self.buckets.clone();
        let client = self.conn.client.clone();
        let work = self.conn.ns.work();
        let key = key.to_string();
        let (fleet, shard, revision) = (h.fleet.clone(), h.shard, h.revision);
        // The devices' devices_stopped event gives the same reason.
        let why = reason.to_string();
        // Until the lease is deleted it is ours and not held: never taken back meanwhile.
        *self.stopping.entry(key.clone()).or_default() += 1;
        let tx = self.internal_tx.clone();
        let task = async move {
            h.handle.stop(&why).await;
            if let Ok(Err(e)) =
                tokio::time::timeout(IO_TIMEOUT, buckets.lease_delete(&key, revision)).await
            {
                tracing::debug!(lease = %key, error = %e, "lease delete failed (it will expire)");
            }
            if reoffer {
                let offer =
                    pluribus_common::wire::encode(&ShardOffer::released(&fleet, shard, revision));
                let _ = tokio::time::timeout(IO_TIMEOUT, client.publish(work, offer)).await;
            }
            let _ = tx.send(super::Internal::Stopped { key });
        };
        self.tracker.spawn(task);
        self.event(EventKind::ShardReleased {
            fleet: h.fleet,
            shard,
            agent_id: self.id.clone(),
            reason: reason.to_string(),
        })
        .await;
        self.sync_command_subs().await;
    }

    /// Releases up to `max` shards while this agent is above its fair share and another
    /// live agent has room below it. A shard of `d` devices moves only if this agent stays
    /// at least `fair - d/2`, the taker ends at most `fair + d/2`, and the gap between the
    /// two is more than `d` (so a move always narrows it and two agents never swap a shard
    /// back and forth). Returns how many were released.
    pub(super) async fn rebalance(&mut self, max: usize) -> u32 {
        let fair = self.fair_share();
        let mut mine = self.held_devices();
        let mut others: Vec<(String, u64, Option<u64>)> = self
            .agents
            .values()
            .filter(|a| a.id != self.id && self.alive(a) && !a.draining)
            .map(|a| (a.id.clone(), a.devices, a.spare()))
            .collect();
        let mut keys: Vec<(String, u64, String)> = self
            .held
            .iter()
            .map(|(k, h)| (k.clone(), h.devices, h.fleet.clone()))
            .collect();
        keys.sort_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)));
        let mut released = 0u32;
        for (key, devices, fleet) in keys {
            let half = devices / 2;
            if released as usize >= max || mine.saturating_sub(devices) + half < fair {
                continue;
            }
            let Some((record, _)) = self.fleets.get(&fleet) else {
                continue;
            };
            let placement = record.spec.placement.clone();
            let (types, sinks) = (record.spec.device_types(), record.spec.sink_types());
            let taker = others.iter_mut().find(|(id, n, spare)| {
                *n + devices <= fair + half
                    && mine > *n + devices
                    && spare.is_none_or(|s| s >= devices)
                    && self
                        .agents
                        .get(id)
                        .is_some_and(|a| a.fits(&placement, &types, &sinks))
            });
            let Some(t) = taker else { continue };
            t.1 += devices;
            if let Some(s) = t.2.as_mut() {
                *s -= devices;
            }
            mine -= devices;
            self.release(&key, true, "rebalance").await;
            released += 1;
        }
        released
    }

    /// Hands off every held shard (drain).
    pub(super) async fn release_all(&mut self, reason: &str) -> u32 {
        let keys: Vec<String> = self.held.keys().cloned().collect();
        let n = keys.len() as u32;
        for key in keys {
            self.release(&key, true, reason).await;
        }
        n
    }

    /// Graceful stop: devices run on_stop, leases are deleted and offered to the others,
    /// "left" is announced, our heartbeat entry removed and NATS flushed.
    pub(super) async fn shutdown(&mut self) {
        tracing::info!(agent = %self.id, shards = self.held.len(), "shutting down");
        let mut stops = Vec::new();
        let mut handoff = Vec::new();
        for (key, h) in self.held.drain() {
            handoff.push((key, h.fleet.clone(), h.shard, h.revision));
            stops.push(h.handle.stop("agent stopping"));
        }
        futures::future::join_all(stops).await;
        let deletes = handoff.iter().map(|(key, _, _, rev)| {
            let b = self.buckets.clone();
            async move { tokio::time::timeout(IO_TIMEOUT, b.lease_delete(key, *rev)).await }
        });
        futures::future::join_all(deletes).await;
        for (_, fleet, shard, rev) in &handoff {
            self.offer(ShardOffer::released(fleet, *shard, *rev)).await;
        }
        self.event(EventKind::AgentLeft {
            agent_id: self.id.clone(),
            name: self.cfg.name.clone(),
        })
        .await;
        self.drain_events().await;
        let _ = tokio::time::timeout(IO_TIMEOUT, self.buckets.agents.delete(&self.id)).await;
        let _ = tokio::time::timeout(IO_TIMEOUT, self.peers.delete(&self.id)).await;
        // Last: the liveness entry (what is still in our name is void once it is gone).
        if let Some(l) = self.liveness.take() {
            l.stop().await;
        }
        for (_, t) in self.cmd_subs.drain() {
            t.cancel();
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.conn.client.flush()).await;
        tracing::info!(agent = %self.id, "stopped");
    }
}
