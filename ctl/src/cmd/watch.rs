//! `watch` (alias `top`): a live view per fleet and per agent, from the agents' heartbeats.
//!
//! Rates come from each agent's last two heartbeats; latency percentiles from the merged
//! HDR histograms, cumulative since each agent started (said in the header). Plain ANSI:
//! on a terminal each refresh redraws from the top-left corner, which works over ssh;
//! otherwise each refresh is printed after the previous one.

use std::collections::{BTreeMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use pluribus_common::messages::Heartbeat;
use pluribus_common::time::now_ms;
use serde::Serialize;

use super::Global;
use crate::beats::AgentBeats;
use crate::feed::KvFeed;
use crate::figures::{micros, tabulate, AgentFigures, Figures, FleetFigures, Quantiles, WATCH};
use crate::output::{print_json_line, rate, short_id, Table, WIDTH};
use crate::spark::{push, sparkline, utf8_locale};
use pluribus_common::record::FleetRecord;

/// Refreshes kept for the sparklines.
const HISTORY: usize = 30;

/// What the header says about percentiles (and what `--json` says in `percentiles`).
const PERCENTILES: &str = "cumulative since each agent started";

/// Live view until Ctrl-C.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show only this fleet.
    #[arg(value_name = "FLEET")]
    pub fleet: Option<String>,
    /// Time between two refreshes.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Stop after this many refreshes.
    #[arg(long, value_name = "K")]
    pub count: Option<u64>,
    /// Whole agent ids and no line width limit (default: 8-character ids, lines within
    /// 100 columns, the trend as long as fits).
    #[arg(long, short = 'w')]
    pub wide: bool,
}

/// One refresh.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Frame {
    ts_ms: u64,
    /// How the latency percentiles are taken.
    percentiles: &'static str,
    fleets: Vec<FleetFigures>,
    agents: Vec<AgentFigures>,
    /// Connection figures of fleets with connections (MQTT) or responses (HTTP).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    connections: BTreeMap<String, crate::connections::Connections>,
    /// Fleets with a load shape: its current target and phase.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    loads: BTreeMap<String, String>,
}

/// The msgs/s of the last refreshes, per fleet and per agent id.
#[derive(Debug, Default)]
struct History {
    fleets: BTreeMap<String, VecDeque<f64>>,
    agents: BTreeMap<String, VecDeque<f64>>,
}

impl History {
    fn record(&mut self, f: &Frame) {
        self.fleets
            .retain(|k, _| f.fleets.iter().any(|r| &r.name == k));
        self.agents
            .retain(|k, _| f.agents.iter().any(|r| &r.id == k));
        for r in &f.fleets {
            push(
                self.fleets.entry(r.name.clone()).or_default(),
                r.figures.msgs_per_s,
                HISTORY,
            );
        }
        for r in &f.agents {
            push(
                self.agents.entry(r.id.clone()).or_default(),
                r.figures.msgs_per_s,
                HISTORY,
            );
        }
    }
}

/// The view at `now_ms` of the live agents' heartbeats, optionally of one fleet.
fn frame(agents: &AgentBeats, now_ms: u64, only: Option<&str>) -> Frame {
    let spans = agents.live_spans(now_ms);
    let t = tabulate(&spans, only, WATCH);
    let live: Vec<&Heartbeat> = spans.iter().map(|s| s.latest).collect();
    Frame {
        connections: crate::connections::merge(&live, only),
        ts_ms: now_ms,
        percentiles: PERCENTILES,
        fleets: t.fleets,
        agents: t.agents,
        loads: BTreeMap::new(),
    }
}

/// `p50/p99`, or `-`.
fn pair(q: Option<Quantiles>) -> String {
    q.map_or("-".into(), |q| {
        format!("{}/{}", micros(q.p50), micros(q.p99))
    })
}

fn marker(saturated: bool) -> String {
    if saturated { "SATURATED" } else { "" }.into()
}

/// The shortest trend worth drawing; with less room there is no trend column.
const MIN_TREND: usize = 5;

/// One table of rows named by `keys` (the first columns), with an ACK column only when
/// some row has acknowledgement latencies, the msgs/s trend as long as fits in `width`, and
/// with `marks` a SATURATED marker on saturated rows.
fn figures_table(
    keys: &[&str],
    rows: &[(Vec<String>, &Figures, &VecDeque<f64>)],
    utf8: bool,
    width: usize,
    marks: bool,
) -> String {
    let ack = rows.iter().any(|(_, x, _)| x.ack_latency_us.is_some());
    let saturated = marks && rows.iter().any(|(_, x, _)| x.saturated);
    let table = |trend_len: usize| {
        let mut head: Vec<&str> = keys.to_vec();
        head.extend([
            "ACTIVE",
            "SCHED/S",
            "MSGS/S",
            "BYTES/S",
            "ERRORS",
            "LAG P50/P99",
        ]);
        if ack {
            head.push("ACK P50/P99");
        }
        if trend_len > 0 {
            head.push("MSGS/S TREND");
        }
        head.push("");
        let mut t = Table::new(&head);
        for (key, x, trend) in rows {
            let mut row = key.clone();
            row.extend([
                x.devices.to_string(),
                rate(x.scheduled_per_s),
                rate(x.msgs_per_s),
                rate(x.bytes_per_s),
                x.errors_total.to_string(),
                pair(x.tick_lag_us),
            ]);
            if ack {
                row.push(pair(x.ack_latency_us));
            }
            if trend_len > 0 {
                let skip = trend.len().saturating_sub(trend_len);
                let last: VecDeque<f64> = trend.iter().skip(skip).copied().collect();
                // Padded, so that the column is as wide as the trend will grow.
                row.push(format!("{:<trend_len$}", sparkline(&last, utf8)));
            }
            row.push(marker(marks && x.saturated));
            t.row(row);
        }
        t.render()
    };
    let widest = |text: &str| text.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    // The width without a trend, plus what a trend column adds (two spaces, and the marker
    // column that follows it).
    let bare = widest(&table(0));
    let extra = 2 + if saturated { 2 + marker(true).len() } else { 0 };
    let room = width.saturating_sub(bare + extra).min(HISTORY);
    if room >= MIN_TREND.max("MSGS/S TREND".len()) {
        table(room)
    } else {
        table(0)
    }
}

/// The frame as tables, with sparklines from `history`; whole ids and no width limit with
/// `wide`, else lines within [`WIDTH`] columns.
fn render(f: &Frame, history: &History, utf8: bool, wide: bool) -> String {
    let width = if wide { usize::MAX } else { WIDTH };
    let when =
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(f.ts_ms));
    let none = VecDeque::new();
    let fleet_rows: Vec<_> = f
        .fleets
        .iter()
        .map(|r| {
            let trend = history.fleets.get(&r.name).unwrap_or(&none);
            (vec![r.name.clone()], &r.figures, trend)
        })
        .collect();
    // Names tell the agents apart unless two share one: ids only then (or with --wide).
    let mut names: Vec<&str> = f.agents.iter().map(|a| a.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let ids = wide || names.len() < f.agents.len();
    let agent_rows: Vec<_> = f
        .agents
        .iter()
        .map(|a| {
            let trend = history.agents.get(&a.id).unwrap_or(&none);
            let mut key = vec![a.name.clone()];
            if ids {
                key.push(short_id(&a.id, wide));
            }
            (key, &a.figures, trend)
        })
        .collect();
    let fleets = figures_table(&["FLEET"], &fleet_rows, utf8, width, true);
    let agent_keys: &[&str] = if ids { &["AGENT", "ID"] } else { &["AGENT"] };
    // Saturated agents are named in the SATURATED line above the tables (and marked with
    // --wide).
    let agents = figures_table(agent_keys, &agent_rows, utf8, width, wide);
    let mut out = format!(
        "{when}  {} live agent{}  (latency percentiles: {PERCENTILES})\n",
        f.agents.len(),
        if f.agents.len() == 1 { "" } else { "s" },
    );
    let saturated: Vec<&str> = f
        .agents
        .iter()
        .filter(|a| a.figures.saturated)
        .map(|a| a.name.as_str())
        .collect();
    if !saturated.is_empty() {
        let text = format!(
            "{} cannot keep up with the schedule: the generator is the bottleneck, not the system under test",
            saturated.join(", ")
        );
        out.push_str(&crate::output::wrap("SATURATED: ", &text, width));
    }
    out.push('\n');
    out.push_str(&fleets);
    for (fleet, load) in &f.loads {
        out.push_str(&crate::output::wrap(
            &format!("load of {fleet}: "),
            load,
            width,
        ));
    }
    for r in &f.fleets {
        if let Some(n) = &r.figures.network {
            out.push_str(&n.lines(&r.name));
        }
    }
    // Acknowledgement latencies are in the fleets table already.
    let conns = crate::connections::table(&f.connections, width, false);
    if !conns.is_empty() {
        out.push('\n');
        out.push_str(&conns);
    }
    out.push('\n');
    out.push_str(&agents);
    out
}

/// The load shapes of the fleets shown, described at `now_ms`.
fn loads(
    records: &BTreeMap<String, FleetRecord>,
    now_ms: u64,
    only: Option<&str>,
) -> BTreeMap<String, String> {
    records
        .iter()
        .filter(|(name, _)| only.is_none_or(|o| o == name.as_str()))
        .filter_map(|(name, r)| {
            let l = r.spec.load.as_ref()?;
            Some((
                name.clone(),
                l.describe(r.load_elapsed(now_ms), r.count(), r.spec.seed.unwrap_or(0)),
            ))
        })
        .collect()
}

/// Prints one refresh: on a terminal, over the previous one.
fn show(text: &str, tty: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if tty {
        // Home, each line clearing what is left of the previous frame, then the rest.
        write!(out, "\x1b[H")?;
        for line in text.lines() {
            write!(out, "{line}\x1b[K\r\n")?;
        }
        write!(out, "\x1b[J")?;
    } else {
        writeln!(out, "{text}")?;
    }
    out.flush().context("cannot write to stdout")
}

/// Runs `watch`.
pub async fn run(g: &Global, args: Args) -> Result<()> {
    if args.interval.is_zero() {
        bail!("--interval must be longer than 0, e.g. 1s");
    }
    if args.count == Some(0) {
        bail!("--count 0 would show nothing: give 1 or more, or leave it out to run until Ctrl-C");
    }
    let ctx = g.open().await?;
    let mut feed = KvFeed::open(&ctx.conn.client, &ctx.buckets.agents, ">").await?;
    let mut agents = AgentBeats::default();
    let mut history = History::default();
    let mut records: BTreeMap<String, FleetRecord> = BTreeMap::new();
    let tty = std::io::stdout().is_terminal();
    let utf8 = utf8_locale();
    if tty && !g.json {
        print!("\x1b[2J");
    }
    let mut tick = tokio::time::interval(args.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut shown = 0u64;
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            c = feed.next() => {
                let Some(c) = c? else {
                    bail!("lost the connection to NATS");
                };
                agents.apply(c);
                if shown > 0 || !feed.caught_up() {
                    continue;
                }
                tick.reset();
            }
            _ = tick.tick() => {
                feed.check_idle();
                if !feed.caught_up() {
                    continue;
                }
            }
        }
        let now = now_ms();
        // Load shapes change rarely: re-read the fleet records every 5 refreshes.
        if shown.is_multiple_of(5) {
            records = crate::state::load_fleets(&ctx).await.unwrap_or_default();
        }
        let mut f = frame(&agents, now, args.fleet.as_deref());
        f.loads = loads(&records, now, args.fleet.as_deref());
        history.record(&f);
        if g.json {
            print_json_line(&f)?;
        } else {
            show(&render(&f, &history, utf8, args.wide), tty)?;
        }
        shown += 1;
        if args.count.is_some_and(|k| shown >= k) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::beats::Beats;
    use crate::state::fixtures::hb;
    use pluribus_common::messages::FleetCounters;

    fn counters(devices: u64, messages: u64, bytes: u64, errors: u64) -> FleetCounters {
        FleetCounters {
            devices,
            messages,
            bytes,
            errors,
            ..Default::default()
        }
    }

    fn beats(latest: Heartbeat, previous: Option<Heartbeat>) -> Beats {
        Beats { latest, previous }
    }

    fn all(list: Vec<(String, Beats)>) -> AgentBeats {
        AgentBeats {
            agents: list.into_iter().collect(),
        }
    }

    #[test]
    fn rates_come_from_the_last_two_heartbeats() {
        let mut prev = hb("a", 10, None);
        prev.ts_ms = 98_000;
        prev.fleets.insert("f".into(), counters(10, 100, 10_000, 0));
        let mut latest = prev.clone();
        latest.ts_ms = 100_000;
        latest
            .fleets
            .insert("f".into(), counters(10, 120, 12_000, 1));
        latest.fleets.insert("g".into(), counters(5, 7, 70, 0));
        let mut other = hb("b", 3, None);
        other.fleets.insert("f".into(), counters(3, 50, 500, 0));
        let mut dead = hb("c", 3, None);
        dead.ts_ms = 1_000;
        dead.fleets.insert("f".into(), counters(3, 50, 500, 0));
        let agents = all(vec![
            ("a".to_string(), beats(latest, Some(prev))),
            ("b".to_string(), beats(other, None)),
            ("c".to_string(), beats(dead, None)),
        ]);
        let f = frame(&agents, 100_500, None);
        assert_eq!(f.agents.len(), 2);
        let ff = &f.fleets[0];
        assert_eq!(
            (
                ff.name.as_str(),
                ff.figures.devices,
                ff.figures.errors_total
            ),
            ("f", 13, 1)
        );
        assert_eq!(ff.figures.msgs_per_s, 10.0);
        assert_eq!(ff.figures.bytes_per_s, 1000.0);
        // g appeared between the two heartbeats: all of its messages count.
        assert_eq!(f.fleets[1].figures.msgs_per_s, 3.5);
        assert_eq!(f.agents[0].figures.msgs_per_s, 13.5);

        let only = frame(&agents, 100_500, Some("g"));
        assert_eq!(only.fleets.len(), 1);
        assert_eq!(only.agents[0].figures.devices, 5);
        assert_eq!(only.agents[1].figures.devices, 0);
        let none = frame(&agents, 100_500, Some("nope"));
        assert_eq!(none.fleets.len(), 1);
        assert_eq!(none.fleets[0].figures, Default::default());
    }

    #[test]
    fn saturated_agents_are_flagged_and_trends_drawn() {
        let mut a = hb("a", 10, None);
        a.saturated = true;
        let mut c = counters(10, 100, 1_000, 0);
        c.saturated = true;
        c.scheduled_per_s = 1_000.0;
        c.achieved_per_s = 100.0;
        a.fleets.insert("f".into(), c);
        let agents = all(vec![("a".to_string(), beats(a, None))]);
        let f = frame(&agents, 100_500, None);
        let mut history = History::default();
        history.record(&f);
        history.record(&f);
        let text = render(&f, &history, false, false);
        assert!(
            text.contains("cumulative since each agent started"),
            "{text}"
        );
        assert!(text.contains("SATURATED: n-a cannot keep up"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("f ") && l.contains(" ## ") && l.ends_with(" SATURATED")),
            "{text}"
        );
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(json["fleets"][0]["saturated"], true);
        assert_eq!(json["agents"][0]["saturated"], true);
        assert_eq!(json["percentiles"], PERCENTILES);
    }

    #[test]
    fn frames_fit_in_100_columns_unless_wide() {
        let mut ack = pluribus_common::hist::Hist::new();
        ack.record(123_456);
        let mut a = hb("0123456789abcdef-0123-4567-89ab-cdef01234567", 1, None);
        a.name = "ip-10-0-12-34.ec2.internal".into();
        a.saturated = true;
        let c = FleetCounters {
            devices: 123_456,
            messages: 99_999_999,
            bytes: 9_999_999_999,
            scheduled_per_s: 123_456.0,
            achieved_per_s: 99_999.0,
            ack_latency_us: Some(ack.clone()),
            tick_lag_us: Some(ack),
            saturated: true,
            ..Default::default()
        };
        a.fleets.insert("thermostats-eu-west".into(), c);
        let agents = all(vec![("a".to_string(), beats(a, None))]);
        let f = frame(&agents, 100_500, None);
        let mut history = History::default();
        for _ in 0..HISTORY {
            history.record(&f);
        }
        let text = render(&f, &history, true, false);
        for line in text.lines() {
            assert!(line.chars().count() <= WIDTH, "{line}\n{text}");
        }
        assert!(!text.contains("01234567"), "{text}");
        let wide = render(&f, &history, true, true);
        assert!(
            wide.contains("0123456789abcdef-0123-4567-89ab-cdef01234567")
                && wide.contains("MSGS/S TREND"),
            "{wide}"
        );
    }

    #[test]
    fn ack_columns_show_when_a_sink_has_acks() {
        let mut ack = pluribus_common::hist::Hist::new();
        ack.record(2_500);
        let mut a = hb("a", 1, None);
        let c = FleetCounters {
            devices: 1,
            ack_latency_us: Some(ack),
            ..Default::default()
        };
        a.fleets.insert("mq".into(), c);
        let agents = all(vec![("a".to_string(), beats(a, None))]);
        let text = render(
            &frame(&agents, 100_500, None),
            &History::default(),
            true,
            false,
        );
        assert!(text.contains("ACK P50/P99"), "{text}");
        assert!(text.contains("2.5ms"), "{text}");
    }
}
