//! `network`: impair a running fleet's network (for a cohort, for a while), clear it,
//! show what is in force, list the presets. Rules are desired state in the fleet record,
//! so a failover or a new agent applies the same ones and they outlive pluribusctl.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use pluribus_common::messages::EventKind;
use pluribus_common::record::FleetRecord;
use pluribus_common::spec::network::plan::{PlannedRule, RuntimeRule};
use pluribus_common::spec::network::{
    parse_signed_ms, BandwidthSpec, ChanceSpec, ClockSpec, Cohort, CorruptMode, CorruptSpec,
    Distribution, DropPolicy, DurationDist, FlapSpec, GilbertSpec, Impairments, LatencySpec,
    LinkMode, LossSpec, NetRule, OfflineSpec, ReorderSpec, MAX_COHORTS, MAX_RULES, PRESETS,
};
use pluribus_common::time::now_ms;
use serde::Serialize;

use super::{no_fleet, Ctx, Global};
use crate::apply::read_record;
use crate::bus;
use crate::figures::{tabulate, Mode, Span};
use crate::output::{print_json, Table};
use crate::state::{live, load_agents};
use pluribus_client::netfigures::NetFigures;

/// `network` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub verb: Verb,
}

/// `network` verbs.
#[derive(Debug, clap::Subcommand)]
pub enum Verb {
    /// Add a rule to a running fleet: impairments for its devices (or a --cohort), for
    /// ever or --for a while. Later rules win, impairment by impairment.
    Set(Box<SetArgs>),
    /// Remove the fleet's runtime rules (all, or those of one --cohort). Rules of the
    /// fleet file's `network:` section stay.
    Clear(ClearArgs),
    /// Show a fleet's rules (file and runtime) and which are in force now.
    Show(ShowArgs),
    /// List the presets and their parameters.
    Presets,
}

/// `network set` arguments.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("down").multiple(true).args(["offline", "flap_uptime", "flap_per_minute"])))]
pub struct SetArgs {
    /// The fleet.
    #[arg(value_name = "FLEET")]
    pub fleet: String,
    /// Which devices: a share (`10%`, chosen by the fleet's seed), indices (`0..100`) or
    /// a label the fleet file defines under `network.labels` (`zone=eu`).
    #[arg(long, value_parser = parse_cohort)]
    pub cohort: Option<Cohort>,
    /// The rule ends after this long (e.g. 30s).
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// A named preset (`pluribusctl network presets`); other flags override its settings.
    #[arg(long)]
    pub preset: Option<String>,
    /// Fixed added delay, e.g. 200ms.
    #[arg(long, value_parser = parse_duration)]
    pub latency: Option<Duration>,
    /// Jitter around the delay (the standard deviation for normal).
    #[arg(long, value_parser = parse_duration)]
    pub jitter: Option<Duration>,
    /// How the jitter is drawn: uniform, normal, pareto.
    #[arg(long, value_enum)]
    pub distribution: Option<DistArg>,
    /// 0 to 1: how much a message's jitter follows the previous one's.
    #[arg(long, value_parser = parse_probability)]
    pub correlation: Option<f64>,
    /// Random loss: `5%` or `0.05`.
    #[arg(long, value_parser = parse_probability)]
    pub loss: Option<f64>,
    /// Bursty loss (Gilbert-Elliott): `enter_bad,leave_bad[,loss_good,loss_bad]`, each a
    /// probability per message, e.g. `1%,30%,0,80%`.
    #[arg(long, value_parser = parse_gilbert)]
    pub loss_bursts: Option<GilbertSpec>,
    /// Messages sent twice: `1%`.
    #[arg(long, value_parser = parse_probability)]
    pub duplicate: Option<f64>,
    /// Messages held back behind the next --reorder-gap ones: `1%`.
    #[arg(long, value_parser = parse_probability)]
    pub reorder: Option<f64>,
    /// How many later messages overtake a reordered one.
    #[arg(long, default_value_t = 1, requires = "reorder")]
    pub reorder_gap: u32,
    /// Per-device byte rate cap in bytes per second (a token bucket; messages wait).
    #[arg(long, value_name = "BYTES_PER_S")]
    pub bandwidth: Option<u64>,
    /// Burst of the byte rate cap in bytes (default: one second's worth).
    #[arg(long, requires = "bandwidth")]
    pub burst: Option<u64>,
    /// Payloads mangled: `0.5%`.
    #[arg(long, value_parser = parse_probability)]
    pub corrupt: Option<f64>,
    /// How: truncate, flip, invalid-json, any.
    #[arg(long, value_enum, default_value = "any", requires = "corrupt")]
    pub corrupt_mode: ModeArg,
    /// Offset of the devices' clocks, added to the `ts` they report: `+30s`, `-2m`.
    #[arg(long, value_parser = parse_offset, allow_hyphen_values = true)]
    pub clock_offset: Option<i64>,
    /// Drift of the devices' clocks, in parts per million.
    #[arg(long, allow_hyphen_values = true)]
    pub clock_drift_ppm: Option<f64>,
    /// Offline (a partition; use with --for): devices keep producing and buffer their
    /// messages, then send them with their original ts and seq when the rule ends.
    #[arg(long)]
    pub offline: bool,
    /// Most messages a device buffers while offline or flapped down (0: it loses them all).
    #[arg(long, default_value_t = 1000, requires = "down")]
    pub buffer: u32,
    /// Which messages a full buffer loses: oldest, newest.
    #[arg(long, value_enum, default_value = "oldest", requires = "down")]
    pub buffer_drop: DropArg,
    /// Messages per second per device when the buffer is flushed (0: at once).
    #[arg(long, default_value_t = 0.0, requires = "down")]
    pub flush_rate: f64,
    /// What a device's own connection (mqtt) does while offline or flapped down: close
    /// (the broker sees it go), stall (silent: the broker's keepalive expires it), keep.
    #[arg(long, value_enum, default_value = "close", requires = "down")]
    pub link: LinkArg,
    /// Flapping: how long a device stays up, `MEAN` or `MEAN,DEVIATION` (normal), e.g.
    /// `60s,20s`.
    #[arg(long, value_name = "MEAN[,DEV]", value_parser = parse_dist, allow_hyphen_values = true, conflicts_with = "flap_per_minute", requires = "flap_downtime")]
    pub flap_uptime: Option<DurationDist>,
    /// Flapping: instead of --flap-uptime, the chance that an up device goes down within a
    /// minute (`50%` or `0.5`).
    #[arg(long, value_name = "P", value_parser = parse_probability, allow_hyphen_values = true, requires = "flap_downtime")]
    pub flap_per_minute: Option<f64>,
    /// Flapping: how long a device stays down, `MEAN` or `MEAN,DEVIATION`, e.g. `10s,5s`.
    #[arg(long, value_name = "MEAN[,DEV]", value_parser = parse_dist, allow_hyphen_values = true)]
    pub flap_downtime: Option<DurationDist>,
}

/// What a device's connection does while it is cut off.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LinkArg {
    /// Closed without DISCONNECT; reconnects with backoff when back.
    Close,
    /// Open but silent; the broker's keepalive expires it.
    Stall,
    /// Left up (messages held only).
    Keep,
}

/// `MEAN` or `MEAN,DEVIATION` (signed, so that a negative one gets a clear error later).
fn parse_dist(s: &str) -> Result<DurationDist, String> {
    let (m, d) = s.split_once(',').unwrap_or((s, "0ms"));
    Ok(DurationDist::ms(parse_signed_ms(m)?, parse_signed_ms(d)?))
}

/// Which messages a full offline buffer loses.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DropArg {
    /// The oldest make room.
    Oldest,
    /// The new ones are lost.
    Newest,
}

/// `network clear` arguments.
#[derive(Debug, clap::Args)]
pub struct ClearArgs {
    /// The fleet.
    #[arg(value_name = "FLEET")]
    pub fleet: String,
    /// Only the rules set for this cohort.
    #[arg(long, value_parser = parse_cohort)]
    pub cohort: Option<Cohort>,
}

/// `network show` arguments.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The fleet.
    #[arg(value_name = "FLEET")]
    pub fleet: String,
}

/// Jitter distributions.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DistArg {
    /// Uniform in ±jitter.
    Uniform,
    /// Normal, jitter as standard deviation.
    Normal,
    /// Pareto tail with the jitter as mean.
    Pareto,
}

/// Corruption modes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    /// Cut short.
    Truncate,
    /// Bytes flipped.
    Flip,
    /// A brace removed.
    InvalidJson,
    /// Any of them.
    Any,
}

fn parse_cohort(s: &str) -> Result<Cohort, String> {
    s.parse()
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("'{s}' is not a duration ({e}): write e.g. 200ms or 30s"))
}

fn parse_offset(s: &str) -> Result<i64, String> {
    parse_signed_ms(s)
}

/// `5%` or `0.05`.
pub fn parse_probability(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (n, scale) = match t.strip_suffix('%') {
        Some(p) => (p.trim(), 100.0),
        None => (t, 1.0),
    };
    match n.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&(v / scale)) => Ok(v / scale),
        Ok(_) => Err(format!(
            "'{s}' is not a probability: use 0 to 1 or 0% to 100%"
        )),
        Err(_) => Err(format!("'{s}' is not a number: write e.g. 5% or 0.05")),
    }
}

fn parse_gilbert(s: &str) -> Result<GilbertSpec, String> {
    let v: Vec<f64> = s
        .split(',')
        .map(parse_probability)
        .collect::<Result<_, _>>()?;
    match v[..] {
        [enter_bad, leave_bad] => Ok(GilbertSpec {
            enter_bad,
            leave_bad,
            loss_good: 0.0,
            loss_bad: 1.0,
        }),
        [enter_bad, leave_bad, loss_good, loss_bad] => Ok(GilbertSpec {
            enter_bad,
            leave_bad,
            loss_good,
            loss_bad,
        }),
        _ => Err(format!(
            "'{s}': give enter_bad,leave_bad or enter_bad,leave_bad,loss_good,loss_bad"
        )),
    }
}

impl SetArgs {
    /// The rule the flags describe.
    fn rule(&self) -> Result<NetRule> {
        let latency = (self.latency.is_some()
            || self.jitter.is_some()
            || self.distribution.is_some()
            || self.correlation.is_some())
        .then(|| LatencySpec {
            delay: self.latency.unwrap_or_default(),
            jitter: self.jitter.unwrap_or_default(),
            distribution: match self.distribution {
                Some(DistArg::Normal) => Distribution::Normal,
                Some(DistArg::Pareto) => Distribution::Pareto,
                Some(DistArg::Uniform) | None => Distribution::Uniform,
            },
            correlation: self.correlation.unwrap_or(0.0),
        });
        let loss = (self.loss.is_some() || self.loss_bursts.is_some()).then(|| LossSpec {
            probability: self.loss.unwrap_or(0.0),
            gilbert: self.loss_bursts.clone(),
        });
        let clock =
            (self.clock_offset.is_some() || self.clock_drift_ppm.is_some()).then(|| ClockSpec {
                offset_ms: self.clock_offset.unwrap_or(0),
                drift_ppm: self.clock_drift_ppm.unwrap_or(0.0),
            });
        let offline = OfflineSpec {
            buffer: self.buffer,
            drop: match self.buffer_drop {
                DropArg::Oldest => DropPolicy::Oldest,
                DropArg::Newest => DropPolicy::Newest,
            },
            flush_rate: self.flush_rate,
            link: match self.link {
                LinkArg::Close => LinkMode::Close,
                LinkArg::Stall => LinkMode::Stall,
                LinkArg::Keep => LinkMode::Keep,
            },
        };
        let rule = NetRule {
            cohort: self.cohort.clone(),
            at: None,
            duration: None,
            preset: self.preset.clone(),
            latency,
            loss,
            duplicate: self.duplicate.map(|probability| ChanceSpec { probability }),
            reorder: self.reorder.map(|probability| ReorderSpec {
                probability,
                gap: self.reorder_gap,
            }),
            bandwidth: self.bandwidth.map(|bytes_per_s| BandwidthSpec {
                bytes_per_s,
                burst_bytes: self.burst,
            }),
            corrupt: self.corrupt.map(|probability| CorruptSpec {
                probability,
                mode: match self.corrupt_mode {
                    ModeArg::Truncate => CorruptMode::Truncate,
                    ModeArg::Flip => CorruptMode::Flip,
                    ModeArg::InvalidJson => CorruptMode::InvalidJson,
                    ModeArg::Any => CorruptMode::Any,
                },
            }),
            clock,
            offline: self.offline.then(|| offline.clone()),
            flap: (self.flap_uptime.is_some() || self.flap_per_minute.is_some()).then(|| {
                FlapSpec {
                    uptime: self.flap_uptime.clone(),
                    per_minute: self.flap_per_minute,
                    downtime: self.flap_downtime.clone().unwrap_or(DurationDist::ms(0, 0)),
                    offline: Some(offline.clone()),
                }
            }),
        };
        rule.validate("--")
            .map_err(|e| anyhow!("bad network rule: {e}"))?;
        if rule.impairments().is_off() {
            bail!("give at least one impairment (e.g. --loss 5%, --latency 200ms, --preset 3g) or use `pluribusctl network clear`");
        }
        Ok(rule)
    }
}

/// Runs `network`.
pub async fn run(g: &Global, args: Args) -> Result<()> {
    match args.verb {
        Verb::Presets => presets(g),
        Verb::Show(a) => {
            let ctx = g.open().await?;
            let (record, _) = read_record(&ctx.buckets.fleets, &a.fleet)
                .await?
                .ok_or_else(|| no_fleet(&a.fleet))?;
            show(g, &ctx, &record).await
        }
        Verb::Set(a) => {
            let rule = a.rule()?;
            let ctx = g.open().await?;
            let now = now_ms();
            let change = format!(
                "set {}: {}",
                a.cohort
                    .as_ref()
                    .map_or("every device".into(), |c| format!("cohort {c}")),
                describe(&rule.impairments())
            );
            let record = update(&ctx, &a.fleet, |r| {
                if let Some(l) = rule.cohort.as_ref().and_then(Cohort::label) {
                    if !r.network_plan().defines_label(l) {
                        bail!("fleet {} defines no label {l}: define it in the fleet file under network.labels (e.g. {l}: 10%, {l}: 0..100 or a list of device ids)", a.fleet);
                    }
                }
                let mut named = r.network_cohorts();
                if let Some(c) = rule.cohort.as_ref().filter(|c| !named.contains(c)) {
                    named.push(c);
                }
                if named.len() > MAX_COHORTS {
                    bail!("fleet {}'s rules name {MAX_COHORTS} cohorts already (injected faults are counted per cohort): clear some with `pluribusctl network clear {} --cohort C`, or reuse one of {}", a.fleet, a.fleet, r.network_cohorts().iter().map(ToString::to_string).collect::<Vec<_>>().join(", "));
                }
                if r.network.len() >= MAX_RULES {
                    bail!("fleet {} has {MAX_RULES} runtime rules already: clear some with `pluribusctl network clear`", a.fleet);
                }
                r.network.push(RuntimeRule {
                    rule: rule.clone(),
                    since_ms: now,
                    until_ms: a.duration.map(|d| now + d.as_millis() as u64),
                });
                Ok(())
            })
            .await?;
            announce(&ctx, &a.fleet, change, &record).await?;
            show(g, &ctx, &record).await
        }
        Verb::Clear(a) => {
            let ctx = g.open().await?;
            let mut removed = 0;
            let record = update(&ctx, &a.fleet, |r| {
                let before = r.network.len();
                r.network.retain(|x| {
                    a.cohort
                        .as_ref()
                        .is_some_and(|c| x.rule.cohort.as_ref() != Some(c))
                });
                removed = before - r.network.len();
                Ok(())
            })
            .await?;
            announce(&ctx, &a.fleet, format!("cleared {removed} rules"), &record).await?;
            show(g, &ctx, &record).await
        }
    }
}

/// Changes the fleet record with `f` (compare and set, a few tries); expired runtime
/// rules are dropped on the way.
async fn update(
    ctx: &Ctx,
    name: &str,
    mut f: impl FnMut(&mut FleetRecord) -> Result<()>,
) -> Result<FleetRecord> {
    pluribus_client::scenario::ops::update(ctx, name, |next| {
        let now = now_ms();
        next.network.retain(|r| r.until_ms.is_none_or(|u| u > now));
        f(next)
    })
    .await
}

async fn announce(ctx: &Ctx, fleet: &str, change: String, record: &FleetRecord) -> Result<()> {
    bus::publish_event(
        &ctx.conn,
        EventKind::NetworkChanged {
            fleet: fleet.to_string(),
            change,
            rules: record.network.len() as u64,
        },
    )
    .await
}

/// One line for a set of impairments: `latency 200ms ± 50ms normal, loss 5%`.
pub fn describe(i: &Impairments) -> String {
    let pct = |p: f64| format!("{}%", (p * 10_000.0).round() / 100.0);
    let mut parts = Vec::new();
    if let Some(l) = &i.latency {
        let mut s = format!("latency {:?}", l.delay);
        if !l.jitter.is_zero() {
            s += &format!(" ± {:?} {:?}", l.jitter, l.distribution).to_lowercase();
        }
        if l.correlation > 0.0 {
            s += &format!(" (correlation {})", l.correlation);
        }
        parts.push(s);
    }
    if let Some(l) = &i.loss {
        match &l.gilbert {
            Some(g) => parts.push(format!(
                "bursty loss (enter {}, leave {}, loss {} good / {} bad)",
                pct(g.enter_bad),
                pct(g.leave_bad),
                pct(g.loss_good),
                pct(g.loss_bad)
            )),
            None => parts.push(format!("loss {}", pct(l.probability))),
        }
    }
    if let Some(d) = &i.duplicate {
        parts.push(format!("duplicate {}", pct(d.probability)));
    }
    if let Some(r) = &i.reorder {
        parts.push(format!("reorder {} (gap {})", pct(r.probability), r.gap));
    }
    if let Some(b) = &i.bandwidth {
        parts.push(format!("bandwidth {} B/s", b.bytes_per_s));
    }
    if let Some(c) = &i.corrupt {
        parts.push(format!("corrupt {} ({:?})", pct(c.probability), c.mode).to_lowercase());
    }
    if let Some(c) = &i.clock {
        parts.push(format!(
            "clock {:+}ms, drift {} ppm",
            c.offset_ms, c.drift_ppm
        ));
    }
    if let Some(o) = &i.offline {
        let rate = if o.flush_rate > 0.0 {
            format!("{}/s", o.flush_rate)
        } else {
            "at once".into()
        };
        parts.push(
            format!(
                "offline (buffer {}, drop {:?}, flush {rate}, connection {:?})",
                o.buffer, o.drop, o.link
            )
            .to_lowercase(),
        );
    }
    if let Some(f) = &i.flap {
        let ms = |v: i64| humantime::format_duration(Duration::from_millis(v.max(0) as u64));
        let dist = |d: &DurationDist| match d.deviation {
            0 => format!("{}", ms(d.mean)),
            dev => format!("{} ± {}", ms(d.mean), ms(dev)),
        };
        let up = match (&f.uptime, f.per_minute) {
            (Some(u), _) => format!("up {}", dist(u)),
            (None, p) => format!("goes down with {} chance a minute", pct(p.unwrap_or(0.0))),
        };
        let link = f.offline.as_ref().map_or(LinkMode::Close, |o| o.link);
        parts.push(
            format!(
                "flapping ({up}, down {}, connection {link:?})",
                dist(&f.downtime)
            )
            .to_lowercase(),
        );
    }
    parts.join(", ")
}

#[derive(Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    rule: &'a PlannedRule,
    live: bool,
    describe: String,
}

#[derive(Serialize)]
struct ShowOutput<'a> {
    fleet: &'a str,
    rules: Vec<Shown<'a>>,
    /// What the live agents injected into the fleet since they started, in total and per
    /// cohort (absent when nothing was injected).
    #[serde(skip_serializing_if = "Option::is_none")]
    injected: Option<NetFigures>,
}

/// What the live agents injected into `fleet` since they started (from their heartbeats).
async fn injected(ctx: &Ctx, fleet: &str) -> Result<Option<NetFigures>> {
    let agents = load_agents(ctx).await?;
    let spans: Vec<Span<'_>> = live(&agents, now_ms())
        .into_iter()
        .map(|h| Span {
            latest: h,
            earlier: None,
        })
        .collect();
    let mode = Mode {
        reported_rates: false,
        span_percentiles: false,
    };
    Ok(tabulate(&spans, Some(fleet), mode)
        .fleets
        .into_iter()
        .next()
        .and_then(|f| f.figures.network))
}

async fn show(g: &Global, ctx: &Ctx, record: &FleetRecord) -> Result<()> {
    let injected = injected(ctx, record.name()).await?;
    let plan = record.network_plan();
    let now = now_ms();
    let rules: Vec<Shown> = plan
        .rules()
        .iter()
        .map(|r| Shown {
            rule: r,
            live: now >= r.from_ms && r.until_ms.is_none_or(|u| now < u),
            describe: describe(&r.impairments),
        })
        .collect();
    if g.json {
        return print_json(&ShowOutput {
            fleet: record.name(),
            rules,
            injected,
        });
    }
    let injected = injected.map(|n| n.lines(record.name()));
    if rules.is_empty() {
        println!(
            "fleet {}: no network rules (a perfect network)",
            record.name()
        );
        print!("{}", injected.unwrap_or_default());
        return Ok(());
    }
    let mut t = Table::new(&["FROM", "COHORT", "WHEN", "IMPAIRMENTS"]);
    for s in &rules {
        let when = match (s.live, s.rule.until_ms) {
            (true, Some(u)) => format!("now, {}s left", u.saturating_sub(now).div_ceil(1000)),
            (true, None) => "now".into(),
            (false, Some(u)) if u <= now => "ended".into(),
            (false, _) => format!("in {}s", s.rule.from_ms.saturating_sub(now).div_ceil(1000)),
        };
        let from = format!("{:?}[{}]", s.rule.origin, s.rule.position).to_lowercase();
        t.row(vec![
            from,
            s.rule
                .cohort
                .as_ref()
                .map_or("all".into(), ToString::to_string),
            when,
            s.describe.clone(),
        ]);
    }
    print!("{}", t.render());
    print!("{}", injected.unwrap_or_default());
    Ok(())
}

#[derive(Serialize)]
struct PresetOut {
    name: &'static str,
    about: &'static str,
    impairments: Impairments,
}

fn presets(g: &Global) -> Result<()> {
    let all: Vec<PresetOut> = PRESETS
        .iter()
        .map(|p| PresetOut {
            name: p.name,
            about: p.about,
            impairments: p.impairments(),
        })
        .collect();
    if g.json {
        return print_json(&all);
    }
    let mut t = Table::new(&["PRESET", "IMPAIRMENTS"]);
    for p in &all {
        t.row(vec![p.name.into(), describe(&p.impairments)]);
    }
    print!("{}", t.render());
    for p in &all {
        println!("{}: {}", p.name, p.about);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_are_shares_or_fractions() {
        assert_eq!(parse_probability("5%"), Ok(0.05));
        assert_eq!(parse_probability("0.05"), Ok(0.05));
        assert!(parse_probability("150%").is_err());
        assert!(parse_probability("-0.1").is_err());
        assert!(parse_gilbert("1%,30%").is_ok());
        assert!(parse_gilbert("1%").is_err());
    }
}
