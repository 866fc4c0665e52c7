//! Figures per fleet and per agent from the agents' heartbeats, shared by `watch` and
//! `report`: counts and rates over a span between two heartbeats of each agent, and latency
//! percentiles from the merged HDR histograms (exact across agents).

use std::collections::BTreeMap;

use pluribus_common::hist::Hist;
use pluribus_common::messages::{FleetCounters, Heartbeat};
use serde::Serialize;

pub use crate::quantiles::{micros, Quantiles};

/// One agent's span: its latest heartbeat and an earlier one, if any.
#[derive(Debug, Clone, Copy)]
pub struct Span<'a> {
    /// The latest heartbeat.
    pub latest: &'a Heartbeat,
    /// An earlier heartbeat of the same agent (None: the span starts when the agent did).
    pub earlier: Option<&'a Heartbeat>,
}

/// How to read a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    /// Without an earlier heartbeat, rates are the agent's own last-interval figures
    /// (`watch`), or the totals over the agent's uptime (`report`).
    pub reported_rates: bool,
    /// Percentiles of what was recorded within the span (the latest histogram minus the
    /// earlier one), rather than since the agents started.
    pub span_percentiles: bool,
}

/// How `watch` and the dashboard read spans: rates of the last two heartbeats (or the
/// agent's own without an earlier one), percentiles since each agent started.
pub const WATCH: Mode = Mode {
    reported_rates: true,
    span_percentiles: false,
};

/// The figures of a fleet or an agent. Totals (`*_total`) are always since the agents
/// started; rates (`*_per_s`) over the span; counts within the span (`messages`, `bytes`,
/// `errors`) only where the span is the same for every row and every output (`report`),
/// not in `watch`, whose span is one heartbeat interval once two heartbeats are known.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Devices active: started and running on the agents now (their heartbeats' figure).
    #[serde(rename = "active")]
    pub devices: u64,
    /// Messages per second the schedule asks for.
    pub scheduled_per_s: f64,
    /// Messages per second achieved over the span.
    pub msgs_per_s: f64,
    /// Payload bytes per second over the span.
    pub bytes_per_s: f64,
    /// Messages sent within the span (`report` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<u64>,
    /// Payload bytes sent within the span (`report` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Send errors within the span (`report` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<u64>,
    /// Messages sent since the agents started.
    pub messages_total: u64,
    /// Payload bytes sent since the agents started.
    pub bytes_total: u64,
    /// Send errors since the agents started.
    pub errors_total: u64,
    /// Tick lag percentiles (µs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tick_lag_us: Option<Quantiles>,
    /// Acknowledgement latency percentiles (µs), for sinks that have acknowledgements.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_latency_us: Option<Quantiles>,
    /// Some agent falls behind the schedule: the generator is the bottleneck.
    pub saturated: bool,
    /// Faults the agents' network impairments injected (fleets with network rules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::netfigures::NetFigures>,
}

/// One fleet's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetFigures {
    /// Fleet name.
    pub name: String,
    /// Agents running it.
    pub agents: u64,
    /// The figures.
    #[serde(flatten)]
    pub figures: Figures,
}

/// One agent's figures (over the fleets shown).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentFigures {
    /// Agent id.
    pub id: String,
    /// Agent name.
    pub name: String,
    /// The figures.
    #[serde(flatten)]
    pub figures: Figures,
}

/// Every fleet's and agent's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Table {
    /// Per fleet, by name.
    pub fleets: Vec<FleetFigures>,
    /// Per agent, by name.
    pub agents: Vec<AgentFigures>,
    /// Every fleet of every agent together (the dashboard's cluster-wide charts), with
    /// percentiles from all their histograms merged.
    #[serde(skip)]
    pub total: Figures,
}

/// Growth of a counter; a counter that went back restarted, so all of it is new.
fn delta(now: u64, before: u64) -> u64 {
    if now >= before {
        now - before
    } else {
        now
    }
}

/// Rounded to two decimals, for readable JSON.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Histograms being merged for one row, made when the first one comes (a histogram is
/// tens of KB: a row without any costs nothing).
#[derive(Default)]
struct Hists {
    lag: Option<Hist>,
    ack: Option<Hist>,
}

impl Hists {
    fn add(&mut self, now: &FleetCounters, before: Option<&FleetCounters>, span: bool) {
        let pick = |h: &Option<Hist>, b: Option<&Option<Hist>>| -> Option<Hist> {
            let mut h = h.clone()?;
            if span {
                if let Some(Some(b)) = b {
                    // A histogram that cannot be subtracted restarted: all of it is new.
                    h.subtract(b);
                }
            }
            Some(h)
        };
        if let Some(h) = pick(&now.tick_lag_us, before.map(|b| &b.tick_lag_us)) {
            Hist::merge_into(&mut self.lag, h);
        }
        if let Some(h) = pick(&now.ack_latency_us, before.map(|b| &b.ack_latency_us)) {
            Hist::merge_into(&mut self.ack, h);
        }
    }

    fn finish(&self, f: &mut Figures) {
        f.tick_lag_us = self.lag.as_ref().and_then(Quantiles::of);
        f.ack_latency_us = self.ack.as_ref().and_then(Quantiles::of);
    }
}

/// Adds one fleet of one agent over a span of `dt_s` seconds (0: no earlier heartbeat).
fn add(
    f: &mut Figures,
    now: &FleetCounters,
    before: Option<&FleetCounters>,
    dt_s: f64,
    mode: Mode,
) {
    let zero = FleetCounters::default();
    let b = before.unwrap_or(&zero);
    let (messages, bytes) = (delta(now.messages, b.messages), delta(now.bytes, b.bytes));
    f.devices += now.devices;
    f.scheduled_per_s += now.scheduled_per_s;
    if let Some(m) = &mut f.messages {
        *m += messages;
    }
    if let Some(b) = &mut f.bytes {
        *b += bytes;
    }
    if let Some(e) = &mut f.errors {
        *e += delta(now.errors, b.errors);
    }
    f.messages_total += now.messages;
    f.bytes_total += now.bytes;
    f.errors_total += now.errors;
    f.saturated |= now.saturated;
    if let Some(n) = &now.network {
        let net = f.network.get_or_insert_with(Default::default);
        net.add(n, b.network.as_ref(), mode.span_percentiles);
        net.add_cohorts(
            &now.network_cohorts,
            Some(&b.network_cohorts),
            mode.span_percentiles,
        );
    }
    if dt_s > 0.0 {
        f.msgs_per_s += messages as f64 / dt_s;
        f.bytes_per_s += bytes as f64 / dt_s;
    } else if mode.reported_rates && now.messages > 0 {
        f.msgs_per_s += now.achieved_per_s;
        f.bytes_per_s += now.achieved_per_s * now.bytes as f64 / now.messages as f64;
    }
}

/// The figures of `spans`, of every fleet or only of `only`.
pub fn tabulate(spans: &[Span<'_>], only: Option<&str>, mode: Mode) -> Table {
    let mut fleets: BTreeMap<String, (FleetFigures, Hists)> = BTreeMap::new();
    if let Some(name) = only {
        fleets.insert(name.to_string(), (fleet_row(name, mode), Hists::default()));
    }
    let mut agents = Vec::new();
    let mut total = Figures::default();
    let mut total_hists = Hists::default();
    for s in spans {
        let h = s.latest;
        let dt_s = match s.earlier {
            Some(e) => h.ts_ms.saturating_sub(e.ts_ms) as f64 / 1000.0,
            None if mode.reported_rates => 0.0,
            None => h.uptime_s as f64,
        };
        let mut agent = Figures::empty(mode);
        let mut agent_hists = Hists::default();
        for (name, c) in &h.fleets {
            if only.is_some_and(|f| f != name) {
                continue;
            }
            let before = s.earlier.and_then(|e| e.fleets.get(name));
            let (row, hists) = fleets
                .entry(name.clone())
                .or_insert_with(|| (fleet_row(name, mode), Hists::default()));
            row.agents += u64::from(c.devices > 0);
            add(&mut row.figures, c, before, dt_s, mode);
            hists.add(c, before, mode.span_percentiles);
            add(&mut agent, c, before, dt_s, mode);
            agent_hists.add(c, before, mode.span_percentiles);
            add(&mut total, c, before, dt_s, mode);
            total_hists.add(c, before, mode.span_percentiles);
        }
        if only.is_none() {
            // An agent's own figures, even with no fleet.
            agent.devices = h.devices;
            agent.saturated = h.saturated;
        }
        agent_hists.finish(&mut agent);
        round(&mut agent);
        agents.push(AgentFigures {
            id: h.id.clone(),
            name: h.name.clone(),
            figures: agent,
        });
    }
    agents.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    let fleets = fleets
        .into_values()
        .map(|(mut row, hists)| {
            hists.finish(&mut row.figures);
            round(&mut row.figures);
            row
        })
        .collect();
    total_hists.finish(&mut total);
    round(&mut total);
    Table {
        fleets,
        agents,
        total,
    }
}

fn fleet_row(name: &str, mode: Mode) -> FleetFigures {
    FleetFigures {
        name: name.to_string(),
        agents: 0,
        figures: Figures::empty(mode),
    }
}

impl Figures {
    /// No figures yet; counts within the span only where the span is fixed (not in `watch`).
    fn empty(mode: Mode) -> Self {
        let counts = (!mode.reported_rates).then_some(0);
        Self {
            messages: counts,
            bytes: counts,
            errors: counts,
            ..Self::default()
        }
    }
}

fn round(f: &mut Figures) {
    f.scheduled_per_s = round2(f.scheduled_per_s);
    f.msgs_per_s = round2(f.msgs_per_s);
    f.bytes_per_s = round2(f.bytes_per_s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::fixtures::hb;

    fn counters(devices: u64, messages: u64, lag: &[u64]) -> FleetCounters {
        let mut h = Hist::new();
        lag.iter().for_each(|&v| h.record(v));
        FleetCounters {
            devices,
            messages,
            bytes: messages * 100,
            tick_lag_us: (!lag.is_empty()).then_some(h),
            ..Default::default()
        }
    }

    #[test]
    fn merged_percentiles_of_two_agents_equal_those_of_the_combined_samples() {
        let a_lag: Vec<u64> = (0..5_000u64).map(|i| (i * 7919) % 4_000 + 1).collect();
        let b_lag: Vec<u64> = (0..3_000u64).map(|i| (i * 104_729) % 90_000 + 50).collect();
        let mut a = hb("a", 10, None);
        a.fleets.insert("f".into(), counters(10, 100, &a_lag));
        let mut b = hb("b", 10, None);
        b.fleets.insert("f".into(), counters(10, 100, &b_lag));
        // Through the wire, as the agents' heartbeats arrive.
        let wire = |h: &Heartbeat| -> Heartbeat {
            serde_json::from_slice(&serde_json::to_vec(h).unwrap()).unwrap()
        };
        let (a, b) = (wire(&a), wire(&b));
        let t = tabulate(
            &[
                Span {
                    latest: &a,
                    earlier: None,
                },
                Span {
                    latest: &b,
                    earlier: None,
                },
            ],
            None,
            WATCH,
        );
        let mut all = Hist::new();
        a_lag.iter().chain(&b_lag).for_each(|&v| all.record(v));
        let merged = t.fleets[0].figures.tick_lag_us.expect("lag");
        assert_eq!(merged, Quantiles::of(&all).expect("all"));
        assert_eq!(t.total.tick_lag_us, Some(merged), "the cluster-wide row");
        assert_eq!(t.total.devices, 20);
        assert_eq!(merged.count, 8_000);
        assert_eq!(
            t.agents[0].figures.tick_lag_us,
            Quantiles::of(&{
                let mut h = Hist::new();
                a_lag.iter().for_each(|&v| h.record(v));
                h
            })
        );
    }

    #[test]
    fn spans_give_deltas_rates_and_span_percentiles() {
        let mut before = hb("a", 10, None);
        before.ts_ms = 90_000;
        before
            .fleets
            .insert("f".into(), counters(10, 1_000, &[10; 100]));
        let mut after = before.clone();
        after.ts_ms = 100_000;
        after.fleets.insert(
            "f".into(),
            counters(10, 3_000, &[&[10; 100][..], &[5_000; 100]].concat()),
        );
        let report = Mode {
            reported_rates: false,
            span_percentiles: true,
        };
        let t = tabulate(
            &[Span {
                latest: &after,
                earlier: Some(&before),
            }],
            None,
            report,
        );
        let f = &t.fleets[0].figures;
        assert_eq!(
            (f.messages, f.bytes, f.msgs_per_s, f.bytes_per_s),
            (Some(2_000), Some(200_000), 200.0, 20_000.0)
        );
        assert_eq!((f.messages_total, f.bytes_total), (3_000, 300_000));
        let lag = f.tick_lag_us.expect("lag");
        assert_eq!(lag.count, 100);
        assert!(lag.p50 >= 4_990, "only what the span recorded: {lag:?}");
        // Cumulative percentiles keep everything.
        let t = tabulate(
            &[Span {
                latest: &after,
                earlier: Some(&before),
            }],
            None,
            WATCH,
        );
        assert_eq!(t.fleets[0].figures.tick_lag_us.expect("lag").count, 200);
    }

    #[test]
    fn without_an_earlier_heartbeat_rates_come_from_the_agent_or_its_uptime() {
        let mut h = hb("a", 10, None);
        h.uptime_s = 100;
        let mut c = counters(10, 5_000, &[]);
        c.achieved_per_s = 40.0;
        h.fleets.insert("f".into(), c);
        let span = [Span {
            latest: &h,
            earlier: None,
        }];
        let w = &tabulate(&span, None, WATCH).fleets[0].figures;
        assert_eq!(
            (w.msgs_per_s, w.messages, w.messages_total),
            (40.0, None, 5_000)
        );
        let totals = Mode {
            reported_rates: false,
            span_percentiles: false,
        };
        let f = &tabulate(&span, None, totals).fleets[0].figures;
        assert_eq!((f.messages, f.msgs_per_s), (Some(5_000), 50.0));
    }

    #[test]
    fn counters_that_went_back_count_from_zero() {
        assert_eq!(delta(5, 10), 5);
        assert_eq!(delta(10, 5), 5);
    }

    #[test]
    fn latencies_read_well() {
        assert_eq!(micros(850), "850µs");
        assert_eq!(micros(12_345), "12.3ms");
        assert_eq!(micros(123_456), "123ms");
        assert_eq!(micros(4_210_000), "4.21s");
    }
}
