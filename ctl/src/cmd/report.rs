//! `report`: per-fleet and per-agent figures for a run window, as JSON, CSV or tables.
//!
//! With `--window D` the agents' heartbeats are read now and again after D, and the report
//! holds what happened in between: counts, rates and latency percentiles of the window
//! (the later histograms minus the earlier ones). Without it, totals since each agent
//! started, rates averaged over the agents' uptime and cumulative percentiles.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Result};
use pluribus_common::messages::Heartbeat;
use serde::Serialize;

use super::Global;
use crate::figures::{micros, tabulate, Figures, Mode, Quantiles, Span, Table as Figs};
use crate::output::{print_json, rate, Table};
use crate::state::{live, load_agents};
use pluribus_client::netfigures::NetFigures;

/// A report for a run window.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this fleet.
    #[arg(value_name = "FLEET")]
    pub fleet: Option<String>,
    /// Report what happens over this long from now (default: totals since the agents started).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub window: Option<Duration>,
    /// Print CSV (one row per fleet and per agent) instead of tables.
    #[arg(long)]
    pub csv: bool,
}

/// The report (also what the dashboard's HTML report holds for its window).
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// Start of the window (Unix ms); the agents' start without `--window`.
    started_ms: Option<u64>,
    /// End (Unix ms).
    ended_ms: u64,
    /// `--window` in seconds, if given.
    window_s: Option<f64>,
    /// "window": figures of the window; "since agent start": totals.
    scope: &'static str,
    /// Live agents at the start that were gone at the end.
    agents_lost: Vec<String>,
    /// "since agent start" when the latency percentiles are cumulative although the
    /// counts are of a window (the dashboard's report); absent when they follow `scope`.
    #[serde(skip_serializing_if = "Option::is_none")]
    percentiles: Option<&'static str>,
    #[serde(flatten)]
    pub(crate) figures: Figs,
}

/// Runs `report`.
pub async fn run(g: &Global, args: Args) -> Result<()> {
    if args.window.is_some_and(|w| w.is_zero()) {
        bail!("--window must be longer than 0, e.g. 60s (or leave it out for totals)");
    }
    if g.json && args.csv {
        bail!("--csv and --json: pick one");
    }
    let ctx = g.open().await?;
    let first = load_agents(&ctx).await?;
    let start_ms = pluribus_common::time::now_ms();
    let (before, after, end_ms) = match args.window {
        Some(w) => {
            eprintln!(
                "report: sampling the agents now and in {}",
                crate::output::duration(w)
            );
            tokio::time::sleep(w).await;
            let after = load_agents(&ctx).await?;
            (Some(first), after, pluribus_common::time::now_ms())
        }
        None => (None, first, start_ms),
    };
    let report = build(
        before.as_deref(),
        &after,
        end_ms,
        args.fleet.as_deref(),
        args.window,
    );
    if g.json {
        print_json(&report)
    } else if args.csv {
        print!("{}", csv(&report.figures));
        Ok(())
    } else {
        print!("{}", text(&report));
        Ok(())
    }
}

/// The report of the window from heartbeats `before` (histograms not needed) to `after`,
/// with latency percentiles since each agent started: the dashboard's report.
pub(crate) fn window_with_cumulative_percentiles(
    before: &[Heartbeat],
    after: &[Heartbeat],
    start_ms: u64,
    end_ms: u64,
) -> Report {
    let window = Duration::from_millis(end_ms.saturating_sub(start_ms));
    let mut r = build(Some(before), after, end_ms, None, Some(window));
    // Without histograms in `before`, nothing is subtracted: the percentiles are cumulative.
    r.percentiles = Some("since agent start");
    r
}

/// The report from the heartbeats at the start (with `--window`) and at the end.
fn build(
    before: Option<&[Heartbeat]>,
    after: &[Heartbeat],
    end_ms: u64,
    only: Option<&str>,
    window: Option<Duration>,
) -> Report {
    let earlier: BTreeMap<&str, &Heartbeat> = before
        .unwrap_or_default()
        .iter()
        .map(|h| (h.id.as_str(), h))
        .collect();
    let live_now = live(after, end_ms);
    let spans: Vec<Span<'_>> = live_now
        .iter()
        .map(|h| Span {
            latest: h,
            earlier: earlier.get(h.id.as_str()).copied(),
        })
        .collect();
    let mode = Mode {
        reported_rates: false,
        span_percentiles: window.is_some(),
    };
    let start_ms = window.map(|w| end_ms.saturating_sub(w.as_millis() as u64));
    let agents_lost = before
        .map(|b| {
            live(b, start_ms.unwrap_or(end_ms))
                .into_iter()
                .filter(|h| !live_now.iter().any(|n| n.id == h.id))
                .map(|h| h.name.clone())
                .collect()
        })
        .unwrap_or_default();
    Report {
        started_ms: start_ms,
        ended_ms: end_ms,
        window_s: window.map(|w| w.as_secs_f64()),
        scope: if window.is_some() {
            "window"
        } else {
            "since agent start"
        },
        agents_lost,
        percentiles: None,
        figures: tabulate(&spans, only, mode),
    }
}

fn q(x: Option<Quantiles>, f: fn(&Quantiles) -> u64) -> String {
    x.map_or(String::new(), |q| f(&q).to_string())
}

const CSV_HEADER: &str = "scope,name,id,active,scheduled_per_s,messages,bytes,errors,msgs_per_s,bytes_per_s,tick_lag_p50_us,tick_lag_p90_us,tick_lag_p99_us,tick_lag_max_us,ack_latency_p50_us,ack_latency_p99_us,saturated,net_dropped,net_duplicated,net_delayed,net_reordered,net_corrupted,net_throttled,net_buffered,net_flushed,net_buffer_dropped,net_partitions_started,net_partitions_ended,net_disconnects,net_added_delay_p50_us,net_added_delay_p99_us";

/// The injected-fault columns of a row (empty without network rules).
fn net_columns(n: Option<&NetFigures>) -> String {
    let Some(n) = n else {
        return ",".repeat(13);
    };
    format!(
        "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
        n.dropped,
        n.duplicated,
        n.delayed,
        n.reordered,
        n.corrupted,
        n.throttled,
        n.buffered,
        n.flushed,
        n.buffer_dropped,
        n.partitions_started,
        n.partitions_ended,
        n.disconnects,
        q(n.added_delay_us, |q| q.p50),
        q(n.added_delay_us, |q| q.p99),
    )
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_row(scope: &str, name: &str, id: &str, f: &Figures) -> String {
    let field = csv_field;
    format!(
        "{scope},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
        field(name),
        field(id),
        f.devices,
        f.scheduled_per_s,
        f.messages.unwrap_or(0),
        f.bytes.unwrap_or(0),
        f.errors.unwrap_or(0),
        f.msgs_per_s,
        f.bytes_per_s,
        q(f.tick_lag_us, |q| q.p50),
        q(f.tick_lag_us, |q| q.p90),
        q(f.tick_lag_us, |q| q.p99),
        q(f.tick_lag_us, |q| q.max),
        q(f.ack_latency_us, |q| q.p50),
        q(f.ack_latency_us, |q| q.p99),
        f.saturated,
        net_columns(f.network.as_ref()),
    )
}

/// One header line, then a row per fleet and per agent.
pub(crate) fn csv(t: &Figs) -> String {
    let mut out = format!("{CSV_HEADER}\n");
    for r in &t.fleets {
        out.push_str(&csv_row("fleet", &r.name, "", &r.figures));
    }
    // Injected faults per cohort: name is the fleet, id the cohort; only the net_ columns.
    for r in &t.fleets {
        for (cohort, n) in r.figures.network.iter().flat_map(|n| &n.cohorts) {
            out.push_str(&format!(
                "cohort,{},{},{}{}\n",
                csv_field(&r.name),
                csv_field(cohort),
                ",".repeat(14),
                net_columns(Some(n))
            ));
        }
    }
    for a in &t.agents {
        out.push_str(&csv_row("agent", &a.name, &a.id, &a.figures));
    }
    out
}

fn text(r: &Report) -> String {
    let head = match r.window_s {
        Some(w) => {
            format!("report over a {w:.0}s window (counts, rates and percentiles of the window)\n")
        }
        None => "report since each agent started (totals, average rates, cumulative percentiles)\n"
            .into(),
    };
    // Within 100 columns: one column per latency (p50/p99), ACK only when some row has
    // acknowledgements.
    let all = || {
        let agents = r.figures.agents.iter().map(|a| &a.figures);
        r.figures.fleets.iter().map(|f| &f.figures).chain(agents)
    };
    let ack = all().any(|f| f.ack_latency_us.is_some());
    let mut cols = vec![
        "SCOPE",
        "NAME",
        "ACTIVE",
        "SCHED/S",
        "MESSAGES",
        "MSGS/S",
        "BYTES/S",
        "ERRORS",
        "LAG P50/P99",
    ];
    if ack {
        cols.push("ACK P50/P99");
    }
    cols.push("");
    let mut t = Table::new(&cols);
    let lat = |x: Option<Quantiles>| {
        x.map_or("-".into(), |q| {
            format!("{}/{}", micros(q.p50), micros(q.p99))
        })
    };
    let mut row = |scope: &str, name: &str, f: &Figures| {
        let mut cells = vec![
            scope.into(),
            name.into(),
            f.devices.to_string(),
            rate(f.scheduled_per_s),
            f.messages.unwrap_or(0).to_string(),
            rate(f.msgs_per_s),
            rate(f.bytes_per_s),
            f.errors.unwrap_or(0).to_string(),
            lat(f.tick_lag_us),
        ];
        if ack {
            cells.push(lat(f.ack_latency_us));
        }
        cells.push(if f.saturated { "SATURATED" } else { "" }.into());
        t.row(cells);
    };
    for f in &r.figures.fleets {
        row("fleet", &f.name, &f.figures);
    }
    for a in &r.figures.agents {
        row("agent", &a.name, &a.figures);
    }
    let mut out = head + &t.render();
    for f in &r.figures.fleets {
        if let Some(n) = &f.figures.network {
            out.push_str(&n.lines(&f.name));
        }
    }
    if !r.agents_lost.is_empty() {
        out.push_str(&format!(
            "agents gone during the window (not counted): {}\n",
            r.agents_lost.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::fixtures::hb;
    use pluribus_common::messages::FleetCounters;

    fn with(h: &Heartbeat, ts_ms: u64, messages: u64) -> Heartbeat {
        let mut h = h.clone();
        h.ts_ms = ts_ms;
        h.fleets.insert(
            "f".into(),
            FleetCounters {
                devices: 10,
                messages,
                bytes: messages * 10,
                ..Default::default()
            },
        );
        h
    }

    #[test]
    fn a_window_reports_deltas_and_names_lost_agents() {
        let a = hb("a", 10, None);
        let gone = hb("g", 1, None);
        let before = vec![with(&a, 100_000, 1_000), with(&gone, 100_000, 5)];
        let after = vec![with(&a, 110_000, 3_000)];
        let r = build(
            Some(&before),
            &after,
            110_500,
            None,
            Some(Duration::from_secs(10)),
        );
        let f = &r.figures.fleets[0].figures;
        assert_eq!(
            (f.messages, f.msgs_per_s, f.bytes),
            (Some(2_000), 200.0, Some(20_000))
        );
        assert_eq!(r.agents_lost, ["n-g"]);
        assert_eq!(r.scope, "window");
        let csv = csv(&r.figures);
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some(CSV_HEADER));
        assert!(lines
            .next()
            .is_some_and(|l| l.starts_with("fleet,f,,10,0,2000,20000,0,200,2000,")));
        assert!(lines
            .next()
            .is_some_and(|l| l.starts_with("agent,n-a,a,10,")));
    }

    #[test]
    fn without_a_window_totals_since_start() {
        let mut a = with(&hb("a", 10, None), 100_000, 5_000);
        a.uptime_s = 50;
        let r = build(None, &[a], 100_500, Some("f"), None);
        let f = &r.figures.fleets[0].figures;
        assert_eq!((f.messages, f.msgs_per_s), (Some(5_000), 100.0));
        assert_eq!(r.scope, "since agent start");
        assert!(text(&r).contains("since each agent started"));
    }
}
