//! A self-contained HTML report of a time window: charts drawn as inline SVG, the tables
//! and events of the window, and the data as JSON inside the file. Opens offline.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use super::history::{Point, CLUSTER};
use super::hub::Shared;
use super::model::Model;
use crate::cmd::report::{csv, window_with_cumulative_percentiles, Report};

/// Most fleets charted in one report (the busiest); the others are in the tables.
const MAX_FLEET_CHARTS: usize = 40;

/// The report's data (also embedded in the HTML).
#[derive(Debug, Serialize)]
pub struct ReportData {
    /// Start of the window (Unix ms).
    pub from_ms: u64,
    /// End of the window (Unix ms).
    pub to_ms: u64,
    /// Cluster-wide points.
    pub cluster: Vec<Point>,
    /// Points per fleet.
    pub fleets: Vec<(String, Vec<Point>)>,
    /// Events of the window, as `pluribusctl events` prints them.
    pub events: Vec<String>,
    /// The window's figures as `pluribusctl report --window --json` gives them (none until
    /// the dashboard has seen heartbeats).
    pub report: Option<Report>,
    /// The same as `pluribusctl report --csv` prints them.
    pub csv: String,
}

/// The data of the last `window`.
pub fn data(shared: &Shared, now_ms: u64, window: Duration) -> ReportData {
    let from_ms = now_ms.saturating_sub(window.as_millis() as u64);
    let (cluster, fleets) = match shared.history.read() {
        Ok(h) => (
            h.points(CLUSTER, from_ms),
            h.fleets(from_ms)
                .into_iter()
                .map(|f| {
                    let p = h.points(&f, from_ms);
                    (f, p)
                })
                .collect(),
        ),
        Err(_) => (Vec::new(), Vec::new()),
    };
    let events = match shared.events.read() {
        Ok(log) => log
            .all()
            .filter(|e| e.ts_ms >= from_ms)
            .map(|e| e.text.clone())
            .collect(),
        Err(_) => Vec::new(),
    };
    let latest = shared
        .beats
        .read()
        .map(|b| b.latest_with_histograms())
        .unwrap_or_default();
    let report = shared.anchors.read().ok().and_then(|a| {
        let (start_ms, before) = a.at(from_ms)?;
        Some(window_with_cumulative_percentiles(
            &before, &latest, start_ms, now_ms,
        ))
    });
    let csv = report.as_ref().map(|r| csv(&r.figures)).unwrap_or_default();
    ReportData {
        from_ms,
        to_ms: now_ms,
        cluster,
        fleets,
        events,
        report,
        csv,
    }
}

/// HTML-escapes `s`.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn when(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// One line of a chart: label, colour, the value of a point.
type Line<'a> = (&'a str, &'a str, fn(&Point) -> Option<f32>);

/// One line chart as SVG.
fn chart(title: &str, points: &[Point], series: &[Line<'_>]) -> String {
    let (w, h, pad) = (560.0f32, 160.0f32, 30.0f32);
    let max = points
        .iter()
        .flat_map(|p| series.iter().filter_map(move |s| (s.2)(p)))
        .fold(0.0f32, f32::max)
        .max(1e-9);
    let (t0, t1) = match (points.first(), points.last()) {
        (Some(a), Some(b)) => (a.ts_ms, b.ts_ms.max(a.ts_ms + 1)),
        _ => (0, 1),
    };
    let mut svg = format!(
        r##"<figure><figcaption>{}</figcaption><svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg"><rect width="{w}" height="{h}" fill="#fff" stroke="#ccc"/><text x="4" y="12" font-size="10">{}</text>"##,
        esc(title),
        fmt_num(max)
    );
    for (label, colour, get) in series {
        let mut d = String::new();
        for p in points {
            if let Some(v) = get(p) {
                let x = pad + (p.ts_ms - t0) as f32 / (t1 - t0) as f32 * (w - pad - 4.0);
                let y = h - 14.0 - v / max * (h - 30.0);
                let _ = write!(d, "{}{x:.1},{y:.1} ", if d.is_empty() { "M" } else { "L" });
            }
        }
        let _ = write!(
            svg,
            r#"<path d="{d}" fill="none" stroke="{colour}" stroke-width="1.5"><title>{label}</title></path>"#
        );
    }
    let mut x = pad;
    for (label, colour, _) in series {
        let _ = write!(
            svg,
            r#"<text x="{x}" y="{}" font-size="10" fill="{colour}">{label}</text>"#,
            h - 3.0
        );
        x += 90.0;
    }
    svg.push_str("</svg></figure>");
    svg
}

fn fmt_num(v: f32) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.1}")
    }
}

/// The four charts of one series.
fn charts(name: &str, p: &[Point]) -> String {
    [
        chart(
            &format!("{name}: msg/s scheduled vs achieved"),
            p,
            &[
                ("scheduled", "#888", |p| Some(p.scheduled)),
                ("achieved", "#1565c0", |p| Some(p.achieved)),
            ],
        ),
        chart(
            &format!("{name}: tick lag (µs)"),
            p,
            &[
                ("p50", "#2e7d32", |p| p.lag_p50),
                ("p99", "#c62828", |p| p.lag_p99),
            ],
        ),
        chart(
            &format!("{name}: ack latency (µs)"),
            p,
            &[
                ("p50", "#2e7d32", |p| p.ack_p50),
                ("p99", "#c62828", |p| p.ack_p99),
            ],
        ),
        chart(
            &format!("{name}: connections"),
            p,
            &[
                ("connected", "#1565c0", |p| Some(p.connected as f32)),
                ("failures/s", "#c62828", |p| Some(p.connect_failures)),
                ("errors/s", "#ef6c00", |p| Some(p.errors)),
            ],
        ),
        chart(
            &format!("{name}: injected faults"),
            p,
            &[
                ("dropped/s", "#c62828", |p| Some(p.dropped)),
                ("delayed/s", "#ef6c00", |p| Some(p.delayed)),
                ("duplicated/s", "#6a1b9a", |p| Some(p.duplicated)),
                ("offline", "#455a64", |p| Some(p.offline as f32)),
            ],
        ),
    ]
    .concat()
}

/// The window's figures (`pluribusctl report --window`): a table per fleet and agent, and
/// the CSV.
fn window_table(out: &mut String, d: &ReportData) {
    let Some(r) = &d.report else {
        out.push_str("<h2 id=\"window\">Window figures</h2><p>No heartbeats seen yet.</p>");
        return;
    };
    let json = serde_json::to_value(r).unwrap_or_default();
    let started = json["started_ms"].as_u64().unwrap_or(d.from_ms);
    let _ = write!(
        out,
        r#"<h2 id="window">Window figures</h2><p>As <code>pluribusctl report --window</code> gives them, from {} to {} (counts and rates of the window; latency percentiles since each agent started). Injected: faults the network impairments caused on purpose.</p><table id="pluribus-window"><tr><th>scope</th><th>name</th><th>devices</th><th>messages</th><th>errors</th><th>msg/s</th><th>bytes/s</th><th>lag p50 µs</th><th>lag p99 µs</th><th>ack p50 µs</th><th>ack p99 µs</th><th>injected</th></tr>"#,
        when(started),
        when(d.to_ms)
    );
    let q = |x: Option<crate::figures::Quantiles>, p99: bool| {
        x.map_or(String::new(), |q| {
            if p99 { q.p99 } else { q.p50 }.to_string()
        })
    };
    let rows = r
        .figures
        .fleets
        .iter()
        .map(|f| ("fleet", &f.name, &f.figures))
        .chain(
            r.figures
                .agents
                .iter()
                .map(|a| ("agent", &a.name, &a.figures)),
        );
    for (scope, name, f) in rows {
        let _ = write!(
            out,
            r#"<tr data-{scope}="{n}"><td>{scope}</td><td>{n}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            f.devices,
            f.messages.unwrap_or(0),
            f.errors.unwrap_or(0),
            f.msgs_per_s,
            f.bytes_per_s,
            q(f.tick_lag_us, false),
            q(f.tick_lag_us, true),
            q(f.ack_latency_us, false),
            q(f.ack_latency_us, true),
            esc(&f.network.as_ref().map(|n| n.describe()).unwrap_or_default()),
            n = esc(name),
        );
    }
    out.push_str("</table><p>The same as <code>pluribusctl report --csv</code>:</p><pre id=\"pluribus-csv\">");
    out.push_str(&esc(&d.csv));
    out.push_str("</pre>");
}

/// The whole HTML file.
pub fn html(d: &ReportData, model: &Model) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Pluribus report {from} to {to}</title><style>body{{font:13px sans-serif;margin:1em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}th{{background:#eee}}td:first-child{{text-align:left}}figure{{display:inline-block;margin:4px}}figcaption{{font-weight:bold}}pre{{background:#f6f6f6;padding:6px;max-height:30em;overflow:auto}}</style></head><body><h1>Pluribus report</h1><p>{from} to {to} (UTC). Latency percentiles are cumulative since each agent started, as in <code>pluribusctl watch</code>; for the percentiles of a window alone use <code>pluribusctl report --window</code>.</p>"#,
        from = when(d.from_ms),
        to = when(d.to_ms)
    );
    out.push_str("<h2>Cluster</h2>");
    out.push_str(&charts("cluster", &d.cluster));
    out.push_str("<h2>Fleets</h2><table><tr><th>fleet</th><th>sink</th><th>desired</th><th>running</th><th>pending</th><th>msg/s</th><th>scheduled/s</th><th>errors</th><th>lag p50 µs</th><th>lag p99 µs</th><th>load</th><th>reason</th></tr>");
    for f in &model.fleets {
        let fig = f.figures.clone().unwrap_or_default();
        let q = |x: Option<crate::figures::Quantiles>, p99: bool| {
            x.map_or(String::new(), |q| {
                if p99 { q.p99 } else { q.p50 }.to_string()
            })
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&f.status.name),
            esc(&f.sink),
            f.status.desired,
            f.status.running,
            f.status.pending,
            fig.msgs_per_s,
            fig.scheduled_per_s,
            fig.errors_total,
            q(fig.tick_lag_us, false),
            q(fig.tick_lag_us, true),
            esc(f.status.load.as_deref().unwrap_or("")),
            esc(f.status.reason.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</table><h2>Agents</h2><table><tr><th>agent</th><th>id</th><th>alive</th><th>devices</th><th>msg/s</th><th>saturated</th><th>draining</th><th>version</th></tr>");
    for a in &model.agents {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&a.row.name),
            esc(&a.row.id),
            a.row.alive,
            a.row.devices,
            a.msgs_per_s,
            a.row.saturated,
            a.row.draining,
            esc(&a.row.version)
        );
    }
    out.push_str("</table>");
    window_table(&mut out, d);
    let mut busiest: Vec<&(String, Vec<Point>)> = d.fleets.iter().collect();
    busiest.sort_by(|a, b| {
        let sum = |p: &[Point]| p.iter().map(|p| p.achieved as f64).sum::<f64>();
        sum(&b.1).total_cmp(&sum(&a.1))
    });
    for (name, points) in busiest.into_iter().take(MAX_FLEET_CHARTS) {
        let _ = write!(out, "<h3>Fleet {}</h3>", esc(name));
        out.push_str(&charts(name, points));
    }
    out.push_str("<h2>Events</h2><pre>");
    for e in &d.events {
        out.push_str(&esc(e));
        out.push('\n');
    }
    out.push_str("</pre><h2>Data</h2><p>The points above as JSON (one per second per series):</p><script type=\"application/json\" id=\"pluribus-data\">");
    // `</` cannot end the script element early once escaped.
    let json = serde_json::to_string(d)
        .unwrap_or_default()
        .replace("</", "<\\/");
    out.push_str(&json);
    out.push_str("</script></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_is_self_contained_and_escaped() {
        let p = |ts_ms, achieved| Point {
            ts_ms,
            achieved,
            scheduled: 10.0,
            ..Default::default()
        };
        let d = ReportData {
            from_ms: 0,
            to_ms: 2_000,
            cluster: vec![p(1_000, 5.0), p(2_000, 10.0)],
            fleets: vec![("f<1>".into(), vec![p(1_000, 5.0)])],
            events: vec!["a </script> b".into()],
            report: None,
            csv: String::new(),
        };
        let html = html(&d, &Model::default());
        assert!(
            html.contains("<svg") && html.contains("<path d=\"M"),
            "charts inline"
        );
        assert!(
            !html.contains("src=\"http") && !html.contains("href=\"http"),
            "nothing fetched"
        );
        assert!(html.contains("Fleet f&lt;1&gt;"));
        assert_eq!(
            html.matches("</script>").count(),
            1,
            "the data cannot close its script"
        );
    }
}
