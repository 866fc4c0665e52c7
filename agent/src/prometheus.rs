//! `/metrics` in the Prometheus text format (`--metrics-listen ADDR`).
//!
//! Every series has the labels `agent` (the agent's name) and, per fleet, `fleet`. Counters
//! are cumulative since the agent started; tick lag and acknowledgement latency are
//! summaries (quantiles 0.5, 0.9 and 0.99 in seconds, over everything since the start).
//! The exposition is written by hand: it is a few lines of text per fleet.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use pluribus_common::hist::Hist;
use pluribus_common::messages::{FleetCounters, NetworkCounters};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;

/// The content type of the text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Binds the exporter's address; an error says which flag to change.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot serve Prometheus metrics on {addr} (--metrics-listen): {e}: pick a free address, or leave the flag out"
        )
    })
}

/// Serves `/metrics` on `listener` until `token` is cancelled.
pub fn spawn(
    listener: TcpListener,
    metrics: Metrics,
    agent: String,
    token: CancellationToken,
    tracker: &TaskTracker,
) {
    let conns = tracker.clone();
    tracker.spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = token.cancelled() => break,
                r = listener.accept() => match r {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::debug!(error = %e, "metrics accept failed");
                        continue;
                    }
                },
            };
            let (metrics, agent, token) = (metrics.clone(), agent.clone(), token.clone());
            conns.spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let (metrics, agent) = (metrics.clone(), agent.clone());
                    async move { Ok::<_, std::convert::Infallible>(respond(&req, &metrics, &agent)) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc);
                // A scraper keeps its connection open: do not let it hold up shutdown.
                tokio::select! {
                    _ = token.cancelled() => {}
                    r = conn => if let Err(e) = r {
                        tracing::debug!(error = %e, "metrics connection ended");
                    },
                }
            });
        }
    });
}

fn respond(req: &Request<Incoming>, metrics: &Metrics, agent: &str) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match req.uri().path() {
        "/metrics" => (
            StatusCode::OK,
            CONTENT_TYPE,
            render(agent, &metrics.counters()),
        ),
        "/" => (
            StatusCode::OK,
            "text/plain",
            "pluribus-agent: metrics at /metrics\n".to_string(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: metrics are at /metrics\n".to_string(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

/// A value of one fleet's counters.
type Getter = fn(&FleetCounters) -> f64;

/// Per-fleet series: name, type, help, value.
const SERIES: &[(&str, &str, &str, Getter)] = &[
    (
        "pluribus_active_devices",
        "gauge",
        "Devices of the fleet active on this agent: started and running now (what `agents` and `status` call active).",
        |c| c.devices as f64,
    ),
    (
        "pluribus_devices",
        "gauge",
        "Deprecated: use pluribus_active_devices (the same value); will be removed.",
        |c| c.devices as f64,
    ),
    (
        "pluribus_messages_total",
        "counter",
        "Telemetry messages sent.",
        |c| c.messages as f64,
    ),
    (
        "pluribus_bytes_total",
        "counter",
        "Payload bytes sent.",
        |c| c.bytes as f64,
    ),
    ("pluribus_errors_total", "counter", "Send errors.", |c| {
        c.errors as f64
    }),
    (
        "pluribus_scheduled_messages_per_second",
        "gauge",
        "Messages per second the schedule asks of this agent.",
        |c| c.scheduled_per_s,
    ),
    (
        "pluribus_achieved_messages_per_second",
        "gauge",
        "Messages per second sent over the last heartbeat interval.",
        |c| c.achieved_per_s,
    ),
    (
        "pluribus_saturated",
        "gauge",
        "1 when the agent falls behind the fleet's schedule (the generator is the bottleneck).",
        |c| f64::from(u8::from(c.saturated)),
    ),
    (
        "pluribus_connected",
        "gauge",
        "Devices with a live connection (what `status` calls connected).",
        |c| c.connected as f64,
    ),
    (
        "pluribus_connecting",
        "gauge",
        "Devices connecting now.",
        |c| c.connecting as f64,
    ),
    (
        "pluribus_disconnects_total",
        "counter",
        "Connections lost after they were up.",
        |c| c.disconnects as f64,
    ),
    (
        "pluribus_reconnects_total",
        "counter",
        "Connections made again after a loss.",
        |c| c.reconnects as f64,
    ),
    (
        "pluribus_publish_failed_total",
        "counter",
        "Publishes that failed.",
        |c| c.publish_failed as f64,
    ),
    (
        "pluribus_commands_total",
        "counter",
        "Commands received by devices.",
        |c| c.commands as f64,
    ),
    (
        "pluribus_commands_refused_total",
        "counter",
        "Commands refused because their queue was full.",
        |c| c.commands_refused as f64,
    ),
    (
        "pluribus_received_total",
        "counter",
        "Messages received by subscriber devices.",
        |c| c.received as f64,
    ),
];

/// A value of one cohort's injected faults.
type NetGetter = fn(&NetworkCounters) -> f64;

/// Per-fleet, per-cohort counters of injected faults: name, help, value. The `cohort`
/// label is the cohort's rule text (`10%`, `0..100`, `zone=eu`), `none` for devices no
/// cohort's rule applies to; the cohorts of a fleet add up to its total.
const NET_SERIES: &[(&str, &str, NetGetter)] = &[
    (
        "pluribus_network_dropped_total",
        "Messages the network impairments dropped on purpose.",
        |n| n.dropped as f64,
    ),
    (
        "pluribus_network_duplicated_total",
        "Messages the network impairments sent twice on purpose.",
        |n| n.duplicated as f64,
    ),
    (
        "pluribus_network_delayed_total",
        "Messages the network impairments delayed on purpose.",
        |n| n.delayed as f64,
    ),
    (
        "pluribus_network_reordered_total",
        "Messages the network impairments held back behind later ones.",
        |n| n.reordered as f64,
    ),
    (
        "pluribus_network_corrupted_total",
        "Payloads the network impairments mangled on purpose.",
        |n| n.corrupted as f64,
    ),
    (
        "pluribus_network_throttled_total",
        "Messages that waited for a network bandwidth cap.",
        |n| n.throttled as f64,
    ),
    (
        "pluribus_network_buffered_total",
        "Messages kept by offline (partitioned) devices.",
        |n| n.buffered as f64,
    ),
    (
        "pluribus_network_flushed_total",
        "Buffered messages sent when their device came back.",
        |n| n.flushed as f64,
    ),
    (
        "pluribus_network_buffer_dropped_total",
        "Messages offline devices lost (full buffer, or stopped while offline).",
        |n| n.buffer_dropped as f64,
    ),
    (
        "pluribus_network_partitions_started_total",
        "Devices that went offline.",
        |n| n.partitions_started as f64,
    ),
    (
        "pluribus_network_partitions_ended_total",
        "Devices that came back from offline.",
        |n| n.partitions_ended as f64,
    ),
    (
        "pluribus_network_disconnects_total",
        "Device connections the network impairments closed or stalled (partitions, flapping).",
        |n| n.disconnects as f64,
    ),
];

/// Summaries: name, help, histogram (in µs).
type HistGetter = fn(&FleetCounters) -> Option<&Hist>;
const SUMMARIES: &[(&str, &str, HistGetter)] = &[
    (
        "pluribus_tick_lag_seconds",
        "Lateness of telemetry slots (send time minus scheduled time), since the agent started.",
        |c| c.tick_lag_us.as_ref(),
    ),
    (
        "pluribus_ack_latency_seconds",
        "Acknowledgement (or HTTP response) latency, since the agent started.",
        |c| c.ack_latency_us.as_ref(),
    ),
    (
        "pluribus_receive_latency_seconds",
        "End-to-end latency of messages received by subscriber devices, since the agent started.",
        |c| c.receive_latency_us.as_ref(),
    ),
];

/// Escapes a label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition of `fleets` on agent `agent`.
pub fn render(agent: &str, fleets: &BTreeMap<String, FleetCounters>) -> String {
    let agent = label(agent);
    let mut out = String::new();
    let saturated = fleets.values().any(|c| c.saturated);
    let _ = writeln!(
        out,
        "# HELP pluribus_agent_saturated 1 when some fleet falls behind its schedule on this agent.\n\
         # TYPE pluribus_agent_saturated gauge\n\
         pluribus_agent_saturated{{agent=\"{agent}\"}} {}",
        u8::from(saturated)
    );
    for (name, kind, help, get) in SERIES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (fleet, c) in fleets {
            let _ = writeln!(
                out,
                "{name}{{agent=\"{agent}\",fleet=\"{}\"}} {}",
                label(fleet),
                get(c)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP pluribus_connect_failures_total Failed connection attempts, by reason.\n\
         # TYPE pluribus_connect_failures_total counter"
    );
    for (fleet, c) in fleets {
        for (reason, n) in &c.connect_failures {
            let _ = writeln!(
                out,
                "pluribus_connect_failures_total{{agent=\"{agent}\",fleet=\"{}\",reason=\"{}\"}} {n}",
                label(fleet),
                label(reason)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP pluribus_responses_total Responses by class (HTTP sink: 2xx, 4xx...; FIX sink: exec_report, reject, business_reject, seq_gap).\n\
         # TYPE pluribus_responses_total counter"
    );
    for (fleet, c) in fleets {
        for (class, n) in &c.responses {
            let _ = writeln!(
                out,
                "pluribus_responses_total{{agent=\"{agent}\",fleet=\"{}\",class=\"{}\"}} {n}",
                label(fleet),
                label(class)
            );
        }
    }
    for (name, help, get) in SUMMARIES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} summary");
        for (fleet, c) in fleets {
            let Some(h) = get(c) else { continue };
            let labels = format!("agent=\"{agent}\",fleet=\"{}\"", label(fleet));
            summary(&mut out, name, &labels, h);
        }
    }
    for (name, help, get) in NET_SERIES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (fleet, c) in fleets {
            for (cohort, n) in &c.network_cohorts {
                let _ = writeln!(
                    out,
                    "{name}{{agent=\"{agent}\",fleet=\"{}\",cohort=\"{}\"}} {}",
                    label(fleet),
                    label(cohort),
                    get(n)
                );
            }
        }
    }
    let name = "pluribus_network_added_delay_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Delay added by the network impairments to delayed messages, since the agent started.\n# TYPE {name} summary"
    );
    for (fleet, c) in fleets {
        for (cohort, n) in &c.network_cohorts {
            let Some(h) = &n.added_delay_us else { continue };
            let labels = format!(
                "agent=\"{agent}\",fleet=\"{}\",cohort=\"{}\"",
                label(fleet),
                label(cohort)
            );
            summary(&mut out, name, &labels, h);
        }
    }
    out
}

/// The lines of one summary (quantiles in seconds, sum, count) of a histogram in µs.
fn summary(out: &mut String, name: &str, labels: &str, h: &Hist) {
    for q in [0.5, 0.9, 0.99] {
        let _ = writeln!(
            out,
            "{name}{{{labels},quantile=\"{q}\"}} {}",
            h.quantile(q) as f64 / 1e6
        );
    }
    let sum_s = h.inner().mean() * h.count() as f64 / 1e6;
    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum_s}");
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_summaries_have_fleet_and_agent_labels() {
        let mut lag = Hist::new();
        (1..=100).for_each(|v| lag.record(v * 1000));
        let c = FleetCounters {
            devices: 3,
            messages: 42,
            tick_lag_us: Some(lag),
            saturated: true,
            ..Default::default()
        };
        let text = render("a\"1", &[("f1".to_string(), c)].into_iter().collect());
        assert!(text.contains("pluribus_messages_total{agent=\"a\\\"1\",fleet=\"f1\"} 42\n"));
        assert!(text.contains("pluribus_active_devices{agent=\"a\\\"1\",fleet=\"f1\"} 3\n"));
        assert!(text.contains("# HELP pluribus_devices Deprecated: use pluribus_active_devices"));
        assert!(text.contains("# TYPE pluribus_messages_total counter\n"));
        assert!(text.contains("pluribus_agent_saturated{agent=\"a\\\"1\"} 1\n"));
        assert!(text.contains(
            "pluribus_tick_lag_seconds{agent=\"a\\\"1\",fleet=\"f1\",quantile=\"0.5\"} 0.05"
        ));
        assert!(
            text.contains("pluribus_tick_lag_seconds_count{agent=\"a\\\"1\",fleet=\"f1\"} 100\n")
        );
        assert!(
            !text.contains("pluribus_ack_latency_seconds{"),
            "no samples, no series"
        );
        assert!(
            !text.contains("pluribus_network_dropped_total{"),
            "no network rules, no network series"
        );
        // Injected faults carry the cohort.
        let n = NetworkCounters {
            dropped: 7,
            ..Default::default()
        };
        let c = FleetCounters {
            network: Some(n.clone()),
            network_cohorts: [("0..50".to_string(), n)].into_iter().collect(),
            ..Default::default()
        };
        let net = render("a", &[("f1".to_string(), c)].into_iter().collect());
        assert!(net.contains(
            "pluribus_network_dropped_total{agent=\"a\",fleet=\"f1\",cohort=\"0..50\"} 7\n"
        ));
        // Every sample line is `name{labels} number`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap_or("");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
