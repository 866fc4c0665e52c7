//! Connection figures of fleets whose devices hold connections (MQTT) or get responses
//! (HTTP), merged over the live agents' latest heartbeats: shown by `status` and `watch`.

use std::collections::BTreeMap;

use pluribus_common::hist::Hist;
use pluribus_common::messages::Heartbeat;
use serde::Serialize;

use crate::figures::micros;
use crate::output::Table;

/// One fleet's connection figures, summed over agents (counters since each agent started).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Connections {
    /// Devices connected now.
    pub connected: u64,
    /// Devices connecting now.
    pub connecting: u64,
    /// Failed connection attempts by reason.
    pub connect_failures: BTreeMap<String, u64>,
    /// Connections lost.
    pub disconnects: u64,
    /// Connections made again.
    pub reconnects: u64,
    /// Messages sent.
    pub published: u64,
    /// Publishes that failed.
    pub publish_failed: u64,
    /// Commands received.
    pub commands: u64,
    /// Responses by class (HTTP status classes; FIX: exec_report, reject, business_reject, seq_gap).
    pub responses: BTreeMap<String, u64>,
    /// Acknowledgement (or response) latency in µs: p50, p90, p99, max.
    pub ack_latency_us: Option<[u64; 4]>,
}

/// The figures per fleet, for fleets with any connection or acknowledgement data.
pub fn merge(live: &[&Heartbeat], only: Option<&str>) -> BTreeMap<String, Connections> {
    // Histograms only for fleets with acknowledgements (one is tens of KB).
    let mut out: BTreeMap<String, (Connections, Option<Hist>)> = BTreeMap::new();
    for h in live {
        for (fleet, c) in &h.fleets {
            if only.is_some_and(|o| o != fleet) {
                continue;
            }
            let has = c.connected + c.connecting + c.disconnects + c.reconnects > 0
                || !c.connect_failures.is_empty()
                || !c.responses.is_empty()
                || c.ack_latency_us.is_some();
            if !has {
                continue;
            }
            let (m, hist) = out.entry(fleet.clone()).or_default();
            m.connected += c.connected;
            m.connecting += c.connecting;
            m.disconnects += c.disconnects;
            m.reconnects += c.reconnects;
            m.published += c.messages;
            m.publish_failed += c.publish_failed;
            m.commands += c.commands;
            for (k, v) in &c.connect_failures {
                *m.connect_failures.entry(k.clone()).or_default() += v;
            }
            for (k, v) in &c.responses {
                *m.responses.entry(k.clone()).or_default() += v;
            }
            if let Some(a) = &c.ack_latency_us {
                match hist {
                    Some(h) => h.merge(a),
                    None => *hist = Some(a.clone()),
                }
            }
        }
    }
    out.into_iter()
        .map(|(k, (mut m, h))| {
            if let Some(h) = h.filter(|h| h.count() > 0) {
                m.ack_latency_us =
                    Some([h.quantile(0.5), h.quantile(0.9), h.quantile(0.99), h.max()]);
            }
            (k, m)
        })
        .collect()
}

fn counts(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "-".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `k:v` pairs within `room` characters, then `+N more` for those that do not fit.
fn counts_fit(m: &BTreeMap<String, u64>, room: usize) -> String {
    let pairs: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    let all = counts(m);
    if all.chars().count() <= room {
        return all;
    }
    for keep in (0..pairs.len()).rev() {
        let more = format!("+{} more", pairs.len() - keep);
        let text = if keep == 0 {
            more
        } else {
            format!("{} {more}", pairs[..keep].join(" "))
        };
        if keep == 0 || text.chars().count() <= room {
            return text;
        }
    }
    all
}

/// A table of the figures ("" when there are none), within `width` columns (DISCONN:
/// disconnects, RECONN: reconnects, PUB FAIL: failed publishes): COMMANDS,
/// RESPONSES and ACK only when some fleet has them, ACK as p50/p99 (all four quantiles when
/// `width` is unlimited; none without `ack`, for views that show it elsewhere), and FAILURES
/// last, with what room is left (`+N more`).
pub fn table(all: &BTreeMap<String, Connections>, width: usize, ack: bool) -> String {
    if all.is_empty() {
        return String::new();
    }
    let wide = width == usize::MAX;
    let commands = all.values().any(|m| m.commands > 0);
    let responses = all.values().any(|m| !m.responses.is_empty());
    let ack = ack && all.values().any(|m| m.ack_latency_us.is_some());
    let mut head = vec![
        "FLEET",
        "CONNECTED",
        "CONNECTING",
        "DISCONN",
        "RECONN",
        "PUB OK",
        "PUB FAIL",
    ];
    if commands {
        head.push("COMMANDS");
    }
    if responses {
        head.push("RESPONSES");
    }
    if ack {
        head.push(if wide {
            "ACK P50/P90/P99/MAX"
        } else {
            "ACK P50/P99"
        });
    }
    head.push("FAILURES");
    let mut t = Table::new(&head);
    for (fleet, m) in all {
        let mut row = vec![
            fleet.clone(),
            m.connected.to_string(),
            m.connecting.to_string(),
            m.disconnects.to_string(),
            m.reconnects.to_string(),
            m.published.saturating_sub(m.publish_failed).to_string(),
            m.publish_failed.to_string(),
        ];
        if commands {
            row.push(m.commands.to_string());
        }
        if responses {
            row.push(counts(&m.responses));
        }
        if ack {
            row.push(m.ack_latency_us.map_or("-".into(), |q| {
                let shown: &[u64] = if wide { &q } else { &[q[0], q[2]] };
                shown
                    .iter()
                    .map(|us| micros(*us))
                    .collect::<Vec<_>>()
                    .join("/")
            }));
        }
        t.row(row);
    }
    // FAILURES comes last: where the other columns end shows with a one-character stand-in.
    let mut probe = t.clone();
    probe.push_column(&vec!["x".to_string(); all.len()]);
    let start = probe
        .render()
        .lines()
        .map(|l| l.chars().count().saturating_sub(1))
        .max()
        .unwrap_or(0);
    let room = width.saturating_sub(start).max("FAILURES".len());
    let failures: Vec<String> = all
        .values()
        .map(|m| counts_fit(&m.connect_failures, room))
        .collect();
    t.push_column(&failures);
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::fixtures::hb;
    use pluribus_common::messages::FleetCounters;

    #[test]
    fn agents_are_summed_and_latencies_merged() {
        let mut a = hb("a", 10, None);
        let mut b = hb("b", 10, None);
        let mut ha = Hist::new();
        ha.record(1000);
        let mut hb_ = Hist::new();
        hb_.record(3000);
        a.fleets.insert(
            "m".into(),
            FleetCounters {
                connected: 5,
                messages: 10,
                connect_failures: [("auth".to_string(), 2)].into(),
                ack_latency_us: Some(ha),
                ..Default::default()
            },
        );
        b.fleets.insert(
            "m".into(),
            FleetCounters {
                connected: 3,
                messages: 4,
                publish_failed: 1,
                connect_failures: [("auth".to_string(), 1)].into(),
                ack_latency_us: Some(hb_),
                ..Default::default()
            },
        );
        b.fleets.insert(
            "plain".into(),
            FleetCounters {
                messages: 9,
                ..Default::default()
            },
        );
        let m = merge(&[&a, &b], None);
        assert_eq!(m.len(), 1, "fleets without connection data are left out");
        let c = &m["m"];
        assert_eq!((c.connected, c.published, c.publish_failed), (8, 14, 1));
        assert_eq!(c.connect_failures["auth"], 3);
        let q = c.ack_latency_us.expect("latency");
        assert!(q[3] >= 2990 && q[0] >= 990, "{q:?}");
        assert!(table(&m, 100, true).contains("auth:3"));
        assert!(table(&m, 100, true).contains("ACK P50/P99"));
        assert!(!table(&m, 100, false).contains("ACK"));
        assert!(table(&m, usize::MAX, true).contains("ACK P50/P90/P99/MAX"));
        let many: BTreeMap<String, u64> =
            [("auth".to_string(), 3), ("refused".to_string(), 12)].into();
        assert_eq!(counts_fit(&many, 100), "auth:3 refused:12");
        assert_eq!(counts_fit(&many, 15), "auth:3 +1 more");
    }
}
