//! The control loop: one task owns everything the agent knows and holds. KV watchers,
//! shard offers, agent commands, lease renewals and timers all arrive here as events, so
//! no state is shared behind locks and every decision sees one consistent view.
//!
//! ```text
//! fleets watch ─┐
//! leases watch ─┤                   ┌─ shard runner (devices 0..500)
//! peers watch ──┼─► control loop ───┼─ shard runner (devices 500..1000)
//! offers (queue)┤    (this module)  └─ renewal tasks, release tasks
//! commands ─────┘
//! ```

mod backoff;
mod claim;
mod commands;
mod epochs;
mod leaders;
mod lease;
mod live_pair;
mod liveness;
mod reconcile;
mod release;
mod ring;
mod state;
pub(crate) mod stores;
mod timeline;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::Subscriber;
use bytes::Bytes;
use futures::StreamExt;
use pluribus_common::connect::Connection;
use pluribus_common::kv::{Buckets, KvError};
use pluribus_common::messages::{EventKind, Heartbeat, ShardOffer};
use pluribus_common::peer::Peer;
use pluribus_common::record::FleetRecord;
use pluribus_common::subjects::AGENT_QUEUE_GROUP;
use pluribus_common::time::now_ms;
use pluribus_common::{wire, PROTOCOL_VERSION};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::AgentConfig;
use crate::events::Events;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::shard::ShardHandle;
use stores::{Stores, STARTUP_PATIENCE};
use watch::{Bucket, WatchEvent};

/// How long one NATS call from the control loop may take before it gives up, so that a
/// lost connection never stalls fencing.
const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// A shard this agent holds.
#[derive(Debug)]
struct Held {
    fleet: String,
    shard: u32,
    revision: u64,
    generation: u64,
    devices: u64,
    /// The devices and generation written in the lease (rewritten when they change, so
    /// `pluribusctl` counts what runs).
    written: (u64, u64),
    rewriting: bool,
    handle: ShardHandle,
}

/// Somebody's lease, as last seen in the leases bucket.
#[derive(Debug, Clone)]
struct LeaseView {
    agent_id: String,
    /// The epoch of the holder's liveness entry the lease stands on.
    epoch: u64,
    revision: u64,
}

/// Results of work the control loop spawned.
#[derive(Debug)]
enum Internal {
    /// A lease rewrite (new devices or generation) finished.
    Rewritten {
        key: String,
        result: Result<u64, KvError>,
    },
    /// A shard's runner stopped (and for a release, its lease was deleted).
    Stopped { key: String },
    /// The liveness entry was created with this epoch.
    Live { epoch: u64 },
    /// The liveness entry of this epoch is gone: every shard must stop.
    Lost { epoch: u64 },
    /// Our peer record could not be written: write it with the next heartbeat.
    PeerUnwritten,
}

/// Device commands waiting for the control loop to route them; beyond this they are
/// answered `busy` by the subscription that received them.
const COMMAND_QUEUE: usize = 1024;

pub(crate) struct Control {
    id: String,
    cfg: AgentConfig,
    conn: Connection,
    /// Publishes events (shared with the shard runners and sinks).
    events: Events,
    /// The control loop's events, published in order by a task of their own.
    event_tx: mpsc::UnboundedSender<EventKind>,
    event_task: Option<tokio::task::JoinHandle<()>>,
    buckets: Buckets,
    registry: Registry,
    /// What specs may reference as secrets (read by the sinks a shard makes).
    secrets: crate::secrets::Secrets,
    metrics: Metrics,
    fleets: HashMap<String, (Arc<FleetRecord>, u64)>,
    /// Every agent's peer record (this one's included), as seen in the peers watch. An
    /// agent counts as alive while its liveness entry stands (see [`Control::alive`]).
    agents: HashMap<String, Peer>,
    /// The peers bucket (this agent's record is written there when it changes).
    peers: async_nats::jetstream::kv::Store,
    /// The revision of each peer record, for the leader's removal of records of agents
    /// that are gone.
    peer_revisions: HashMap<String, u64>,
    /// Since when each peer record has had no liveness entry behind it (leader only).
    peer_orphaned: HashMap<String, Instant>,
    /// This agent's peer record as last written, and when (None: to be written).
    peer_written: Option<(Peer, Instant)>,
    leases: HashMap<String, LeaseView>,
    /// Agents' epoch records as seen in the lease watch: agent id → epoch.
    live: HashMap<String, u64>,
    /// The revision of each epoch record (a watcher deletes it with a revision check).
    live_revisions: HashMap<String, u64>,
    /// The two live buckets, on the control loop's connection (the ring watch, the leader's
    /// sweep).
    live_stores: [async_nats::jetstream::kv::Store; 2],
    /// Which liveness keys the ring watch follows (this agent's and its predecessors').
    ring_tx: tokio::sync::watch::Sender<ring::Watched>,
    ring_rx: mpsc::Receiver<ring::RingEntry>,
    /// When the leader last checked every liveness key itself (the backstop of the ring).
    last_sweep: Instant,
    /// The highest revision the lease watch has delivered: a lease at or below it whose
    /// holder's entry is not in `live` is void (the entry was written before the lease).
    lease_pos: u64,
    /// This agent's liveness epoch (0: none yet, or lost).
    epoch: u64,
    /// Recent offsets of the server's clock from ours (ms), from our liveness entry.
    clock_samples: std::collections::VecDeque<i64>,
    /// The server's clock is known: no shard starts before (its schedule follows it).
    clock_known: bool,
    /// The first heartbeat went out (it waits for the liveness entry; later ones do not:
    /// an agent between two liveness entries is still there).
    beating: bool,
    /// Until when this agent may send (moved by the liveness task).
    fence: crate::fence::Fence,
    liveness: Option<liveness::Handle>,
    /// Lease keys holding something that is not a lease (a foreign write): revision and
    /// when first seen. Unheld for every decision; removed after a lease TTL.
    bad_leases: HashMap<String, (u64, Instant)>,
    held: HashMap<String, Held>,
    /// Shards whose runner is still stopping here (released, fenced, lost), by key, with
    /// how many stops are running: never claimed or taken back meanwhile.
    stopping: HashMap<String, u32>,
    unheld_since: HashMap<String, Instant>,
    synced: [bool; 3],
    draining: bool,
    /// Fleets whose shards this agent could not start, and why (for status).
    refusals: BTreeMap<String, String>,
    /// Expired fleets whose record this agent tried to delete, by revision.
    expire_tried: HashMap<String, (u64, Instant)>,
    /// Shards that failed to prepare here, waiting before they are tried again.
    prepare_backoff: backoff::PrepareBackoff,
    /// Fleet records refused on reading (by revision), so each is reported once.
    refused: HashMap<String, u64>,
    /// Held shards changed since the last heartbeat: send one soon, so status and watch
    /// see claims and releases within a quarter second rather than a heartbeat interval.
    changed: bool,
    /// The last heartbeat said saturated (a `saturated` event goes out when it turns so).
    saturated: bool,
    last_release: Instant,
    /// Up to when timeline transitions were announced (Unix ms; 0: not yet).
    timeline_seen_ms: u64,
    started: Instant,
    cmd_subs: HashMap<String, CancellationToken>,
    token: CancellationToken,
    tracker: TaskTracker,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    /// Device commands from the per-fleet subscriptions (bounded: see [`COMMAND_QUEUE`]).
    cmd_tx: mpsc::Sender<async_nats::Message>,
    cmd_rx: mpsc::Receiver<async_nats::Message>,
    watch_rx: mpsc::Receiver<(Bucket, WatchEvent)>,
    offers: Subscriber,
    commands: futures::stream::SelectAll<Subscriber>,
    /// Creates the buckets again when JetStream lost them.
    reopen: watch::Reopen,
}

/// What the control loop shares with the rest of the agent: the metrics handle (runners,
/// sinks and the exporter write and read it), the root token and the task tracker.
pub(crate) struct Shared {
    pub(crate) secrets: crate::secrets::Secrets,
    pub(crate) metrics: Metrics,
    pub(crate) token: CancellationToken,
    pub(crate) tracker: TaskTracker,
}

impl Control {
    pub(crate) async fn new(
        id: String,
        cfg: AgentConfig,
        conn: Connection,
        stores: Stores,
        registry: Registry,
        shared: Shared,
    ) -> anyhow::Result<Self> {
        let Stores {
            buckets,
            peers,
            live: live_stores,
        } = stores;
        let Shared {
            secrets,
            metrics,
            token,
            tracker,
        } = shared;
        let ns = &conn.ns;
        let offers = conn
            .client
            .queue_subscribe(ns.work(), AGENT_QUEUE_GROUP.into())
            .await?;
        let mut commands = futures::stream::SelectAll::new();
        commands.push(conn.client.subscribe(ns.agent_cmd(&id)).await?);
        commands.push(conn.client.subscribe(ns.agents_cmd()).await?);
        let (watch_tx, watch_rx) = mpsc::channel(1024);
        let reopen = watch::Reopen {
            js: conn.js.clone(),
            ns: conn.ns.clone(),
            replicas: conn.kv_replicas,
            rewatch: Default::default(),
        };
        for (b, store) in [
            (Bucket::Fleets, buckets.fleets.clone()),
            (Bucket::Leases, buckets.leases.clone()),
            (Bucket::Peers, peers.clone()),
        ] {
            watch::spawn(
                b,
                store,
                reopen.clone(),
                watch_tx.clone(),
                token.clone(),
                &tracker,
            );
        }
        let (ring_tx, ring_set) = tokio::sync::watch::channel(ring::Watched {
            generation: 1,
            ids: vec![id.clone()],
        });
        let (ring_entries, ring_rx) = mpsc::channel(256);
        for (bucket, store) in live_stores.iter().enumerate() {
            ring::spawn(
                bucket,
                store.clone(),
                ring_set.clone(),
                reopen.clone(),
                ring_entries.clone(),
                token.clone(),
                &tracker,
            );
        }
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let now = Instant::now();
        let events = Events::new(conn.client.clone(), conn.ns.clone(), &id);
        let fence = crate::fence::Fence::closed();
        let (event_tx, mut event_rx) = mpsc::unbounded_channel::<EventKind>();
        let publisher = events.clone();
        let event_task = tracker.spawn(async move {
            // Ends once the control loop (the only sender) is gone, after its last event.
            while let Some(kind) = event_rx.recv().await {
                publisher.publish(kind).await;
            }
        });
        // The liveness key on a connection of its own when there is one.
        let (live_buckets, live_js, live_kv) = match cfg.liveness_client.clone() {
            Some(c) => {
                let js = async_nats::jetstream::new(c);
                let s = Stores::open_patiently(&js, &conn.ns, conn.kv_replicas, STARTUP_PATIENCE)
                    .await?;
                (s.buckets, js, s.live)
            }
            None => (buckets.clone(), conn.js.clone(), live_stores.clone()),
        };
        let liveness = liveness::Keeper {
            buckets: live_buckets,
            live: live_kv,
            js: live_js,
            agent_id: id.clone(),
            agent_name: cfg.name.clone(),
            ttl: cfg.lease_ttl,
            every: cfg.renew_every(),
            fence_after: cfg.fence_after(),
            fence: fence.clone(),
            tx: internal_tx.clone(),
            reopen: reopen.clone(),
        }
        .spawn(&tracker);
        Ok(Self {
            events,
            event_tx,
            event_task: Some(event_task),
            id,
            cfg,
            conn,
            buckets,
            registry,
            secrets,
            metrics,
            fleets: HashMap::new(),
            agents: HashMap::new(),
            peers,
            peer_revisions: HashMap::new(),
            peer_orphaned: HashMap::new(),
            peer_written: None,
            leases: HashMap::new(),
            live: HashMap::new(),
            live_revisions: HashMap::new(),
            live_stores,
            ring_tx,
            ring_rx,
            last_sweep: now,
            lease_pos: 0,
            epoch: 0,
            clock_samples: Default::default(),
            clock_known: false,
            beating: false,
            fence,
            liveness: Some(liveness),
            bad_leases: HashMap::new(),
            held: HashMap::new(),
            stopping: HashMap::new(),
            unheld_since: HashMap::new(),
            synced: [false; 3],
            draining: false,
            changed: false,
            refusals: BTreeMap::new(),
            refused: HashMap::new(),
            prepare_backoff: Default::default(),
            expire_tried: HashMap::new(),
            saturated: false,
            last_release: now,
            timeline_seen_ms: 0,
            started: now,
            cmd_subs: HashMap::new(),
            token,
            tracker,
            internal_tx,
            internal_rx,
            cmd_tx,
            cmd_rx,
            watch_rx,
            offers,
            commands,
            reopen,
        })
    }

    pub(crate) async fn run(mut self) {
        // "agent started" and agent_joined come with the first heartbeat (see there).
        let mut fence = tokio::time::interval(Duration::from_millis(250));
        let mut beat = tokio::time::interval(self.cfg.heartbeat);
        let mut reconcile = tokio::time::interval(self.cfg.reconcile);
        for t in [&mut fence, &mut beat, &mut reconcile] {
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                _ = self.token.cancelled() => break,
                Some((bucket, ev)) = self.watch_rx.recv() => self.on_watch(bucket, ev).await,
                Some(e) = self.ring_rx.recv() => self.on_ring(e).await,
                Some(msg) = self.offers.next() => self.on_offer(msg).await,
                Some(msg) = self.commands.next() => self.on_command(msg).await,
                Some(ev) = self.internal_rx.recv() => self.on_internal(ev).await,
                Some(msg) = self.cmd_rx.recv() => self.on_device_command(msg),
                _ = fence.tick() => {
                    self.fence_stale().await;
                    if self.changed {
                        self.heartbeat().await;
                    }
                }
                _ = beat.tick() => self.heartbeat().await,
                _ = reconcile.tick() => self.reconcile().await,
            }
        }
        self.shutdown().await;
    }

    /// True while `a`'s epoch record stands in the lease watch (deleted once its liveness
    /// key, which the server expires a TTL after its last renewal, is gone: neither side's
    /// clock is involved).
    fn alive(&self, a: &Peer) -> bool {
        a.id == self.id || self.live.contains_key(&a.id)
    }

    /// Stops a shard's runner beside the loop; until it has stopped, the shard is neither
    /// claimed nor taken back here. The receiver fires once it has.
    fn stop_in_background(
        &mut self,
        key: &str,
        handle: ShardHandle,
        why: &str,
    ) -> tokio::sync::oneshot::Receiver<()> {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        *self.stopping.entry(key.to_string()).or_default() += 1;
        let (tx, key, why) = (self.internal_tx.clone(), key.to_string(), why.to_string());
        self.tracker.spawn(async move {
            handle.stop(&why).await;
            let _ = done_tx.send(());
            let _ = tx.send(Internal::Stopped { key });
        });
        done_rx
    }

    /// A background stop finished.
    fn on_stopped(&mut self, key: &str) {
        if let Some(n) = self.stopping.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.stopping.remove(key);
            }
        }
    }

    /// Devices this agent holds.
    fn held_devices(&self) -> u64 {
        self.held.values().map(|h| h.devices).sum()
    }

    /// Publishes without letting a dead connection stall the loop.
    async fn publish(&self, subject: String, payload: Bytes) {
        // While NATS is away, publishing would only fill the client's buffer and wait: drop
        // it (offers and events are re-sent by the reconcile pass and the next heartbeat).
        if self.conn.client.connection_state() != async_nats::connection::State::Connected {
            tracing::debug!(%subject, "not connected; not published");
            return;
        }
        match tokio::time::timeout(
            IO_TIMEOUT,
            self.conn.client.publish(subject.clone(), payload),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(%subject, error = %e, "publish failed"),
            Err(_) => tracing::debug!(%subject, "publish timed out"),
        }
    }

    /// Publishes the events still queued (at shutdown, before the flush).
    async fn drain_events(&mut self) {
        let (closed, _) = mpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.event_tx, closed));
        if let Some(t) = self.event_task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }

    /// Queues an event: a task of its own publishes them in order, so a slow publish never
    /// holds up the loop.
    async fn event(&self, kind: EventKind) {
        let _ = self.event_tx.send(kind);
    }

    async fn offer(&self, offer: ShardOffer) {
        self.publish(self.conn.ns.work(), wire::encode(&offer))
            .await;
    }

    /// Builds this agent's heartbeat.
    fn heartbeat_value(&self) -> Heartbeat {
        let fleets = self.metrics.snapshot();
        Heartbeat {
            v: PROTOCOL_VERSION,
            id: self.id.clone(),
            name: self.cfg.name.clone(),
            labels: self.cfg.labels.clone(),
            version: pluribus_common::VERSION.into(),
            uptime_s: self.started.elapsed().as_secs(),
            // Devices actually started by the shard runners (not just leased).
            devices: self.metrics.devices(),
            capacity: self.cfg.max_devices,
            connection_capacity: self.cfg.max_connections,
            connection_devices: self.held_connection_devices(),
            refusals: self.refusals.clone(),
            draining: self.draining,
            device_types: self.registry.device_types(),
            sink_types: self.registry.sink_types(),
            saturated: fleets.values().any(|c| c.saturated),
            fleets,
            interval_ms: self.cfg.heartbeat.as_millis() as u64,
            ts_ms: now_ms(),
            arrived_ms: None,
        }
    }

    async fn heartbeat(&mut self) {
        self.changed = false;
        // Not before this agent can take work (its liveness entry, and with it the
        // server's clock, is known): the others would count it in their fair share and
        // pass it offers it can only pass on.
        if !self.clock_known || (self.epoch == 0 && !self.beating) {
            return;
        }
        if !self.beating {
            self.beating = true;
            tracing::info!(agent = %self.id, name = %self.cfg.name, namespace = %self.conn.ns.name(), "agent started");
            self.event(EventKind::AgentJoined {
                agent_id: self.id.clone(),
                name: self.cfg.name.clone(),
            })
            .await;
        }
        let hb = self.heartbeat_value();
        if hb.saturated && !self.saturated {
            let fleets: Vec<String> = hb
                .fleets
                .iter()
                .filter(|(_, c)| c.saturated)
                .map(|(k, _)| k.clone())
                .collect();
            tracing::warn!(fleets = %fleets.join(","), "saturated: this agent cannot keep up with the schedule; the generator is the bottleneck, not the system under test");
            self.event(EventKind::Saturated {
                agent_id: self.id.clone(),
                name: self.cfg.name.clone(),
                fleets,
            })
            .await;
        }
        self.saturated = hb.saturated;
        let payload = wire::encode(&hb);
        self.write_peer(Peer::of(&hb));
        self.publish(self.conn.ns.heartbeat(&self.id), payload.clone())
            .await;
        let agents = self.buckets.agents.clone();
        let id = self.id.clone();
        let reopen = self.reopen.clone();
        self.tracker.spawn(async move {
            if let Ok(Err(e)) = tokio::time::timeout(IO_TIMEOUT, agents.put(id, payload)).await {
                tracing::debug!(error = %e, "heartbeat put failed");
                // The agents bucket is gone: JetStream came back without its state.
                if e.to_string().contains("no stream found") {
                    reopen.recreate().await;
                }
            }
        });
    }
}

impl Control {
    /// Writes this agent's peer record when it changed: at once for anything the others
    /// place work by (draining, labels, refusals, capacity), at most once a heartbeat
    /// interval for device counts alone. A fleet at rest writes nothing.
    fn write_peer(&mut self, peer: Peer) {
        self.agents.insert(self.id.clone(), peer.clone());
        let due = match &self.peer_written {
            None => true,
            Some((last, _)) if *last == peer => false,
            Some((last, at)) => {
                !last.differs_in_counts_only(&peer) || at.elapsed() >= self.cfg.heartbeat
            }
        };
        if !due {
            return;
        }
        self.peer_written = Some((peer.clone(), Instant::now()));
        let (store, key, tx) = (
            self.peers.clone(),
            self.id.clone(),
            self.internal_tx.clone(),
        );
        self.tracker.spawn(async move {
            let put = store.put(key, wire::encode(&peer));
            let failed = match tokio::time::timeout(IO_TIMEOUT, put).await {
                Ok(Ok(_)) => return,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "timed out".to_string(),
            };
            tracing::debug!(error = %failed, "peer record put failed; written again with the next heartbeat");
            let _ = tx.send(Internal::PeerUnwritten);
        });
    }
}
