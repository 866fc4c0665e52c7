//! Keeping the control loop's view of the three buckets current, and reacting to changes
//! of desired state (scale, replace, delete) for the shards this agent holds.

use std::sync::Arc;

use async_nats::jetstream::kv::{Entry, Operation};
use pluribus_common::messages::{LeaseRecord, Liveness, ShardOffer};
use pluribus_common::peer::Peer;
use pluribus_common::record::FleetRecord;
use pluribus_common::subjects::{parse_lease_key, parse_liveness_key};
use pluribus_common::wire;

use super::watch::{Bucket, WatchEvent};
use super::{Control, LeaseView};

/// Decodes and checks a fleet record read from KV: nothing in it is trusted (any client
/// that may write the bucket may have written it).
pub(super) fn read_record(key: &str, value: &[u8]) -> Result<FleetRecord, String> {
    let r = wire::decode::<FleetRecord>(value).map_err(|e| e.to_string())?;
    if r.name() != key {
        return Err(format!(
            "the record under key {key} names another fleet ({})",
            r.name()
        ));
    }
    r.validate().map_err(|e| e.to_string())?;
    Ok(r)
}
use crate::shard::ShardCtl;

impl Control {
    pub(super) async fn on_watch(&mut self, bucket: Bucket, ev: WatchEvent) {
        match ev {
            WatchEvent::Snapshot(entries) => {
                match bucket {
                    Bucket::Fleets => {
                        let before: Vec<String> = self.fleets.keys().cloned().collect();
                        self.fleets.clear();
                        for e in entries {
                            self.apply_fleet(e, false).await;
                        }
                        for name in before {
                            if !self.fleets.contains_key(&name) {
                                self.fleet_gone(&name).await;
                            }
                        }
                        // Held shards may have changed while the watch was down.
                        let names: Vec<String> = self.fleets.keys().cloned().collect();
                        for name in names {
                            self.fleet_changed(&name).await;
                        }
                    }
                    Bucket::Leases => {
                        self.leases.clear();
                        self.live.clear();
                        self.live_revisions.clear();
                        // A bucket made again (JetStream lost its state) numbers from 1.
                        self.lease_pos = 0;
                        let keys: std::collections::HashSet<String> =
                            entries.iter().map(|e| e.key.clone()).collect();
                        self.bad_leases.retain(|k, _| keys.contains(k));
                        // Liveness entries first: the leases are judged by them.
                        let (live, leases): (Vec<Entry>, Vec<Entry>) = entries
                            .into_iter()
                            .partition(|e| parse_liveness_key(&e.key).is_some());
                        for e in live.into_iter().chain(leases) {
                            self.apply_lease(e, false).await;
                        }
                        self.update_ring();
                    }
                    Bucket::Peers => {
                        let own = self.agents.remove(&self.id);
                        self.agents.clear();
                        self.peer_revisions.clear();
                        if let Some(own) = own {
                            self.agents.insert(self.id.clone(), own);
                        }
                        let ours = entries
                            .iter()
                            .any(|e| e.key == self.id && e.operation == Operation::Put);
                        for e in entries {
                            self.apply_peer(e);
                        }
                        // Our record is not there (the bucket was made again, or the
                        // leader took us for gone): write it with the next heartbeat.
                        if !ours {
                            self.peer_written = None;
                        }
                    }
                }
                self.synced[bucket as usize] = true;
            }
            WatchEvent::Update(e) => match bucket {
                Bucket::Fleets => self.apply_fleet(e, true).await,
                Bucket::Leases => self.apply_lease(e, true).await,
                Bucket::Peers => self.apply_peer(e),
            },
        }
    }

    async fn apply_fleet(&mut self, e: Entry, react: bool) {
        if e.operation != Operation::Put {
            self.fleets.remove(&e.key);
            if self.refused.remove(&e.key).is_some() {
                self.refusals.remove(&e.key);
                self.changed = true;
            }
            if react {
                self.fleet_gone(&e.key).await;
            }
            return;
        }
        match read_record(&e.key, &e.value) {
            Ok(r) => {
                if self.refused.remove(&e.key).is_some() {
                    self.refusals.remove(&e.key);
                    self.changed = true;
                }
                self.fleets.insert(e.key.clone(), (Arc::new(r), e.revision));
                if react {
                    self.fleet_changed(&e.key).await;
                }
            }
            Err(why) => self.refuse_record(&e.key, e.revision, why).await,
        }
    }

    /// A fleet record that must not run: forget it, stop what runs of it here, and say why
    /// in the heartbeat (so `status` shows it) and, once per revision, in an event.
    pub(super) async fn refuse_record(&mut self, key: &str, revision: u64, why: String) {
        self.fleets.remove(key);
        let keys: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| h.fleet == key)
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.release(&k, false, "fleet refused").await;
        }
        self.refusals
            .insert(key.to_string(), format!("refused its record: {why}"));
        self.changed = true;
        if self.refused.insert(key.to_string(), revision) == Some(revision) {
            return;
        }
        tracing::warn!(fleet = %key, revision, reason = %why, "refusing a fleet record read from KV; none of its devices run here");
        self.event(pluribus_common::messages::EventKind::FleetRefused {
            fleet: key.to_string(),
            agent_id: self.id.clone(),
            reason: why,
        })
        .await;
    }

    /// A fleet was deleted: stop its shards here and give up their leases for good.
    async fn fleet_gone(&mut self, name: &str) {
        if !self.refused.contains_key(name) {
            self.refusals.remove(name);
        }
        let keys: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| h.fleet == name)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.release(&key, false, "fleet deleted").await;
        }
    }

    /// A fleet's record changed: resize, restart or drop the shards held here.
    async fn fleet_changed(&mut self, name: &str) {
        let Some((record, _)) = self.fleets.get(name).cloned() else {
            return;
        };
        let keys: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| h.fleet == name)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            let Some(h) = self.held.get_mut(&key) else {
                continue;
            };
            let shard = h.shard;
            if shard >= record.shard_count() || record.shard_desired(shard) == 0 {
                self.release(&key, false, "scaled down").await;
            } else if h.generation != record.generation {
                self.restart(&key, record.clone()).await;
            } else {
                h.devices = record.shard_desired(shard);
                let _ = h.handle.tx.send(ShardCtl::Update(record.clone()));
            }
        }
    }

    /// An agent's epoch record changed. When one is gone (or has a new epoch), the leases
    /// that stood on it are void: offer their shards at once (`react`: an update, not the
    /// snapshot).
    async fn apply_liveness(&mut self, agent_id: String, e: Entry, react: bool) {
        let epoch = (e.operation == Operation::Put)
            .then(|| wire::decode::<Liveness>(&e.value).ok())
            .flatten()
            .filter(|l| l.agent_id == agent_id)
            .map(|l| l.epoch);
        let before = match epoch {
            Some(epoch) => {
                self.live_revisions.insert(agent_id.clone(), e.revision);
                self.live.insert(agent_id.clone(), epoch)
            }
            None => {
                self.live_revisions.remove(&agent_id);
                self.live.remove(&agent_id)
            }
        };
        if react && before.is_some() != epoch.is_some() {
            self.update_ring();
        }
        if agent_id == self.id {
            // Our own record gone or replaced under us: stop sending now, and for good under
            // this epoch (its renewals no longer open the fence); the liveness task starts
            // a new one.
            if epoch != Some(self.epoch) && self.epoch != 0 && before == Some(self.epoch) {
                tracing::warn!("our epoch record is gone; fencing every shard now");
                self.fence.revoke(self.epoch);
            }
            return;
        }
        if !react || before.is_none() || before == epoch {
            return;
        }
        let void: Vec<(String, u32)> = self
            .leases
            .iter()
            .filter(|(_, l)| l.agent_id == agent_id && Some(l.epoch) == before)
            .filter_map(|(k, _)| parse_lease_key(k).map(|(f, s)| (f.to_string(), s)))
            .collect();
        if !void.is_empty() {
            tracing::info!(agent = %agent_id, shards = void.len(), "an agent's epoch record is gone; offering its shards");
        }
        for (fleet, shard) in void {
            if self
                .fleets
                .get(&fleet)
                .is_some_and(|(r, _)| r.shard_desired(shard) > 0)
            {
                self.offer(ShardOffer::new(&fleet, shard)).await;
            }
        }
    }

    /// Learns the NATS server's clock from our own liveness key: the server stamped it
    /// when it stored it, a little before we see it here. The largest of the recent
    /// differences (the one with the least delivery delay) is the offset every schedule,
    /// duration and heartbeat of this agent then follows.
    pub(super) fn clock_sample(&mut self, e: &Entry) {
        let stored_ms = (e.created.unix_timestamp_nanos() / 1_000_000) as i64;
        let local_ms = (pluribus_common::time::local_now_us() / 1000) as i64;
        if self.clock_samples.len() >= 8 {
            self.clock_samples.pop_front();
        }
        self.clock_samples.push_back(stored_ms - local_ms);
        if let Some(&offset) = self.clock_samples.iter().max() {
            let before = pluribus_common::time::clock_offset_ms();
            if !self.clock_known || (offset - before).abs() > 1_000 {
                tracing::info!(offset_ms = offset, "following the NATS server's clock");
            }
            pluribus_common::time::set_clock_offset_ms(offset);
            // The first heartbeat goes out once the clock is known.
            self.changed |= !self.clock_known;
            self.clock_known = true;
        }
    }

    async fn apply_lease(&mut self, e: Entry, react: bool) {
        self.lease_pos = self.lease_pos.max(e.revision);
        if let Some(agent_id) = parse_liveness_key(&e.key) {
            let agent_id = agent_id.to_string();
            self.apply_liveness(agent_id, e, react).await;
            return;
        }
        let key_of_valid = e.key.clone();
        // An entry older than our claim of the key (the release or lease that preceded it,
        // delivered after the claim's reply) says nothing about the lease we hold.
        let ours_is_newer = self
            .held
            .get(&e.key)
            .is_some_and(|h| h.revision > e.revision);
        if e.operation != Operation::Put {
            self.bad_leases.remove(&e.key);
            self.leases.remove(&e.key);
            if self.held.contains_key(&e.key) {
                if !ours_is_newer {
                    tracing::warn!(lease = %e.key, "our lease disappeared; stopping the shard");
                    self.drop_lost(&e.key).await;
                }
            } else if e.operation == Operation::Purge {
                // A lease expired: its holder died. Offer the shard at once.
                if let Some((fleet, shard)) = parse_lease_key(&e.key) {
                    if self
                        .fleets
                        .get(fleet)
                        .is_some_and(|(r, _)| r.shard_desired(shard) > 0)
                    {
                        self.offer(ShardOffer::new(fleet, shard)).await;
                    }
                }
            }
            return;
        }
        match wire::decode::<LeaseRecord>(&e.value) {
            Ok(l) => {
                if l.agent_id != self.id && self.held.contains_key(&e.key) && !ours_is_newer {
                    tracing::warn!(lease = %e.key, holder = %l.agent_name, "another agent holds our shard; stopping it here");
                    self.drop_lost(&e.key).await;
                } else if let Some(h) = self.held.get_mut(&e.key) {
                    // Our own write: a renewal whose reply is late (or timed out) landed,
                    // and the next one must start from it.
                    h.revision = h.revision.max(e.revision);
                }
                self.leases.insert(
                    e.key,
                    LeaseView {
                        agent_id: l.agent_id,
                        epoch: l.epoch,
                        revision: e.revision,
                    },
                );
            }
            Err(err) => {
                // A foreign write: it holds the key (nobody can create the lease) and may
                // never expire. Say so once; the reconcile pass removes it after a TTL.
                if self.bad_leases.get(&e.key).map(|(rev, _)| *rev) != Some(e.revision) {
                    tracing::warn!(lease = %e.key, revision = e.revision, error = %err, ttl = ?self.cfg.lease_ttl, "a lease key holds no valid lease; it counts as unheld and is removed after one lease TTL");
                    self.bad_leases
                        .insert(e.key.clone(), (e.revision, std::time::Instant::now()));
                }
                self.leases.remove(&e.key);
                return;
            }
        }
        self.bad_leases.remove(&key_of_valid);
    }

    /// An agent's peer record. Ours is kept from what we wrote (a record of ours deleted
    /// under us is written again with the next heartbeat).
    fn apply_peer(&mut self, e: Entry) {
        if e.key == self.id {
            if e.operation != Operation::Put {
                self.peer_written = None;
            } else {
                self.peer_revisions.insert(e.key, e.revision);
            }
            return;
        }
        if e.operation != Operation::Put {
            self.agents.remove(&e.key);
            self.peer_revisions.remove(&e.key);
            return;
        }
        match wire::decode::<Peer>(&e.value) {
            Ok(p) if p.id == e.key => {
                self.peer_revisions.insert(e.key.clone(), e.revision);
                self.agents.insert(e.key, p);
            }
            Ok(p) => {
                self.agents.remove(&e.key);
                tracing::warn!(key = %e.key, id = %p.id, "a peer record names another agent; ignored")
            }
            Err(err) => {
                self.agents.remove(&e.key);
                tracing::warn!(key = %e.key, error = %err, "bad peer record; ignored")
            }
        }
    }
}
