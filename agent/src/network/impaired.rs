//! [`Impaired`]: a sink with the fleet's network impairments in front of it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use pluribus_common::spec::network::plan::NetPlan;
use pluribus_common::spec::network::Impairments;

use super::flap::FlapState;
use super::offline::{Offline, Stored};
use super::{payload, rng::Rng, Chain, DevState, Msg};
use crate::metrics::{FleetMetrics, NetMetrics};
use crate::shard::schedule::stable_hash;
use crate::sink::{LinkMode, Sink, SinkDevice, SinkError};

mod link;

/// Most messages a sink's delay queue holds; beyond, delayed messages are dropped (and
/// counted as dropped) rather than growing the agent's memory without bound.
const MAX_QUEUED: usize = 1_000_000;

/// What the network layer of a shard needs besides the plan.
#[derive(Debug, Clone)]
pub struct NetContext {
    /// The fleet name (delayed messages are sent later, for this fleet).
    pub fleet: Arc<str>,
    /// The fleet's seed.
    pub seed: u64,
    /// The fleet's start (Unix ms), from which clock drift counts.
    pub start_ms: u64,
    /// Where injected faults are counted.
    pub metrics: Arc<FleetMetrics>,
}

/// A sink, and the network impairments in front of it (none until a rule exists).
pub struct Impaired {
    inner: Box<dyn Sink>,
    net: Option<Box<Net>>,
}

struct Net {
    ctx: NetContext,
    plan: NetPlan,
    /// Bumped when the plan changes or a rule starts or ends: devices re-resolve.
    gen: u64,
    next_change_ms: Option<u64>,
    devs: HashMap<u64, Dev>,
    chains: Vec<Arc<Chain>>,
    queue: BinaryHeap<Reverse<Delayed>>,
    order: u64,
    /// Where injected faults are counted: one entry per cohort seen (devices point into it).
    accts: Accts,
    /// Devices that went offline, and came back, since the last [`Impaired::take_partitions`].
    went_offline: u64,
    came_back: u64,
    /// Flap transitions: (due µs, device index, flap state id).
    flaps: BinaryHeap<Reverse<(u64, u64, u64)>>,
    flap_ids: u64,
    /// Some rule may cut devices' links (the sink was told, [`Sink::own_links`]).
    cuts: bool,
}

/// One cohort's counters, and its added delays (µs) since the last merge into them.
struct Acct {
    key: Option<String>,
    m: Arc<NetMetrics>,
    delays: Vec<u64>,
}

/// Most cohorts a sink counts apart (more are counted with devices in no cohort; the
/// metrics registry bounds them again).
const MAX_ACCTS: usize = 64;

/// The cohorts' counters: the first for devices in no cohort, then one per cohort seen.
/// Never empty, so an index always finds one.
struct Accts {
    none: Acct,
    named: Vec<Acct>,
}

impl Accts {
    fn get(&mut self, i: usize) -> &mut Acct {
        match i.checked_sub(1).and_then(|j| self.named.get_mut(j)) {
            Some(a) => a,
            None => &mut self.none,
        }
    }

    /// The index of `key`'s counters, made on first use.
    fn index(&mut self, key: Option<&str>, metrics: &FleetMetrics) -> usize {
        let Some(key) = key else {
            return 0;
        };
        if let Some(j) = self
            .named
            .iter()
            .position(|a| a.key.as_deref() == Some(key))
        {
            return j + 1;
        }
        if self.named.len() >= MAX_ACCTS {
            return 0;
        }
        self.named.push(Acct {
            key: Some(key.to_string()),
            m: metrics.net.cohort(Some(key)),
            delays: Vec::new(),
        });
        self.named.len()
    }

    fn merge_delays(&mut self) {
        for a in std::iter::once(&mut self.none).chain(&mut self.named) {
            if !a.delays.is_empty() {
                a.m.add_delays(&a.delays);
                a.delays.clear();
            }
        }
    }
}

struct Dev {
    id: Arc<str>,
    salt: u64,
    gen: u64,
    chain: Option<Arc<Chain>>,
    /// Where its faults count (an index into `Net::accts`).
    acct: usize,
    /// Where its offline buffer counts: the cohort that cut it off.
    off_acct: usize,
    counter: u64,
    state: DevState,
    /// A reordered message and how many later ones must pass it first.
    held: Option<(Bytes, u32)>,
    /// Offline: the messages it keeps until it is back (and reconnected).
    offline: Option<Box<Offline>>,
    /// Flapping: where it is in its up/down cycle.
    flap: Option<FlapState>,
    /// Back from offline: new messages wait until the buffer is flushed (µs).
    flushing_until_us: u64,
}

struct Delayed {
    due_us: u64,
    order: u64,
    index: u64,
    id: Arc<str>,
    payload: Bytes,
}

impl PartialEq for Delayed {
    fn eq(&self, o: &Self) -> bool {
        (self.due_us, self.order) == (o.due_us, o.order)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Delayed {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.due_us, self.order).cmp(&(o.due_us, o.order))
    }
}

fn now_us() -> u64 {
    pluribus_common::time::now_us()
}

impl Impaired {
    /// `inner` with no impairments.
    pub fn new(inner: Box<dyn Sink>) -> Self {
        Self { inner, net: None }
    }

    /// Follows a fleet's (new) network rules. A plan with no rules leaves a sink that was
    /// never impaired untouched, so fleets without a `network:` section pay nothing.
    pub fn set_plan(&mut self, plan: NetPlan, ctx: &NetContext) {
        let cuts = plan.cuts_links();
        match &mut self.net {
            None if plan.is_off() => return,
            None => {
                let next_change_ms = Some(0);
                self.net = Some(Box::new(Net {
                    ctx: ctx.clone(),
                    plan,
                    gen: 1,
                    next_change_ms,
                    devs: HashMap::new(),
                    chains: Vec::new(),
                    queue: BinaryHeap::new(),
                    order: 0,
                    accts: Accts {
                        none: Acct {
                            key: None,
                            m: ctx.metrics.net.cohort(None),
                            delays: Vec::new(),
                        },
                        named: Vec::new(),
                    },
                    went_offline: 0,
                    came_back: 0,
                    flaps: BinaryHeap::new(),
                    flap_ids: 0,
                    cuts: false,
                }));
            }
            Some(net) => {
                net.plan = plan;
                net.gen += 1;
                net.next_change_ms = Some(0);
                net.chains.clear();
            }
        }
        if let Some(net) = self.net.as_deref_mut() {
            if net.cuts != cuts {
                net.cuts = cuts;
                self.inner.own_links(cuts);
            }
        }
    }

    /// Called when a device starts.
    pub async fn open_device(&mut self, dev: &SinkDevice<'_>) -> Result<(), SinkError> {
        self.inner.open_device(dev).await
    }

    /// Sends one payload of one device through the impairments.
    pub async fn send(&mut self, dev: &SinkDevice<'_>, payload: Bytes) -> Result<(), SinkError> {
        let Some(net) = self.net.as_deref_mut() else {
            return self.inner.send(dev, payload).await;
        };
        let now_us = now_us();
        for (delay_us, p) in net.impair(&mut *self.inner, dev, payload, now_us) {
            if delay_us == 0 {
                self.inner.send(dev, p).await?;
            } else {
                // On a millisecond boundary, like the shard's slots: the runner then sends
                // delayed messages in the same wake-ups as its due slots.
                net.enqueue(dev, (now_us + delay_us).div_ceil(1000) * 1000, p);
            }
        }
        Ok(())
    }

    /// Called when a device stops: a message it held back goes out now.
    pub async fn close_device(&mut self, dev: &SinkDevice<'_>) {
        if let Some(net) = self.net.as_deref_mut() {
            if let Some(d) = net.devs.remove(&dev.index) {
                if let Some((p, _)) = d.held {
                    let _ = self.inner.send(dev, p).await;
                }
                // A device that stops while offline never gets its buffer out.
                if let Some(o) = d.offline {
                    let m = &net.accts.get(d.off_acct).m;
                    m.buffer_dropped.fetch_add(o.len() as u64, Relaxed);
                    m.partitions_ended.fetch_add(1, Relaxed);
                }
            }
        }
        self.inner.close_device(dev).await
    }

    /// A device's reply to a command (not impaired).
    pub async fn reply(&mut self, dev: &SinkDevice<'_>, payload: Bytes) -> Result<(), SinkError> {
        self.inner.reply(dev, payload).await
    }

    /// See [`Sink::publishes`].
    pub fn publishes(&self) -> bool {
        self.inner.publishes()
    }

    /// Called after each batch of sends.
    pub async fn flush(&mut self) -> Result<(), SinkError> {
        if let Some(net) = self.net.as_deref_mut() {
            net.merge_delays();
        }
        self.inner.flush().await
    }

    /// The shard stops: what is still delayed goes out now, then the sink closes.
    pub async fn close(&mut self) {
        let _ = self.send_queued(u64::MAX).await;
        self.inner.close().await
    }

    /// Devices that went offline and came back since the last call (for events).
    pub fn take_partitions(&mut self) -> (u64, u64) {
        match self.net.as_deref_mut() {
            Some(n) => (
                std::mem::take(&mut n.went_offline),
                std::mem::take(&mut n.came_back),
            ),
            None => (0, 0),
        }
    }

    /// When the next delayed message, rule change or flap is due (µs since the epoch).
    pub fn next_due_us(&self) -> Option<u64> {
        let n = self.net.as_deref()?;
        [
            n.queue.peek().map(|Reverse(d)| d.due_us),
            n.flaps.peek().map(|Reverse((due, _, _))| *due),
            n.next_change_ms.map(|t| t.saturating_mul(1000)),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Applies the rule changes and flaps due by `now_us` (devices go offline or come back,
    /// their connections with them), sends the delayed messages due (at most a batch),
    /// then flushes.
    pub async fn release_due(&mut self, now_us: u64) -> Result<(), SinkError> {
        if let Some(net) = self.net.as_deref_mut() {
            net.tick(&mut *self.inner, now_us);
        }
        self.send_queued(now_us).await
    }

    /// Sends the delayed messages due by `now_us` (at most a batch), then flushes.
    async fn send_queued(&mut self, now_us: u64) -> Result<(), SinkError> {
        let Some(net) = self.net.as_deref_mut() else {
            return Ok(());
        };
        let mut sent = 0;
        while sent < 4096 {
            match net.queue.peek() {
                Some(Reverse(d)) if d.due_us <= now_us => {}
                _ => break,
            }
            let Some(Reverse(d)) = net.queue.pop() else {
                break;
            };
            let sd = SinkDevice {
                device_id: &d.id,
                fleet: &net.ctx.fleet,
                index: d.index,
            };
            if let Err(e) = self.inner.send(&sd, d.payload).await {
                net.ctx.metrics.errors.fetch_add(1, Relaxed);
                tracing::debug!(device = %d.id, error = %e, "delayed send failed");
            }
            sent += 1;
        }
        net.merge_delays();
        self.inner.flush().await
    }
}

impl Net {
    /// The chain for `imp`, shared by every device with the same effective profile.
    fn chain(&mut self, imp: Impairments) -> Arc<Chain> {
        if let Some(c) = self.chains.iter().find(|c| c.from == imp) {
            return c.clone();
        }
        let c = Chain::new(&imp, self.ctx.start_ms);
        self.chains.push(c.clone());
        c
    }

    /// Runs one message through the device's impairments: what to send, in order, each
    /// with its delay (0 = now); a held-back message this one released comes last.
    fn impair(
        &mut self,
        inner: &mut dyn Sink,
        dev: &SinkDevice<'_>,
        payload: Bytes,
        now_us: u64,
    ) -> Vec<(u64, Bytes)> {
        self.advance(inner, now_us);
        let seed = self.ctx.seed;
        let d = self.devs.entry(dev.index).or_insert_with(|| Dev {
            id: Arc::from(dev.device_id),
            salt: stable_hash(&[&seed.to_le_bytes(), b"net", dev.device_id.as_bytes()]),
            gen: 0,
            chain: None,
            acct: 0,
            off_acct: 0,
            counter: 0,
            state: DevState::default(),
            held: None,
            offline: None,
            flap: None,
            flushing_until_us: 0,
        });
        if d.gen != self.gen {
            self.resolve(dev.index, now_us);
            self.settle(inner, dev.index, now_us);
        }
        let Some(d) = self.devs.get_mut(&dev.index) else {
            return vec![(0, payload)];
        };
        let chain = d.chain.clone();
        let mut out = Vec::new();
        if let Some(o) = d.offline.as_deref_mut() {
            let m = &self.accts.get(d.off_acct).m;
            let back = o.returning && (o.spec.link == LinkMode::Keep || inner.ready(dev));
            if !back {
                // Offline, or let back but not reconnected yet: keep the message for later.
                match o.store(payload) {
                    Stored::Kept => {
                        m.buffered.fetch_add(1, Relaxed);
                    }
                    Stored::KeptDroppedOldest => {
                        m.buffered.fetch_add(1, Relaxed);
                        m.buffer_dropped.fetch_add(1, Relaxed);
                    }
                    Stored::Dropped => {
                        m.buffer_dropped.fetch_add(1, Relaxed);
                    }
                }
                return out;
            }
            // Back: the buffer goes first, then this message.
            if let Some(o) = d.offline.take() {
                m.partitions_ended.fetch_add(1, Relaxed);
                self.came_back += 1;
                out.extend(o.flush());
                m.flushed.fetch_add(out.len() as u64, Relaxed);
                let last = out.last().map_or(0, |(delay, _)| *delay);
                d.flushing_until_us = now_us + last;
            }
        }
        // Just back: new messages go behind the flushed ones, through the delay queue, for a
        // second after the flush's last one is due (the queue keeps them in order even when
        // the shard runs late).
        let not_before = if d.flushing_until_us > 0 && now_us < d.flushing_until_us + 1_000_000 {
            d.flushing_until_us.saturating_sub(now_us).max(1)
        } else {
            0
        };
        let Some(chain) = chain else {
            out.push((not_before, payload));
            return out;
        };
        let seq = payload::seq(&payload).unwrap_or(d.counter);
        d.counter += 1;
        let mut rng = Rng::for_message(d.salt, seq);
        let mut msg = Msg {
            payload,
            now_us,
            delay_us: 0,
            throttle_us: 0,
            dropped: false,
            duplicated: false,
            hold: 0,
            corrupted: false,
        };
        chain.apply(&mut msg, &mut d.state, &mut rng);
        msg.delay_us = msg.delay_us.max(not_before);
        let acct = self.accts.get(d.acct);
        let m = &acct.m;
        if msg.corrupted {
            m.corrupted.fetch_add(1, Relaxed);
        }
        if msg.dropped {
            m.dropped.fetch_add(1, Relaxed);
            return out;
        }
        if msg.delay_us > 0 {
            m.delayed.fetch_add(1, Relaxed);
            acct.delays.push(msg.delay_us);
        }
        if msg.throttle_us > 0 {
            m.throttled.fetch_add(1, Relaxed);
        }
        if msg.duplicated {
            m.duplicated.fetch_add(1, Relaxed);
            out.push((msg.delay_us, msg.payload.clone()));
        }
        if msg.hold > 0 && d.held.is_none() {
            m.reordered.fetch_add(1, Relaxed);
            d.held = Some((msg.payload, msg.hold));
            return out;
        }
        out.push((msg.delay_us, msg.payload));
        // This message passes a held one: the held one goes after it.
        if let Some((_, left)) = &mut d.held {
            *left -= 1;
            if *left == 0 {
                out.extend(d.held.take().map(|(p, _)| (msg.delay_us, p)));
            }
        }
        out
    }

    fn enqueue(&mut self, dev: &SinkDevice<'_>, due_us: u64, payload: Bytes) {
        if self.queue.len() >= MAX_QUEUED {
            let acct = self.devs.get(&dev.index).map_or(0, |d| d.acct);
            self.accts.get(acct).m.dropped.fetch_add(1, Relaxed);
            return;
        }
        let id = match self.devs.get(&dev.index) {
            Some(d) => d.id.clone(),
            None => Arc::from(dev.device_id),
        };
        self.order += 1;
        self.queue.push(Reverse(Delayed {
            due_us,
            order: self.order,
            index: dev.index,
            id,
            payload,
        }));
    }

    fn merge_delays(&mut self) {
        self.accts.merge_delays();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::LinkMode;
    use async_trait::async_trait;
    use pluribus_common::spec::network::plan::RuntimeRule;
    use pluribus_common::spec::network::{ChanceSpec, NetRule, ReorderSpec};
    use std::sync::Mutex;

    /// Records what reaches it.
    struct Recorder(Arc<Mutex<Vec<u64>>>);

    #[async_trait]
    impl Sink for Recorder {
        async fn send(&mut self, _dev: &SinkDevice<'_>, p: Bytes) -> Result<(), SinkError> {
            let seq = payload::seq(&p).unwrap_or(u64::MAX);
            self.0.lock().unwrap().push(seq);
            Ok(())
        }
    }

    fn impaired(rule: NetRule) -> (Impaired, Arc<Mutex<Vec<u64>>>, Arc<FleetMetrics>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut s = Impaired::new(Box::new(Recorder(seen.clone())));
        let metrics = Arc::new(FleetMetrics::default());
        let ctx = NetContext {
            fleet: Arc::from("f"),
            seed: 1,
            start_ms: 0,
            metrics: metrics.clone(),
        };
        let rules = [RuntimeRule {
            rule,
            since_ms: 0,
            until_ms: None,
        }];
        s.set_plan(NetPlan::new(None, &rules, 0, 1), &ctx);
        (s, seen, metrics)
    }

    async fn send_seqs(s: &mut Impaired, n: u64) {
        let dev = SinkDevice {
            device_id: "d-1",
            fleet: "f",
            index: 1,
        };
        for k in 0..n {
            let p = format!(r#"{{"seq":{k},"ts":1}}"#);
            s.send(&dev, Bytes::from(p)).await.unwrap();
        }
        s.close_device(&dev).await;
    }

    #[tokio::test]
    async fn reordered_messages_go_out_behind_the_next_ones_and_are_counted() {
        let (mut s, seen, m) = impaired(NetRule {
            reorder: Some(ReorderSpec {
                probability: 1.0,
                gap: 2,
            }),
            ..NetRule::default()
        });
        send_seqs(&mut s, 6).await;
        assert_eq!(*seen.lock().unwrap(), [1, 2, 0, 4, 5, 3]);
        assert_eq!(m.net.cohort(None).reordered.load(Relaxed), 2);
    }

    #[tokio::test]
    async fn duplicates_arrive_twice_and_are_counted() {
        let (mut s, seen, m) = impaired(NetRule {
            duplicate: Some(ChanceSpec { probability: 1.0 }),
            ..NetRule::default()
        });
        send_seqs(&mut s, 3).await;
        assert_eq!(*seen.lock().unwrap(), [0, 0, 1, 1, 2, 2]);
        assert_eq!(m.net.cohort(None).duplicated.load(Relaxed), 3);
    }

    #[tokio::test]
    async fn faults_count_under_the_cohort_of_the_device() {
        use pluribus_common::spec::network::{Cohort, CorruptSpec, LossSpec};
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut s = Impaired::new(Box::new(Recorder(seen.clone())));
        let metrics = Arc::new(FleetMetrics::default());
        let ctx = NetContext {
            fleet: Arc::from("f"),
            seed: 1,
            start_ms: 0,
            metrics: metrics.clone(),
        };
        let rule = |cohort: Option<Cohort>, r: NetRule| RuntimeRule {
            rule: NetRule { cohort, ..r },
            since_ms: 0,
            until_ms: None,
        };
        let rules = [
            rule(
                None,
                NetRule {
                    corrupt: Some(CorruptSpec {
                        probability: 1.0,
                        ..CorruptSpec::default()
                    }),
                    ..NetRule::default()
                },
            ),
            rule(
                Some(Cohort::Range(0, 5)),
                NetRule {
                    loss: Some(LossSpec {
                        probability: 1.0,
                        gilbert: None,
                    }),
                    ..NetRule::default()
                },
            ),
            rule(
                Some(Cohort::Range(5, 10)),
                NetRule {
                    duplicate: Some(ChanceSpec { probability: 1.0 }),
                    ..NetRule::default()
                },
            ),
        ];
        s.set_plan(NetPlan::new(None, &rules, 0, 1), &ctx);
        for i in 0..15u64 {
            let id = format!("d-{i}");
            let dev = SinkDevice {
                device_id: &id,
                fleet: "f",
                index: i,
            };
            for k in 0..2 {
                let p = format!(r#"{{"seq":{k},"ts":1}}"#);
                s.send(&dev, Bytes::from(p)).await.unwrap();
            }
        }
        let c = |k: Option<&str>| metrics.net.cohort(k);
        let count = |k| {
            let m = c(k);
            [&m.dropped, &m.duplicated, &m.corrupted].map(|a| a.load(Relaxed))
        };
        assert_eq!(count(Some("0..5")), [10, 0, 10]);
        assert_eq!(count(Some("5..10")), [0, 10, 10]);
        assert_eq!(count(None), [0, 0, 10]);
        assert_eq!(seen.lock().unwrap().len(), 20 + 10);
    }

    /// Counts the link changes the network layer asks for.
    struct Links(Arc<Mutex<(u64, u64)>>);

    #[async_trait]
    impl Sink for Links {
        async fn send(&mut self, _dev: &SinkDevice<'_>, _p: Bytes) -> Result<(), SinkError> {
            Ok(())
        }
        fn set_link(&mut self, _dev: &SinkDevice<'_>, down: Option<LinkMode>) -> bool {
            let mut l = self.0.lock().unwrap();
            match down {
                Some(_) => l.0 += 1,
                None => l.1 += 1,
            }
            down.is_some()
        }
    }

    #[tokio::test]
    async fn flapping_cuts_and_restores_links_as_often_as_the_distributions_say() {
        use pluribus_common::spec::network::{DurationDist, FlapSpec};
        let links = Arc::new(Mutex::new((0, 0)));
        let mut s = Impaired::new(Box::new(Links(links.clone())));
        let ctx = NetContext {
            fleet: Arc::from("f"),
            seed: 1,
            start_ms: 0,
            metrics: Arc::new(FleetMetrics::default()),
        };
        let rule = NetRule {
            flap: Some(FlapSpec {
                uptime: Some(DurationDist::ms(2_000, 500)),
                per_minute: None,
                downtime: DurationDist::ms(1_000, 250),
                offline: None,
            }),
            ..NetRule::default()
        };
        let rules = [RuntimeRule {
            rule,
            since_ms: 0,
            until_ms: None,
        }];
        s.set_plan(NetPlan::new(None, &rules, 0, 1), &ctx);
        let t0 = now_us();
        for i in 0..100u64 {
            let id = format!("d-{i}");
            let dev = SinkDevice {
                device_id: &id,
                fleet: "f",
                index: i,
            };
            s.send(&dev, Bytes::from_static(br#"{"seq":0}"#))
                .await
                .unwrap();
        }
        // 300 simulated seconds after a 10 s warm-up, in 1 ms steps.
        let mut at_warm = (0, 0);
        for ms in 0..310_000u64 {
            s.release_due(t0 + ms * 1000).await.unwrap();
            if ms == 10_000 {
                at_warm = *links.lock().unwrap();
            }
        }
        let (downs, ups) = *links.lock().unwrap();
        let ups = ups - at_warm.1;
        // 100 devices × 300 s / 3 s = 10,000 cycles, sd about 100 × sqrt(300 × 0.3125 / 27).
        assert!(
            (9_800..10_200).contains(&ups),
            "{ups} link-ups, {downs} cuts"
        );
    }

    #[tokio::test]
    async fn without_rules_the_sink_is_left_alone() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut s = Impaired::new(Box::new(Recorder(seen.clone())));
        let ctx = NetContext {
            fleet: Arc::from("f"),
            seed: 1,
            start_ms: 0,
            metrics: Arc::new(FleetMetrics::default()),
        };
        s.set_plan(NetPlan::default(), &ctx);
        assert!(s.net.is_none());
        send_seqs(&mut s, 3).await;
        assert_eq!(*seen.lock().unwrap(), [0, 1, 2]);
    }
}
