//! What the agents' network impairments injected while a probe listened, so that its
//! report tells the faults Pluribus caused on purpose from those of the system under test.
//! Best effort: a probe of an MQTT broker may run where NATS is not reachable, and then
//! reports without it.

use std::collections::BTreeMap;
use std::time::Duration;

use pluribus_common::messages::Heartbeat;
use serde::Serialize;

use crate::figures::{tabulate, Mode, Span};
use crate::netfigures::NetFigures;
use crate::probe::summary::Summary;
use crate::state::load_agents;
use crate::Ctx;

/// How long the probe waits for NATS before it reports without injected figures.
const NATS_WAIT: Duration = Duration::from_secs(3);

/// The agents' heartbeats when the probe started.
pub struct Before {
    ctx: Ctx,
    agents: Vec<Heartbeat>,
}

/// One fleet's injected faults next to what the probe saw.
#[derive(Debug, Clone, Serialize)]
pub struct Injected {
    /// What the agents injected during the probe.
    #[serde(flatten)]
    pub figures: NetFigures,
    /// Lost messages the probe counted beyond those dropped (or lost from offline
    /// buffers) on purpose. Approximate: the agents' counters come from their heartbeats
    /// at the probe's start and end, a heartbeat interval apart from its window.
    pub lost_beyond_injected: u64,
}

/// Reads the heartbeats now, if NATS answers soon (`open` connects).
pub async fn before(
    open: impl std::future::Future<Output = anyhow::Result<Ctx>>,
) -> Option<Before> {
    let ctx = tokio::time::timeout(NATS_WAIT, open).await.ok()?.ok()?;
    let agents = tokio::time::timeout(NATS_WAIT, load_agents(&ctx))
        .await
        .ok()?
        .ok()?;
    Some(Before { ctx, agents })
}

/// What the agents injected since `before`, for the fleets the probe saw.
pub async fn since(before: Option<Before>, summary: &Summary) -> BTreeMap<String, Injected> {
    let mut out = BTreeMap::new();
    let Some(b) = before else {
        return out;
    };
    let Ok(Ok(after)) = tokio::time::timeout(NATS_WAIT, load_agents(&b.ctx)).await else {
        return out;
    };
    let spans: Vec<Span<'_>> = after
        .iter()
        .map(|h| Span {
            latest: h,
            earlier: b.agents.iter().find(|e| e.id == h.id),
        })
        .collect();
    let mode = Mode {
        reported_rates: false,
        span_percentiles: true,
    };
    for f in tabulate(&spans, None, mode).fleets {
        let (Some(seen), Some(net)) = (summary.fleets.get(&f.name), f.figures.network) else {
            continue;
        };
        let on_purpose = net.dropped + net.buffer_dropped;
        out.insert(
            f.name,
            Injected {
                lost_beyond_injected: seen.counts.lost.saturating_sub(on_purpose),
                figures: net,
            },
        );
    }
    out
}

/// Lines for the text report.
pub fn render(injected: &BTreeMap<String, Injected>) -> String {
    let mut out = String::new();
    for (fleet, i) in injected {
        out.push_str(&format!(
            "fleet {fleet}: the agents injected {}; lost beyond that: {}\n",
            i.figures.describe(),
            i.lost_beyond_injected
        ));
    }
    out
}
