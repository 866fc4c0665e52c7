//! What one page is sent once a second: totals, the cluster's (and one fleet's) latest
//! chart point, one page of agents and of fleets, and the events it has not seen.

use serde::{Deserialize, Serialize};

use super::access::Access;
use super::eventlog::Entry;
use super::history::{Point, CLUSTER};
use super::hub::Shared;
use super::model::{AgentView, FleetView, Model};
use super::scenarios::Scenarios;

/// Rows per page of the agents and fleets tables.
pub const PAGE: usize = 25;

/// Most events in one frame.
pub const EVENTS_PER_FRAME: usize = 200;

/// What a page looks at (query string of `/api/stream` and `/api/frame`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct View {
    /// Page of the fleets table (from 0).
    pub fpage: usize,
    /// Page of the agents table (from 0).
    pub apage: usize,
    /// Page of the Scenarios section's runs (from 0, newest first).
    pub spage: usize,
    /// Only fleets whose name contains this.
    pub q: String,
    /// The fleet whose chart is open.
    pub chart: Option<String>,
    /// Events numbered above this are new to the page.
    pub after: u64,
}

/// One page of a table.
#[derive(Debug, Serialize)]
pub struct Page<'a, T> {
    /// Rows in all (after filtering).
    pub total: usize,
    /// This page (from 0).
    pub page: usize,
    /// Pages in all.
    pub pages: usize,
    /// The rows of this page.
    pub rows: Vec<&'a T>,
}

fn page<'a, T>(all: impl Iterator<Item = &'a T>, want: usize) -> Page<'a, T> {
    let all: Vec<&T> = all.collect();
    let pages = all.len().div_ceil(PAGE).max(1);
    let page = want.min(pages - 1);
    Page {
        total: all.len(),
        page,
        pages,
        rows: all.into_iter().skip(page * PAGE).take(PAGE).collect(),
    }
}

/// Totals for the header.
#[derive(Debug, Serialize)]
pub struct Totals {
    /// Agents alive.
    pub agents_alive: usize,
    /// Fleets.
    pub fleets: usize,
    /// Devices desired, over every fleet.
    pub desired: u64,
    /// Devices running.
    pub running: u64,
    /// Saturated live agents.
    pub saturated: usize,
}

/// One frame.
#[derive(Debug, Serialize)]
pub struct Frame<'a> {
    /// When the model was built.
    pub ts_ms: u64,
    /// Whether controls are allowed.
    pub access: Access,
    /// Header figures.
    pub totals: Totals,
    /// The cluster's latest chart point.
    pub cluster: Option<Point>,
    /// The open fleet chart's latest point.
    pub chart: Option<Point>,
    /// One page of agents.
    pub agents: Page<'a, AgentView>,
    /// One page of fleets.
    pub fleets: Page<'a, FleetView>,
    /// Events new to the page.
    pub events: Vec<Entry>,
    /// The number of the last event, for the next `after`.
    pub last_event: u64,
    /// One page of detached scenario runs (the most recent first), with their checks.
    pub scenarios: Scenarios,
}

/// The frame of `view` from `model`.
pub fn build<'a>(shared: &Shared, model: &'a Model, view: &View) -> Frame<'a> {
    let (cluster, chart) = match shared.history.read() {
        Ok(h) => (
            h.last(CLUSTER),
            view.chart.as_deref().and_then(|c| h.last(c)),
        ),
        Err(_) => (None, None),
    };
    let (events, last_event) = match shared.events.read() {
        Ok(log) => (
            log.since(view.after, EVENTS_PER_FRAME)
                .into_iter()
                .map(|e| (*e).clone())
                .collect(),
            log.last_seq(),
        ),
        Err(_) => (Vec::new(), view.after),
    };
    let access = shared
        .access
        .read()
        .map(|a| a.clone())
        .unwrap_or_else(|_| Access::read_only("read-only: internal error"));
    let scenarios = shared
        .scenarios
        .read()
        .map(|b| b.view(view.spage))
        .unwrap_or_default();
    let q = view.q.trim();
    Frame {
        ts_ms: model.ts_ms,
        access,
        totals: Totals {
            agents_alive: model.agents.iter().filter(|a| a.row.alive).count(),
            fleets: model.fleets.len(),
            desired: model.fleets.iter().map(|f| f.status.desired).sum(),
            running: model.fleets.iter().map(|f| f.status.running).sum(),
            saturated: model
                .agents
                .iter()
                .filter(|a| a.row.alive && a.row.saturated)
                .count(),
        },
        cluster,
        chart,
        agents: page(model.agents.iter(), view.apage),
        fleets: page(
            model
                .fleets
                .iter()
                .filter(|f| q.is_empty() || f.status.name.contains(q)),
            view.fpage,
        ),
        events,
        last_event,
        scenarios,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_bounded() {
        let rows: Vec<u32> = (0..60).collect();
        let p = page(rows.iter(), 1);
        assert_eq!((p.total, p.page, p.pages, p.rows.len()), (60, 1, 3, 25));
        let p = page(rows.iter(), 99);
        assert_eq!((p.page, p.rows.len(), *p.rows[0]), (2, 10, 50));
        let none: Vec<u32> = Vec::new();
        let p = page(none.iter(), 3);
        assert_eq!((p.total, p.page, p.pages), (0, 0, 1));
    }
}
