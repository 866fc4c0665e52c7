//! Taking work: deciding on a shard offer, claiming its lease and starting its runner.
//!
//! An agent takes an offered shard while it holds less than its fair share (desired
//! devices of all fleets ÷ live agents), has room under `--max-devices`, fits the fleet's
//! placement and knows its types. Otherwise it passes the offer on with one more hop; after
//! enough hops the first agent that can take it does, fair share or not.

use std::sync::Arc;
use std::time::Instant;

use pluribus_common::kv::KvError;
use pluribus_common::messages::{LeaseRecord, ShardOffer};
use pluribus_common::record::FleetRecord;
use pluribus_common::subjects::lease_key;
use pluribus_common::time::now_ms;
use pluribus_common::{wire, PROTOCOL_VERSION};

use super::{backoff, Control, Held, IO_TIMEOUT};
use crate::shard;

/// Why this agent passes on an offer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    Draining,
    Unfit(String),
    Full,
    AboveFairShare,
}

impl Control {
    /// Live agents that take work (this one included unless draining).
    pub(super) fn live_agents(&self) -> u64 {
        let others = self
            .agents
            .values()
            .filter(|a| a.id != self.id && self.alive(a) && !a.draining)
            .count() as u64;
        others + u64::from(!self.draining)
    }

    /// Devices each agent should hold for an even spread.
    pub(super) fn fair_share(&self) -> u64 {
        let now = now_ms();
        let total: u64 = self
            .fleets
            .values()
            .filter(|(r, _)| r.expires_ms().is_none_or(|t| t > now))
            .map(|(r, _)| r.desired())
            .sum();
        total.div_ceil(self.live_agents().max(1))
    }

    fn max_hops(&self) -> u32 {
        2 * self.live_agents() as u32 + 2
    }

    /// Whether this agent could run `record` at all (placement and types).
    pub(super) fn fits(&self, record: &FleetRecord) -> Result<(), String> {
        for (k, v) in &record.spec.placement {
            if self.cfg.labels.get(k) != Some(v) {
                return Err(format!("lacks label {k}={v}"));
            }
        }
        for t in record.spec.device_types() {
            if self.registry.device(&t).is_none() {
                return Err(format!("does not know device type {t}"));
            }
        }
        for t in record.spec.sink_types() {
            if self.registry.sink(&t).is_none() {
                return Err(format!("does not know sink type {t}"));
            }
        }
        Ok(())
    }

    /// True when `record`'s devices each hold a connection (an MQTT sink, say).
    pub(super) fn holds_connections(&self, record: &FleetRecord) -> bool {
        record
            .spec
            .sink_types()
            .iter()
            .any(|t| self.registry.sink(t).is_some_and(|f| f.holds_connections()))
    }

    /// Devices held here that hold a connection each.
    pub(super) fn held_connection_devices(&self) -> u64 {
        self.held
            .values()
            .filter(|h| {
                self.fleets
                    .get(&h.fleet)
                    .is_some_and(|(r, _)| self.holds_connections(r))
            })
            .map(|h| h.devices)
            .sum()
    }

    /// Room for `devices` more of `record` under `--max-devices` and, for devices that
    /// hold a connection, under the open-files limit.
    pub(super) fn has_room(&self, record: &FleetRecord, devices: u64) -> bool {
        self.cfg
            .max_devices
            .is_none_or(|m| self.held_devices() + devices <= m)
            && (!self.holds_connections(record)
                || self
                    .cfg
                    .max_connections
                    .is_none_or(|m| self.held_connection_devices() + devices <= m))
    }

    pub(super) fn decide(
        &self,
        record: &FleetRecord,
        devices: u64,
        hops: u32,
    ) -> Result<(), Refusal> {
        // Not before this agent's liveness entry (and with it the server's clock) is known,
        // nor while it is fenced: pass the offer on.
        if self.draining
            || self.token.is_cancelled()
            || self.epoch == 0
            || !self.clock_known
            || !self.fence.is_open()
        {
            return Err(Refusal::Draining);
        }
        self.fits(record).map_err(Refusal::Unfit)?;
        if !self.has_room(record, devices) {
            return Err(Refusal::Full);
        }
        // Until the peers watch has delivered its snapshot we cannot know our fair share.
        if hops < self.max_hops()
            && (!self.synced[super::watch::Bucket::Peers as usize]
                || self.held_devices() >= self.fair_share())
        {
            return Err(Refusal::AboveFairShare);
        }
        Ok(())
    }

    pub(super) async fn on_offer(&mut self, msg: async_nats::Message) {
        let offer: ShardOffer = match wire::decode(&msg.payload) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(subject = %msg.subject, error = %e, "bad shard offer; ignored");
                return;
            }
        };
        let key = lease_key(&offer.fleet, offer.shard);
        if self.held.contains_key(&key) || self.stopping.contains_key(&key) {
            return;
        }
        let Some(record) = self.fleet_record(&offer.fleet).await else {
            return;
        };
        let devices = record.shard_desired(offer.shard);
        if devices == 0 || record.expires_ms().is_some_and(|t| t <= now_ms()) {
            return;
        }
        // Held by another, as far as our watch knows; unless the offer comes from the holder
        // that just deleted that very lease and our watch has not caught up yet.
        if self.leases.get(&key).is_some_and(|l| {
            l.agent_id != self.id && self.stands(l) && offer.released.is_none_or(|r| l.revision > r)
        }) {
            return;
        }
        let revision = self.fleet_revision(&offer.fleet);
        if self.prepare_backoff.state(&key, revision, Instant::now()) == backoff::State::Waiting {
            // It failed to prepare here a moment ago: let one other agent try it (fair share
            // aside), and let the offer rest if it comes back.
            if offer.hops < self.max_hops() {
                self.offer(ShardOffer {
                    hops: self.max_hops(),
                    ..offer
                })
                .await;
            }
            return;
        }
        match self.decide(&record, devices, offer.hops) {
            Ok(()) => self.claim(&key, record, offer.shard).await,
            Err(why) => {
                tracing::debug!(lease = %key, ?why, hops = offer.hops, "passing on offer");
                if offer.hops < 2 * self.max_hops() + 4 {
                    self.offer(ShardOffer {
                        hops: offer.hops + 1,
                        ..offer
                    })
                    .await;
                }
            }
        }
    }

    /// The revision of `fleet`'s record as last seen (0 if unknown).
    pub(super) fn fleet_revision(&self, fleet: &str) -> u64 {
        self.fleets.get(fleet).map(|(_, rev)| *rev).unwrap_or(0)
    }

    /// True when another live agent could run `record` and has not said it cannot: offers
    /// of a shard that failed to prepare here must still reach it.
    pub(super) fn another_may_prepare(&self, record: &FleetRecord) -> bool {
        let (devices, sinks) = (record.spec.device_types(), record.spec.sink_types());
        self.agents.values().any(|a| {
            a.id != self.id
                && self.alive(a)
                && !a.draining
                && a.fits(&record.spec.placement, &devices, &sinks)
                && !a.refusals.contains_key(record.name())
        })
    }

    /// The record of `fleet`, from the watch or, if the watch has not seen it yet, from KV.
    async fn fleet_record(&mut self, fleet: &str) -> Option<Arc<FleetRecord>> {
        if let Some((r, _)) = self.fleets.get(fleet) {
            return Some(r.clone());
        }
        if self.refused.contains_key(fleet) && self.synced[super::watch::Bucket::Fleets as usize] {
            return None;
        }
        let entry = tokio::time::timeout(IO_TIMEOUT, self.buckets.fleets.entry(fleet))
            .await
            .ok()?
            .ok()??;
        if entry.operation != async_nats::jetstream::kv::Operation::Put {
            return None;
        }
        if self.refused.get(fleet) == Some(&entry.revision) {
            return None;
        }
        let r = match super::state::read_record(fleet, &entry.value) {
            Ok(r) => Arc::new(r),
            Err(why) => {
                self.refuse_record(fleet, entry.revision, why).await;
                return None;
            }
        };
        self.fleets
            .insert(fleet.to_string(), (r.clone(), entry.revision));
        Some(r)
    }

    pub(super) fn lease_value(&self, record: &FleetRecord, shard: u32) -> bytes::Bytes {
        wire::encode(&LeaseRecord {
            v: PROTOCOL_VERSION,
            agent_id: self.id.clone(),
            agent_name: self.cfg.name.clone(),
            devices: record.shard_desired(shard),
            generation: record.generation,
            since_ms: now_ms(),
            epoch: self.epoch,
        })
    }

    /// Claims the lease of a shard and starts it.
    pub(super) async fn claim(&mut self, key: &str, record: Arc<FleetRecord>, shard: u32) {
        // Without a liveness entry (not made yet, or lost) a lease would not stand.
        if self.epoch == 0
            || !self.clock_known
            || !self.fence.is_open()
            || self.stopping.contains_key(key)
        {
            return;
        }
        let metrics = self.metrics.fleet(record.name());
        let prepared = match shard::prepare(
            record.clone(),
            shard,
            &self.registry,
            &self.secrets,
            &self.events,
            metrics,
            self.cfg.wake_grid,
        ) {
            Ok(p) => p,
            Err(why) => {
                let revision = self.fleet_revision(record.name());
                let wait = self.prepare_backoff.fail(key, revision, Instant::now());
                tracing::warn!(lease = %key, %why, ?wait, "cannot run this shard; passing it on, not trying it here again before the wait");
                self.refusals.insert(record.name().to_string(), why.clone());
                self.changed = true;
                self.offer(ShardOffer {
                    hops: self.max_hops(),
                    ..ShardOffer::new(record.name(), shard)
                })
                .await;
                return;
            }
        };
        let value = self.lease_value(&record, shard);
        let created = tokio::time::timeout(
            IO_TIMEOUT,
            self.buckets.lease_create(key, value.clone(), None),
        )
        .await;
        let revision = match created {
            Ok(Ok(rev)) => rev,
            Ok(Err(KvError::Held {
                revision,
                value: old,
            })) => match self.take_over(key, revision, &old, value).await {
                Some(rev) => rev,
                None => return,
            },
            Ok(Err(KvError::Exists)) => return,
            Ok(Err(e)) => {
                tracing::warn!(lease = %key, error = %e, "could not claim lease");
                return;
            }
            Err(_) => {
                tracing::warn!(lease = %key, "claiming the lease timed out");
                return;
            }
        };
        let handle = prepared.spawn(self.token.child_token(), &self.tracker, &self.fence);
        let devices = record.shard_desired(shard);
        tracing::info!(lease = %key, devices, "claimed shard");
        self.held.insert(
            key.to_string(),
            Held {
                fleet: record.name().to_string(),
                shard,
                revision,
                generation: record.generation,
                devices,
                written: (devices, record.generation),
                rewriting: false,
                handle,
            },
        );
        self.unheld_since.remove(key);
        self.prepare_backoff.clear(key);
        self.refusals.remove(record.name());
        self.sync_command_subs().await;
        self.event(pluribus_common::messages::EventKind::ShardClaimed {
            fleet: record.name().to_string(),
            shard,
            agent_id: self.id.clone(),
            devices,
        })
        .await;
    }

    /// Takes over a lease whose holder's liveness entry is gone (per the lease watch, which
    /// has delivered at least up to that lease). The write checks the lease's revision, so
    /// of several agents taking it over one wins, and a holder that rewrote it meanwhile
    /// keeps it.
    async fn take_over(
        &mut self,
        key: &str,
        revision: u64,
        old: &[u8],
        value: bytes::Bytes,
    ) -> Option<u64> {
        let old = wire::decode::<LeaseRecord>(old).ok()?;
        let view = super::LeaseView {
            agent_id: old.agent_id,
            epoch: old.epoch,
            revision,
        };
        if view.agent_id == self.id || self.stands(&view) {
            return None;
        }
        let put = self.buckets.lease_put(key, value, revision, None);
        match tokio::time::timeout(IO_TIMEOUT, put).await {
            Ok(Ok(rev)) => {
                tracing::info!(lease = %key, from = %old.agent_name, "took over a shard whose holder is gone");
                Some(rev)
            }
            Ok(Err(KvError::Conflict)) => None,
            Ok(Err(e)) => {
                tracing::warn!(lease = %key, error = %e, "could not take over lease");
                None
            }
            Err(_) => {
                tracing::warn!(lease = %key, "taking over the lease timed out");
                None
            }
        }
    }

    /// Restarts a held shard with a replaced spec, keeping the lease. The old runner stops
    /// beside the loop and the new one starts its devices once it has, so a slow stop (a
    /// sink that hangs) holds up neither this loop nor the other shards.
    pub(super) async fn restart(&mut self, key: &str, record: Arc<FleetRecord>) {
        let Some(h) = self.held.remove(key) else {
            return;
        };
        let metrics = self.metrics.fleet(record.name());
        match shard::prepare(
            record.clone(),
            h.shard,
            &self.registry,
            &self.secrets,
            &self.events,
            metrics,
            self.cfg.wake_grid,
        ) {
            Ok(p) => {
                let Held {
                    fleet,
                    shard,
                    revision,
                    written,
                    rewriting,
                    handle: old,
                    ..
                } = h;
                let stopped = self.stop_in_background(key, old, "spec replaced");
                let handle = p.spawn_after(
                    self.token.child_token(),
                    &self.tracker,
                    &self.fence,
                    Some(stopped),
                );
                self.held.insert(
                    key.to_string(),
                    Held {
                        fleet,
                        shard,
                        revision,
                        generation: record.generation,
                        devices: record.shard_desired(shard),
                        written,
                        rewriting,
                        handle,
                    },
                );
            }
            Err(why) => {
                tracing::warn!(lease = %key, %why, "cannot run the replaced spec; releasing");
                self.held.insert(key.to_string(), h);
                self.release(key, true, "cannot run the replaced spec")
                    .await;
            }
        }
    }
}
