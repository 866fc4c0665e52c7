//! What checks are judged on: the agents' heartbeats (now, against a start), the events
//! seen during the run and the probe windows. Nothing here adds load: heartbeats and events
//! are published anyway, and a probe is the user's own.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use futures::StreamExt;
use pluribus_common::messages::Heartbeat;
use pluribus_common::time::now_ms;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::check::{Check, Figure, Measured, Pct};
use crate::apply::read_record;
use crate::figures::{tabulate, Mode, Quantiles, Span};
use crate::probe::state::ProbeState;
use crate::probe::summary::Summary;
use crate::probe::{ingest, mqtt, nats};
use crate::state::{live, load_agents};
use crate::Ctx;

/// Events seen since the run started: (Unix ms, kind).
#[derive(Debug, Clone, Default)]
pub struct EventLog(Arc<Mutex<Vec<(u64, String)>>>);

/// The most events kept (a run that sees more counts only the first ones).
const MAX_EVENTS: usize = 1_000_000;

impl EventLog {
    /// Follows every event of the namespace until `token` is cancelled.
    pub async fn follow(ctx: &Ctx, token: CancellationToken) -> Result<Self> {
        let log = Self::default();
        let mut sub = ctx.conn.client.subscribe(ctx.conn.ns.event_all()).await?;
        ctx.conn.client.flush().await?;
        let l = log.clone();
        tokio::spawn(async move {
            loop {
                let m = tokio::select! {
                    _ = token.cancelled() => break,
                    m = sub.next() => m,
                };
                let Some(m) = m else { break };
                let kind = m.subject.rsplit('.').next().unwrap_or_default().to_string();
                if let Ok(mut v) = l.0.lock() {
                    if v.len() < MAX_EVENTS {
                        v.push((now_ms(), kind));
                    }
                }
            }
        });
        Ok(log)
    }

    /// Events of `kind` since `since_ms`.
    pub fn count(&self, kind: &str, since_ms: u64) -> u64 {
        self.0
            .lock()
            .map(|v| {
                v.iter()
                    .filter(|(t, k)| *t >= since_ms && k == kind)
                    .count() as u64
            })
            .unwrap_or(0)
    }

    /// Counts by kind since `since_ms`.
    pub fn counts(&self, since_ms: u64) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        if let Ok(v) = self.0.lock() {
            for (_, k) in v.iter().filter(|(t, _)| *t >= since_ms) {
                *out.entry(k.clone()).or_default() += 1;
            }
        }
        out
    }
}

/// An open (or closed) probe window.
#[derive(Debug, Clone)]
pub struct ProbeWindow {
    /// What it counted.
    pub state: Arc<Mutex<ProbeState>>,
    /// Stops its subscription.
    pub token: CancellationToken,
}

impl ProbeWindow {
    /// Opens a window on `step`'s source.
    pub async fn open(ctx: &Ctx, step: &super::steps::Probe) -> Result<Self> {
        let token = CancellationToken::new();
        let (mut rx, name) = match (&step.subject, &step.broker, &step.topic) {
            (Some(s), _, _) => (
                nats::subscribe(&ctx.conn.client, s, token.clone()).await?,
                format!("nats:{s}"),
            ),
            (None, Some(b), Some(t)) => {
                let broker = pluribus_common::spec::BrokerUrl::parse("broker", b)?;
                let p = mqtt::MqttProbe {
                    broker,
                    tls: None,
                    topic: t.clone(),
                    qos: step.qos,
                    credentials: step.username.clone().zip(step.password.clone()),
                };
                let name = format!("{} {t}", mqtt::url(&p.broker));
                (mqtt::subscribe(&p, token.clone()).await?, name)
            }
            _ => anyhow::bail!(
                "probe {}: give a subject, or a broker and a topic",
                step.name
            ),
        };
        let state = Arc::new(Mutex::new(ProbeState::new(&name, now_ms())));
        let s = state.clone();
        tokio::spawn(async move {
            while let Some(d) = rx.recv().await {
                if let Ok(mut st) = s.lock() {
                    ingest(&mut st, &d);
                    while let Ok(d) = rx.try_recv() {
                        ingest(&mut st, &d);
                    }
                    st.ended_ms = now_ms();
                }
            }
        });
        Ok(Self { state, token })
    }

    /// Closes the window.
    pub fn close(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.ended_ms = now_ms();
        }
        self.token.cancel();
    }

    /// What it saw so far.
    pub fn summary(&self) -> Option<Summary> {
        self.state.lock().ok().map(|s| Summary::of(&s, false))
    }
}

/// Heartbeats by agent id.
pub type Beats = BTreeMap<String, Heartbeat>;

/// The agents' heartbeats now.
pub async fn beats(ctx: &Ctx) -> Result<Beats> {
    Ok(load_agents(ctx)
        .await?
        .into_iter()
        .map(|h| (h.id.clone(), h))
        .collect())
}

/// The figures of some fleets over a window (from `start` to now), as checks read them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// When it was taken (Unix ms).
    pub at_ms: u64,
    /// Devices desired (the fleet records).
    pub desired: u64,
    /// Devices running.
    pub active: u64,
    /// Devices connected.
    pub connected: u64,
    /// Achieved msg/s (last heartbeat interval).
    pub rate: f64,
    /// Scheduled msg/s.
    pub scheduled: f64,
    /// Counts within the window.
    pub connect_failures: u64,
    /// Connections lost within the window.
    pub disconnects: u64,
    /// Reconnections within the window.
    pub reconnects: u64,
    /// Send errors within the window.
    pub errors: u64,
    /// Failed publishes within the window.
    pub publish_failed: u64,
    /// Messages sent within the window.
    pub messages: u64,
    /// Live agents.
    pub agents_alive: u64,
    /// Ack latency within the window (µs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_latency_us: Option<Quantiles>,
    /// Tick lateness within the window (µs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tick_lag_us: Option<Quantiles>,
}

fn counter_delta(now: u64, before: Option<u64>) -> u64 {
    match before {
        Some(b) if now >= b => now - b,
        _ => now,
    }
}

/// Takes a snapshot of `fleets` against `start` (the heartbeats at the window's start).
/// The achieved rate is the agents' own gauge (their last heartbeat interval), or with
/// `window_rate` the messages between each agent's heartbeat at the start and its latest,
/// over the time between them (steadier: an `expect` with a `window`).
pub async fn snapshot(
    ctx: &Ctx,
    fleets: &[String],
    start: &Beats,
    percentiles: bool,
) -> Result<Snapshot> {
    snapshot_with(ctx, fleets, start, percentiles, false).await
}

/// [`snapshot`], with the rate over the window if `window_rate`.
pub async fn snapshot_with(
    ctx: &Ctx,
    fleets: &[String],
    start: &Beats,
    percentiles: bool,
    window_rate: bool,
) -> Result<Snapshot> {
    let agents = load_agents(ctx).await?;
    let now = now_ms();
    let alive = live(&agents, now);
    let mut s = Snapshot {
        at_ms: now,
        agents_alive: alive.len() as u64,
        ..Default::default()
    };
    for f in fleets {
        if let Some((r, _)) = read_record(&ctx.buckets.fleets, f).await? {
            s.desired += r.desired();
        }
    }
    for h in &alive {
        let earlier = start.get(&h.id);
        for f in fleets {
            let Some(c) = h.fleets.get(f) else { continue };
            let b = earlier.and_then(|e| e.fleets.get(f));
            s.active += c.devices;
            s.connected += c.connected;
            let dt_s = earlier.map_or(0.0, |e| h.ts_ms.saturating_sub(e.ts_ms) as f64 / 1000.0);
            s.rate += match b {
                Some(b) if window_rate && dt_s > 0.0 => {
                    counter_delta(c.messages, Some(b.messages)) as f64 / dt_s
                }
                _ => c.achieved_per_s,
            };
            s.scheduled += c.scheduled_per_s;
            s.connect_failures += counter_delta(
                c.connect_failures.values().sum(),
                b.map(|b| b.connect_failures.values().sum()),
            );
            s.disconnects += counter_delta(c.disconnects, b.map(|b| b.disconnects));
            s.reconnects += counter_delta(c.reconnects, b.map(|b| b.reconnects));
            s.errors += counter_delta(c.errors, b.map(|b| b.errors));
            s.publish_failed += counter_delta(c.publish_failed, b.map(|b| b.publish_failed));
            s.messages += counter_delta(c.messages, b.map(|b| b.messages));
        }
    }
    if percentiles {
        // Only the scenario's fleets, merged (histograms are exact across agents).
        let keep = |h: &Heartbeat| {
            let mut h = h.clone();
            h.fleets.retain(|k, _| fleets.contains(k));
            h
        };
        let latest: Vec<Heartbeat> = alive.iter().map(|h| keep(h)).collect();
        let earlier: BTreeMap<&str, Heartbeat> =
            start.iter().map(|(k, h)| (k.as_str(), keep(h))).collect();
        let spans: Vec<Span<'_>> = latest
            .iter()
            .map(|h| Span {
                latest: h,
                earlier: earlier.get(h.id.as_str()),
            })
            .collect();
        let table = tabulate(
            &spans,
            None,
            Mode {
                reported_rates: false,
                span_percentiles: true,
            },
        );
        s.ack_latency_us = table.total.ack_latency_us;
        s.tick_lag_us = table.total.tick_lag_us;
    }
    s.rate = crate::figures::round2(s.rate);
    s.scheduled = crate::figures::round2(s.scheduled);
    Ok(s)
}

fn pct_ms(q: Option<Quantiles>, p: Pct) -> Option<f64> {
    q.map(|q| {
        let us = match p {
            Pct::P50 => q.p50,
            Pct::P90 => q.p90,
            Pct::P99 => q.p99,
            Pct::Max => q.max,
        };
        us as f64 / 1000.0
    })
}

fn probe_pct(s: &Summary, p: Pct) -> Option<f64> {
    (s.latency_ms.count > 0).then_some(match p {
        Pct::P50 => s.latency_ms.p50,
        Pct::P90 => s.latency_ms.p90,
        Pct::P99 => s.latency_ms.p99,
        Pct::Max => s.latency_ms.max,
    })
}

/// Whether judging `checks` needs latency percentiles from the heartbeats.
pub fn needs_percentiles<'a>(checks: impl IntoIterator<Item = &'a Check>) -> bool {
    checks
        .into_iter()
        .any(|c| matches!(c.figure, Figure::Ack(_) | Figure::Lag(_)))
}

/// What `figure` measured.
pub fn figure(
    f: &Figure,
    s: &Snapshot,
    events: &EventLog,
    since_ms: u64,
    probe: Option<&Summary>,
) -> Measured {
    let v = |value: f64| Measured {
        value: Some(value),
        ..Default::default()
    };
    let missing = |why: &str| Measured {
        missing: Some(why.to_string()),
        ..Default::default()
    };
    let with_base = |value: f64, base: f64| Measured {
        value: Some(value),
        base: Some(base),
        ..Default::default()
    };
    match f {
        Figure::Rate => with_base(s.rate, s.scheduled),
        Figure::Scheduled => v(s.scheduled),
        Figure::Active => with_base(s.active as f64, s.desired as f64),
        Figure::Connected => with_base(s.connected as f64, s.desired as f64),
        Figure::ConnectFailures => v(s.connect_failures as f64),
        Figure::Disconnects => v(s.disconnects as f64),
        Figure::Reconnects => v(s.reconnects as f64),
        Figure::Errors => v(s.errors as f64),
        Figure::PublishFailed => v(s.publish_failed as f64),
        Figure::Messages => v(s.messages as f64),
        Figure::AgentsAlive => v(s.agents_alive as f64),
        Figure::Ack(p) => pct_ms(s.ack_latency_us, *p).map_or_else(
            || missing("no acknowledgement measured (the sink has none, or nothing was sent)"),
            v,
        ),
        Figure::Lag(p) => pct_ms(s.tick_lag_us, *p).map_or_else(|| missing("no message sent"), v),
        Figure::Events(kind) => v(events.count(kind, since_ms) as f64),
        Figure::Replies => missing("replies are judged in a command step"),
        Figure::ProbeLatency(p) => match probe {
            Some(sum) => probe_pct(sum, *p).map_or_else(
                || missing("the probe measured no latency (no message, or no ts in them)"),
                v,
            ),
            None => missing("no probe window"),
        },
        Figure::ProbeLoss => match probe {
            Some(sum) => {
                let due =
                    sum.counts.received.saturating_sub(sum.counts.duplicates) + sum.counts.lost;
                with_base(sum.counts.lost as f64, due as f64)
            }
            None => missing("no probe window"),
        },
        Figure::ProbeDuplicates => probe.map_or_else(
            || missing("no probe window"),
            |p| v(p.counts.duplicates as f64),
        ),
        Figure::ProbeOutOfOrder => probe.map_or_else(
            || missing("no probe window"),
            |p| v(p.counts.out_of_order as f64),
        ),
        Figure::ProbeReceived => probe.map_or_else(
            || missing("no probe window"),
            |p| v(p.counts.received as f64),
        ),
    }
}

/// What `check` measured, with the other figure of `N% of FIGURE`.
pub fn measure(
    c: &Check,
    s: &Snapshot,
    events: &EventLog,
    since_ms: u64,
    probe: Option<&Summary>,
) -> Measured {
    let mut m = figure(&c.figure, s, events, since_ms, probe);
    if let super::check::Threshold::PercentOf(_, other) = &c.threshold {
        m.other = figure(other, s, events, since_ms, probe).value;
    }
    m
}
