//! The reconcile pass, every few seconds in every agent. Desired state in KV is the source
//! of truth; this pass makes the cluster converge on it:
//! - a fleet whose duration ran out is deleted;
//! - a shard that stayed unheld for a whole pass is offered again (its lease expired, it
//!   was refused everywhere, or it was deployed while no agent ran);
//! - a lease in our name that we do not run (we fenced ourselves while NATS was away) is
//!   taken back with a revision check, or given up;
//! - a draining agent hands off what it holds; an agent above its fair share releases one
//!   shard per pass to an agent with room.

use std::time::{Duration, Instant};

use pluribus_common::messages::{EventKind, ShardOffer};
use pluribus_common::subjects::{lease_key, parse_lease_key};
use pluribus_common::time::now_ms;

use super::{backoff, Control, Held, IO_TIMEOUT};
use crate::shard;

/// Passes a shard must stay unheld before an agent that is not the reconcile leader
/// offers it (the leader offers after one).
const FOLLOWER_PATIENCE: u32 = 5;

impl Control {
    pub(super) async fn reconcile(&mut self) {
        if !self.synced.iter().all(|s| *s) {
            return;
        }
        self.expire_fleets().await;
        self.remove_bad_leases().await;
        self.remove_void_leases().await;
        self.remove_gone_peers().await;
        self.sweep_liveness().await;
        self.offer_unheld().await;
        self.adopt_orphans().await;
        self.announce_timeline().await;
        if self.draining {
            self.release_all("drain").await;
        } else if self.cfg.auto_rebalance
            && self.last_release.elapsed() > self.cfg.heartbeat * 3
            && self.rebalance(1).await > 0
        {
            self.last_release = Instant::now();
        }
    }

    async fn expire_fleets(&mut self) {
        let now = now_ms();
        let fleets = &self.fleets;
        self.expire_tried.retain(|k, _| fleets.contains_key(k));
        let expired: Vec<(String, u64)> = self
            .fleets
            .iter()
            .filter(|(_, (r, _))| r.expires_ms().is_some_and(|t| t <= now))
            .map(|(k, (_, rev))| (k.clone(), *rev))
            .collect();
        for (name, rev) in expired {
            // Stop what runs here whether or not the record can be deleted (an agent
            // credential may not write the fleets bucket: deploy/nats/roles.conf).
            let held: Vec<String> = self
                .held
                .iter()
                .filter(|(_, h)| h.fleet == name)
                .map(|(k, _)| k.clone())
                .collect();
            for key in held {
                self.release(&key, false, "duration elapsed").await;
            }
            // One attempt a minute per record revision: a refused delete must not cost
            // every pass a timeout.
            if self
                .expire_tried
                .get(&name)
                .is_some_and(|(r, at)| *r == rev && at.elapsed() < Duration::from_secs(60))
            {
                continue;
            }
            self.expire_tried
                .insert(name.clone(), (rev, Instant::now()));
            let r = tokio::time::timeout(
                IO_TIMEOUT,
                self.buckets.fleets.delete_expect_revision(&name, Some(rev)),
            )
            .await;
            if let Ok(Ok(())) = r {
                tracing::info!(fleet = %name, "fleet duration elapsed; deleted");
                self.event(EventKind::FleetDeleted {
                    fleet: name,
                    reason: "duration elapsed".into(),
                })
                .await;
            }
        }
    }

    /// Removes lease keys that held no valid lease for a whole lease TTL (a foreign write,
    /// which may carry no TTL and would otherwise pin its shard forever). The delete checks
    /// the revision, so a real lease written meanwhile is never removed.
    async fn remove_bad_leases(&mut self) {
        let ttl = self.cfg.lease_ttl;
        let due: Vec<(String, u64)> = self
            .bad_leases
            .iter()
            .filter(|(_, (_, since))| since.elapsed() >= ttl)
            .map(|(k, (rev, _))| (k.clone(), *rev))
            .collect();
        for (key, rev) in due {
            if let Some(entry) = self.bad_leases.get_mut(&key) {
                entry.1 = Instant::now();
            }
            match tokio::time::timeout(IO_TIMEOUT, self.buckets.lease_delete(&key, rev)).await {
                Ok(Ok(())) => {
                    tracing::warn!(lease = %key, revision = rev, "removed a lease key that held no valid lease");
                    if let Some((fleet, shard)) = parse_lease_key(&key) {
                        if self
                            .fleets
                            .get(fleet)
                            .is_some_and(|(r, _)| r.shard_desired(shard) > 0)
                        {
                            self.offer(ShardOffer::new(fleet, shard)).await;
                        }
                    }
                }
                other => {
                    tracing::debug!(lease = %key, ?other, "could not remove a bad lease key (another agent may have)")
                }
            }
        }
    }

    /// True for the live agent with the lowest id: it re-offers shards unheld for one
    /// pass, the others only after [`FOLLOWER_PATIENCE`] passes, so that N agents do not
    /// send N copies of every offer. (Expired leases are offered by every agent at once,
    /// from the lease watch, so failover does not wait for it.)
    pub(super) fn is_reconcile_leader(&self) -> bool {
        !self
            .agents
            .values()
            .any(|a| self.alive(a) && a.id < self.id)
    }

    /// The leader deletes void leases (their holder's liveness entry is gone) of shards
    /// nobody wants any more (fleet deleted or scaled down): they no longer expire on their
    /// own. A void lease of a wanted shard is taken over instead.
    async fn remove_void_leases(&mut self) {
        if !self.is_reconcile_leader() || self.epoch == 0 {
            return;
        }
        let void: Vec<(String, u64)> = self
            .leases
            .iter()
            .filter(|(k, l)| {
                !self.stands(l)
                    && !self.held.contains_key(*k)
                    && parse_lease_key(k).is_some_and(|(f, s)| {
                        self.fleets
                            .get(f)
                            .is_none_or(|(r, _)| r.shard_desired(s) == 0)
                    })
            })
            .map(|(k, l)| (k.clone(), l.revision))
            .collect();
        for (key, rev) in void {
            let del = self.buckets.lease_delete(&key, rev);
            if let Ok(Ok(())) = tokio::time::timeout(IO_TIMEOUT, del).await {
                tracing::info!(lease = %key, "removed the lease of a gone agent on a shard nobody wants");
            }
        }
    }

    /// The leader deletes the peer records of agents whose liveness entry has been gone
    /// for two lease TTLs (they died without leaving): nobody counts them anyway, and the
    /// bucket must not keep one record per agent process ever started. A record written
    /// again meanwhile (revision check) stays; an agent that finds its own record gone
    /// writes it again.
    async fn remove_gone_peers(&mut self) {
        let leader = self.is_reconcile_leader() && self.epoch != 0;
        let now = Instant::now();
        let gone: Vec<String> = self
            .agents
            .keys()
            .filter(|id| **id != self.id && !self.live.contains_key(*id))
            .cloned()
            .collect();
        self.peer_orphaned.retain(|id, _| gone.contains(id));
        if !leader {
            return;
        }
        let grace = self.cfg.lease_ttl * 2;
        for id in gone {
            let since = *self.peer_orphaned.entry(id.clone()).or_insert(now);
            let Some(rev) = self.peer_revisions.get(&id).copied() else {
                continue;
            };
            if now.duration_since(since) < grace {
                continue;
            }
            let del = self.peers.delete_expect_revision(&id, Some(rev));
            if let Ok(Ok(())) = tokio::time::timeout(IO_TIMEOUT, del).await {
                tracing::info!(agent = %id, "removed the peer record of a gone agent");
            }
            self.peer_orphaned.insert(id, now);
        }
    }

    async fn offer_unheld(&mut self) {
        let fleets = &self.fleets;
        self.prepare_backoff
            .retain(|k| parse_lease_key(k).is_some_and(|(f, _)| fleets.contains_key(f)));
        // The leader re-offers a shard unheld for a whole pass. The others wait longer
        // before they do: if the leader's own view is wrong (its fleets watch stalled on a
        // NATS cluster losing a node, say), a shard still comes back, and the create-only
        // lease keeps a duplicate offer harmless.
        let patience = if self.is_reconcile_leader() {
            1
        } else {
            FOLLOWER_PATIENCE
        };
        let now = Instant::now();
        let period = self.cfg.reconcile * patience;
        let mut offers = Vec::new();
        let mut retries = Vec::new();
        let mut still_unheld = std::collections::HashSet::new();
        for (name, (record, revision)) in &self.fleets {
            for shard in 0..record.shard_count() {
                if record.shard_desired(shard) == 0
                    || record.expires_ms().is_some_and(|t| t <= now_ms())
                {
                    continue;
                }
                let key = lease_key(name, shard);
                if self.is_held(&key) || self.stopping.contains_key(&key) {
                    continue;
                }
                still_unheld.insert(key.clone());
                let since = *self.unheld_since.entry(key.clone()).or_insert(now);
                if now.duration_since(since) < period {
                    continue;
                }
                // A shard that failed to prepare here is re-offered only when its wait is
                // over (this agent tries it again itself), unless another agent may still
                // manage it: so it does not circulate while nobody can run it.
                match self.prepare_backoff.state(&key, *revision, now) {
                    backoff::State::Clear => offers.push(ShardOffer::new(name, shard)),
                    backoff::State::Waiting => {
                        if self.another_may_prepare(record) {
                            offers.push(ShardOffer::new(name, shard));
                        } else {
                            continue;
                        }
                    }
                    backoff::State::Due => retries.push((key.clone(), record.clone(), shard)),
                }
                self.unheld_since.insert(key, now);
            }
        }
        self.unheld_since.retain(|k, _| still_unheld.contains(k));
        for o in offers {
            self.offer(o).await;
        }
        for (key, record, shard) in retries {
            let devices = record.shard_desired(shard);
            if !self.draining && self.fits(&record).is_ok() && self.has_room(&record, devices) {
                self.claim(&key, record, shard).await;
            } else {
                self.offer(ShardOffer::new(record.name(), shard)).await;
            }
        }
    }

    /// Takes back the leases in our name that we do not run (we fenced ourselves while
    /// NATS was away, or our liveness entry expired and we made a new one): rewritten with
    /// a revision check under our current epoch, or deleted and offered when we cannot run
    /// them. A lease whose stop is still running here is left alone until it has stopped.
    pub(super) async fn adopt_orphans(&mut self) {
        if self.epoch == 0 || !self.clock_known || !self.fence.is_open() {
            return;
        }
        let orphans: Vec<(String, u64)> = self
            .leases
            .iter()
            .filter(|(k, l)| {
                l.agent_id == self.id
                    && !self.held.contains_key(*k)
                    && !self.stopping.contains_key(*k)
            })
            .map(|(k, l)| (k.clone(), l.revision))
            .collect();
        if orphans.is_empty() {
            return;
        }
        for (key, revision) in orphans {
            let Some((fleet, shard)) = parse_lease_key(&key) else {
                continue;
            };
            let record = self.fleets.get(fleet).map(|(r, _)| r.clone());
            let runnable = record.as_ref().is_some_and(|r| {
                let d = r.shard_desired(shard);
                d > 0 && !self.draining && self.fits(r).is_ok() && self.has_room(r, d)
            });
            let prepared = match (&record, runnable) {
                (Some(r), true) => shard::prepare(
                    r.clone(),
                    shard,
                    &self.registry,
                    &self.secrets,
                    &self.events,
                    self.metrics.fleet(fleet),
                    self.cfg.wake_grid,
                )
                .ok(),
                _ => None,
            };
            let (Some(record), Some(prepared)) = (record, prepared) else {
                let _ = tokio::time::timeout(IO_TIMEOUT, self.buckets.lease_delete(&key, revision))
                    .await;
                if let Some((f, s)) = parse_lease_key(&key) {
                    self.offer(ShardOffer::new(f, s)).await;
                }
                continue;
            };
            let value = self.lease_value(&record, shard);
            match tokio::time::timeout(
                IO_TIMEOUT,
                self.buckets.lease_put(&key, value, revision, None),
            )
            .await
            {
                Ok(Ok(rev)) => {
                    tracing::info!(lease = %key, "took back our lease");
                    let handle =
                        prepared.spawn(self.token.child_token(), &self.tracker, &self.fence);
                    let devices = record.shard_desired(shard);
                    self.held.insert(
                        key.clone(),
                        Held {
                            fleet: fleet.to_string(),
                            shard,
                            revision: rev,
                            generation: record.generation,
                            devices,
                            written: (devices, record.generation),
                            rewriting: false,
                            handle,
                        },
                    );
                }
                other => tracing::debug!(lease = %key, ?other, "could not take back our lease"),
            }
        }
        self.sync_command_subs().await;
    }
}
