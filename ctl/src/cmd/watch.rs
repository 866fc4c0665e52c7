//! `watch`: a live view of devices and message rates, from the agents' heartbeats.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{bail, Result};
use pluribus_common::messages::{FleetCounters, Heartbeat};
use pluribus_common::time::now_ms;
use pluribus_common::wire::decode;
use serde::Serialize;

use super::Global;
use crate::feed::KvFeed;
use crate::output::{print_json_line, rate, Table};

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
}

/// The last two heartbeats of one agent.
#[derive(Debug, Clone)]
struct Beats {
    latest: Heartbeat,
    previous: Option<Heartbeat>,
}

/// One fleet in a refresh.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct FleetRate {
    name: String,
    devices: u64,
    msgs_per_s: f64,
    bytes_per_s: f64,
    errors: u64,
}

/// One agent in a refresh.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct AgentRate {
    id: String,
    name: String,
    devices: u64,
    msgs_per_s: f64,
}

/// One refresh.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Frame {
    ts_ms: u64,
    fleets: Vec<FleetRate>,
    agents: Vec<AgentRate>,
}

/// Per second between two heartbeats; 0 when the counter went back (agent or fleet restarted).
fn per_s(now: u64, before: u64, dt_s: f64) -> f64 {
    if dt_s <= 0.0 {
        return 0.0;
    }
    now.saturating_sub(before) as f64 / dt_s
}

/// The view at `now_ms` of the live agents' heartbeats, optionally of one fleet.
fn frame(agents: &BTreeMap<String, Beats>, now_ms: u64, only: Option<&str>) -> Frame {
    let mut fleets: BTreeMap<String, FleetRate> = BTreeMap::new();
    if let Some(f) = only {
        fleets.insert(f.to_string(), FleetRate::zero(f));
    }
    let mut rows = Vec::new();
    for b in agents.values().filter(|b| b.latest.is_alive(now_ms)) {
        let h = &b.latest;
        let dt_s = b
            .previous
            .as_ref()
            .map_or(0.0, |p| h.ts_ms.saturating_sub(p.ts_ms) as f64 / 1000.0);
        let none = FleetCounters::default();
        let mut agent = AgentRate {
            id: h.id.clone(),
            name: h.name.clone(),
            devices: if only.is_some() { 0 } else { h.devices },
            msgs_per_s: 0.0,
        };
        for (name, c) in &h.fleets {
            if only.is_some_and(|f| f != name) {
                continue;
            }
            let p = b
                .previous
                .as_ref()
                .and_then(|p| p.fleets.get(name))
                .unwrap_or(&none);
            let msgs = per_s(c.messages, p.messages, dt_s);
            let f = fleets
                .entry(name.clone())
                .or_insert_with(|| FleetRate::zero(name));
            f.devices += c.devices;
            f.msgs_per_s += msgs;
            f.bytes_per_s += per_s(c.bytes, p.bytes, dt_s);
            f.errors += c.errors;
            agent.msgs_per_s += msgs;
            if only.is_some() {
                agent.devices += c.devices;
            }
        }
        rows.push(agent);
    }
    rows.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    for a in &mut rows {
        a.msgs_per_s = round2(a.msgs_per_s);
    }
    let mut fleets: Vec<FleetRate> = fleets.into_values().collect();
    for f in &mut fleets {
        f.msgs_per_s = round2(f.msgs_per_s);
        f.bytes_per_s = round2(f.bytes_per_s);
    }
    Frame {
        ts_ms: now_ms,
        fleets,
        agents: rows,
    }
}

/// Rounded to two decimals, for readable JSON.
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl FleetRate {
    fn zero(name: &str) -> Self {
        Self {
            name: name.to_string(),
            devices: 0,
            msgs_per_s: 0.0,
            bytes_per_s: 0.0,
            errors: 0,
        }
    }
}

/// The frame as tables.
fn render(f: &Frame) -> String {
    let when =
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(f.ts_ms));
    let mut fleets = Table::new(&["FLEET", "DEVICES", "MSGS/S", "BYTES/S", "ERRORS"]);
    for r in &f.fleets {
        fleets.row(vec![
            r.name.clone(),
            r.devices.to_string(),
            rate(r.msgs_per_s),
            rate(r.bytes_per_s),
            r.errors.to_string(),
        ]);
    }
    let mut agents = Table::new(&["AGENT", "ID", "DEVICES", "MSGS/S"]);
    for a in &f.agents {
        agents.row(vec![
            a.name.clone(),
            a.id.clone(),
            a.devices.to_string(),
            rate(a.msgs_per_s),
        ]);
    }
    format!(
        "{when}  {} live agent{}\n\n{}\n{}",
        f.agents.len(),
        if f.agents.len() == 1 { "" } else { "s" },
        fleets.render(),
        agents.render()
    )
}

/// Runs `watch`.
pub async fn run(g: &Global, args: Args) -> Result<()> {
    if args.interval.is_zero() {
        bail!("--interval must be longer than 0, e.g. 1s");
    }
    let ctx = g.open().await?;
    let mut feed = KvFeed::open(&ctx.conn.client, &ctx.buckets.agents, ">").await?;
    let mut agents: BTreeMap<String, Beats> = BTreeMap::new();
    let tty = std::io::stdout().is_terminal();
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
                if !c.live {
                    agents.remove(&c.key);
                    continue;
                }
                match decode::<Heartbeat>(&c.value) {
                    Ok(h) => match agents.get_mut(&c.key) {
                        Some(b) if h.ts_ms > b.latest.ts_ms => {
                            b.previous = Some(std::mem::replace(&mut b.latest, h));
                        }
                        Some(_) => {}
                        None => {
                            agents.insert(c.key, Beats { latest: h, previous: None });
                        }
                    },
                    Err(e) => tracing::warn!("ignoring agent {}: {e}", c.key),
                }
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
        let f = frame(&agents, now_ms(), args.fleet.as_deref());
        if g.json {
            print_json_line(&f)?;
        } else if tty {
            print!("\x1b[2J\x1b[H{}", render(&f));
        } else {
            println!("{}", render(&f));
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
    use crate::state::tests::hb;

    fn counters(devices: u64, messages: u64, bytes: u64, errors: u64) -> FleetCounters {
        FleetCounters {
            devices,
            messages,
            bytes,
            errors,
            ..Default::default()
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
        let agents: BTreeMap<String, Beats> = [
            (
                "a".to_string(),
                Beats {
                    latest,
                    previous: Some(prev),
                },
            ),
            (
                "b".to_string(),
                Beats {
                    latest: other,
                    previous: None,
                },
            ),
            (
                "c".to_string(),
                Beats {
                    latest: dead,
                    previous: None,
                },
            ),
        ]
        .into_iter()
        .collect();
        let f = frame(&agents, 100_500, None);
        assert_eq!(f.agents.len(), 2);
        let ff = &f.fleets[0];
        assert_eq!((ff.name.as_str(), ff.devices, ff.errors), ("f", 13, 1));
        assert_eq!(ff.msgs_per_s, 10.0);
        assert_eq!(ff.bytes_per_s, 1000.0);
        // g appeared between the two heartbeats: all of its messages count.
        assert_eq!(f.fleets[1].msgs_per_s, 3.5);
        assert_eq!(f.agents[0].msgs_per_s, 13.5);

        let only = frame(&agents, 100_500, Some("g"));
        assert_eq!(only.fleets.len(), 1);
        assert_eq!(only.agents[0].devices, 5);
        assert_eq!(only.agents[1].devices, 0);
        let none = frame(&agents, 100_500, Some("nope"));
        assert_eq!(none.fleets, vec![FleetRate::zero("nope")]);
    }

    #[test]
    fn counters_going_back_read_as_zero() {
        assert_eq!(per_s(5, 10, 2.0), 0.0);
        assert_eq!(per_s(10, 5, 0.0), 0.0);
    }
}
