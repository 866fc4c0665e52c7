//! The task that follows the cluster: the agents, fleets and leases buckets and the events
//! subject, turned into a [`Model`] once a second and kept in the history.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use futures::StreamExt;
use pluribus_common::messages::{Event, LeaseRecord};
use pluribus_common::record::FleetRecord;
use pluribus_common::subjects::parse_lease_key;
use pluribus_common::time::now_ms;
use pluribus_common::wire::decode;
use tokio::sync::watch;

use super::access::Access;
use super::eventlog::EventLog;
use super::history::History;
use super::model::{self, Desired, Model};
use super::scenarios::Board;
use super::window::Anchors;
use crate::cmd::Ctx;
use crate::feed::{Change, KvFeed};

/// How often the model is rebuilt (and at most how often a page gets a frame).
pub const TICK: Duration = Duration::from_secs(1);

/// What the web handlers read.
pub struct Shared {
    /// The NATS connection and buckets.
    pub ctx: Ctx,
    /// The latest model.
    pub model: watch::Receiver<Arc<Model>>,
    /// The charts' points.
    pub history: RwLock<History>,
    /// The last events.
    pub events: RwLock<EventLog>,
    /// Fleet records and leases (for device look-ups).
    pub desired: RwLock<Desired>,
    /// Whether controls are allowed.
    pub access: RwLock<Access>,
    /// Heartbeats a report's window figures start from.
    pub anchors: RwLock<Anchors>,
    /// Every agent's last heartbeats, histograms kept apart (what the model and a
    /// report's window end with).
    pub beats: RwLock<super::latency::Beats>,
    /// Detached scenario runs.
    pub scenarios: RwLock<Board>,
}

/// Follows the scenarios bucket's runs, or says in the board why it cannot (the page then
/// shows an empty Scenarios section with that note; the rest of the page goes on).
async fn open_scenarios(shared: &Shared) -> Option<KvFeed> {
    let ctx = &shared.ctx;
    let opened =
        match pluribus_common::kv::open_scenarios(&ctx.conn.js, &ctx.conn.ns, ctx.conn.kv_replicas)
            .await
        {
            Ok(store) => KvFeed::open(
                &ctx.conn.client,
                &store,
                pluribus_common::subjects::SCENARIO_RUNS,
            )
            .await
            .map_err(|e| format!("{e:#}")),
            Err(e) => Err(e),
        };
    match opened {
        Ok(feed) => Some(feed),
        Err(e) => {
            scenarios_unreadable(shared, &e);
            None
        }
    }
}

fn scenarios_unreadable(shared: &Shared, error: &str) {
    tracing::warn!(error = %error, "cannot follow the scenario runs");
    if let Ok(mut b) = shared.scenarios.write() {
        b.note = Some(format!(
            "cannot read the scenarios bucket ({error}): does this credential cover it?"
        ));
    }
}

/// The next change of the scenarios feed; pending forever without one.
async fn next_run(feed: &mut Option<KvFeed>) -> Result<Option<Change>> {
    match feed {
        Some(f) => f.next().await,
        None => std::future::pending().await,
    }
}

/// Applies one change of the fleets bucket.
fn apply_fleet(d: &mut Desired, c: Change) {
    if !c.live {
        d.fleets.remove(&c.key);
        return;
    }
    match decode::<FleetRecord>(&c.value) {
        Ok(r) => {
            d.fleets.insert(c.key, r);
        }
        Err(e) => tracing::warn!(fleet = %c.key, error = %e, "ignoring a fleet record"),
    }
}

/// Applies one change of the leases bucket.
fn apply_lease(d: &mut Desired, c: Change) {
    let Some((fleet, shard)) = parse_lease_key(&c.key) else {
        // Agents' epoch records (`_live.<id>`) share the bucket.
        match pluribus_common::subjects::parse_liveness_key(&c.key) {
            Some(id) => {
                let epochs = d.epochs.get_or_insert_default();
                if c.live {
                    epochs.insert(id.to_string());
                } else {
                    epochs.remove(id);
                }
            }
            None => tracing::warn!(key = %c.key, "ignoring a lease with a malformed key"),
        }
        return;
    };
    if !c.live {
        if let Some(m) = d.leases.get_mut(fleet) {
            m.remove(&shard);
            if m.is_empty() {
                d.leases.remove(fleet);
            }
        }
        return;
    }
    match decode::<LeaseRecord>(&c.value) {
        Ok(l) => {
            d.leases
                .entry(fleet.to_string())
                .or_default()
                .insert(shard, l);
        }
        Err(e) => tracing::warn!(key = %c.key, error = %e, "ignoring a lease"),
    }
}

/// Follows the cluster until the connection ends; sends each model on `tx`.
pub async fn run(shared: Arc<Shared>, tx: watch::Sender<Arc<Model>>) -> Result<()> {
    let ctx = &shared.ctx;
    let client = &ctx.conn.client;
    let mut agents_feed = KvFeed::open(client, &ctx.buckets.agents, ">").await?;
    let mut fleets_feed = KvFeed::open(client, &ctx.buckets.fleets, ">").await?;
    let mut leases_feed = KvFeed::open(client, &ctx.buckets.leases, ">").await?;
    let mut runs_feed = open_scenarios(&shared).await;
    let subject = ctx.conn.ns.event_all();
    let mut events = client
        .subscribe(subject.clone())
        .await
        .with_context(|| format!("cannot subscribe to {subject}"))?;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let lost = || anyhow::anyhow!("lost the connection to NATS");
    loop {
        tokio::select! {
            c = agents_feed.next() => {
                let c = c?.ok_or_else(lost)?;
                if let Ok(mut b) = shared.beats.write() {
                    b.apply(c);
                }
            }
            c = fleets_feed.next() => {
                let c = c?.ok_or_else(lost)?;
                if let Ok(mut d) = shared.desired.write() {
                    apply_fleet(&mut d, c);
                }
            }
            c = leases_feed.next() => {
                let c = c?.ok_or_else(lost)?;
                if let Ok(mut d) = shared.desired.write() {
                    apply_lease(&mut d, c);
                }
            }
            c = next_run(&mut runs_feed) => {
                match c {
                    Ok(Some(c)) => {
                        if let Ok(mut b) = shared.scenarios.write() {
                            b.apply(c);
                        }
                    }
                    // The other feeds notice a lost connection; this one only stops.
                    Ok(None) => runs_feed = None,
                    Err(e) => {
                        scenarios_unreadable(&shared, &format!("{e:#}"));
                        runs_feed = None;
                    }
                }
            }
            m = events.next() => {
                let Some(m) = m else { bail!("lost the connection to NATS") };
                match decode::<Event>(&m.payload) {
                    Ok(e) => {
                        if let Ok(mut log) = shared.events.write() {
                            log.push(e);
                        }
                    }
                    Err(e) => tracing::warn!(subject = %m.subject, error = %e, "ignoring an event"),
                }
            }
            _ = tick.tick() => {
                for f in [&mut agents_feed, &mut fleets_feed, &mut leases_feed] {
                    f.check_idle();
                }
                if let Some(f) = runs_feed.as_mut() {
                    f.check_idle();
                }
                let model = {
                    let (Ok(d), Ok(beats)) = (shared.desired.read(), shared.beats.read()) else {
                        bail!("the dashboard's state is poisoned")
                    };
                    Arc::new(model::build(&beats, &d, now_ms()))
                };
                if let Ok(mut h) = shared.history.write() {
                    h.record(&model);
                }
                if let (Ok(mut a), Ok(b)) = (shared.anchors.write(), shared.beats.read()) {
                    if a.record(&b.counters, model.ts_ms) {
                        // What the dashboard keeps, every 15 s (RUST_LOG=pluribusctl=debug).
                        tracing::debug!(
                            agents = b.counters.agents.len(),
                            fleets = model.fleets.len(),
                            latency_bytes = b.latency_bytes(),
                            anchor_bytes = a.bytes(),
                            points = shared.history.read().map(|h| h.kept()).unwrap_or(0),
                            "kept"
                        );
                    }
                }
                tx.send_replace(model);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pluribus_common::wire::encode;

    #[test]
    fn leases_come_and_go() {
        let mut d = Desired::default();
        let lease = LeaseRecord {
            v: 1,
            agent_id: "a".into(),
            agent_name: "n".into(),
            devices: 5,
            generation: 1,
            since_ms: 1,
            epoch: 0,
        };
        apply_lease(
            &mut d,
            Change {
                key: "f.0".into(),
                value: encode(&lease),
                live: true,
                expires_ms: None,
                stored_ms: None,
            },
        );
        assert_eq!(d.leases["f"][&0].devices, 5);
        apply_lease(
            &mut d,
            Change {
                key: "junk".into(),
                value: encode(&lease),
                live: true,
                expires_ms: None,
                stored_ms: None,
            },
        );
        apply_lease(
            &mut d,
            Change {
                key: "f.0".into(),
                value: Default::default(),
                live: false,
                expires_ms: None,
                stored_ms: None,
            },
        );
        assert!(d.leases.is_empty());
        // Epoch records: an agent counts as alive while its record stands.
        assert_eq!(d.epochs, None, "unknown until one is seen");
        for live in [true, false] {
            apply_lease(
                &mut d,
                Change {
                    key: "_live.a".into(),
                    value: Default::default(),
                    live,
                    expires_ms: None,
                    stored_ms: None,
                },
            );
            assert_eq!(d.epochs.as_ref().map(|e| e.contains("a")), Some(live));
        }
        apply_fleet(
            &mut d,
            Change {
                key: "f".into(),
                value: bytes::Bytes::from_static(b"{not json"),
                live: true,
                expires_ms: None,
                stored_ms: None,
            },
        );
        assert!(d.fleets.is_empty());
    }
}
