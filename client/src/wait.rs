//! Waiting for the agents to act on a change: devices running after a deploy, shards gone
//! after a delete, shrink or drain. Each wait follows the leases bucket with a KV watch
//! (no polling) and shows progress on stderr.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use pluribus_common::messages::LeaseRecord;
use pluribus_common::record::FleetRecord;
use pluribus_common::subjects::parse_lease_key;
use pluribus_common::time::now_ms;
use pluribus_common::wire::decode;
use tokio::time::Instant;

use crate::feed::KvFeed;
use crate::output::{duration, Progress};
use crate::state::{self, running, Blocker, LeaseMap};
use crate::Ctx;

/// Progress is refreshed at this pace.
const TICK: Duration = Duration::from_millis(500);
/// After this long without progress, the wait checks whether the agents can run the rest.
const STALL: Duration = Duration::from_secs(10);

static EMPTY: LeaseMap = BTreeMap::new();

/// The live leases matching a filter, kept up to date from a KV watch.
pub struct LeaseWatch {
    feed: KvFeed,
    by_fleet: BTreeMap<String, LeaseMap>,
}

impl LeaseWatch {
    /// Follows the leases matching `filter` (`<fleet>.*` or `>`).
    pub async fn open(ctx: &Ctx, filter: &str) -> Result<Self> {
        Ok(Self {
            feed: KvFeed::open(&ctx.conn.client, &ctx.buckets.leases, filter).await?,
            by_fleet: BTreeMap::new(),
        })
    }

    /// Waits for the next change and applies it. Cancel-safe.
    pub async fn next(&mut self) -> Result<()> {
        let Some(c) = self.feed.next().await? else {
            bail!("lost the connection to NATS while waiting: the change is recorded; see `pluribusctl status`");
        };
        let Some((fleet, shard)) = parse_lease_key(&c.key) else {
            return Ok(());
        };
        if !c.live {
            if let Some(m) = self.by_fleet.get_mut(fleet) {
                m.remove(&shard);
                if m.is_empty() {
                    self.by_fleet.remove(fleet);
                }
            }
            return Ok(());
        }
        match decode::<LeaseRecord>(&c.value) {
            Ok(l) => {
                self.by_fleet
                    .entry(fleet.to_string())
                    .or_default()
                    .insert(shard, l);
            }
            Err(e) => tracing::warn!("ignoring lease {}: {e}", c.key),
        }
        Ok(())
    }

    /// True once the leases present at the start have all been seen.
    pub fn caught_up(&self) -> bool {
        self.feed.caught_up()
    }

    /// The live leases of one fleet.
    pub fn fleet(&self, name: &str) -> &LeaseMap {
        self.by_fleet.get(name).unwrap_or(&EMPTY)
    }

    /// Every live lease, by fleet.
    pub fn all(&self) -> &BTreeMap<String, LeaseMap> {
        &self.by_fleet
    }

    /// Takes the leases out.
    pub fn into_fleet(mut self, name: &str) -> LeaseMap {
        self.by_fleet.remove(name).unwrap_or_default()
    }
}

/// What a wait condition says about the current leases.
pub enum Step {
    /// The condition holds.
    Done,
    /// Not yet; the text tells how far along it is.
    Wait(String),
}

/// Waits until `check` says done, following the leases matching `filter`. At `timeout`,
/// fails with what `timed_out` says.
pub async fn leases_until(
    ctx: &Ctx,
    filter: &str,
    timeout: Duration,
    mut check: impl FnMut(&LeaseWatch) -> Step,
    timed_out: impl FnOnce(&LeaseWatch) -> anyhow::Error,
) -> Result<LeaseWatch> {
    let mut watch = LeaseWatch::open(ctx, filter).await?;
    let deadline = Instant::now() + timeout;
    let mut progress = Progress::new();
    let mut tick = tokio::time::interval(TICK);
    loop {
        if watch.caught_up() {
            match check(&watch) {
                Step::Done => return Ok(watch),
                Step::Wait(text) => progress.show(&text),
            }
        }
        tokio::select! {
            r = watch.next() => r?,
            _ = tick.tick() => watch.feed.check_idle(),
            _ = tokio::time::sleep_until(deadline) => {
                if !watch.caught_up() || matches!(check(&watch), Step::Wait(_)) {
                    progress.finish();
                    return Err(timed_out(&watch));
                }
            }
        }
    }
}

/// Waits until every desired device of `record` runs at its current generation; follows the
/// record too (a replace or scale by someone else moves the goal). Returns the fleet's leases.
pub async fn until_running(ctx: &Ctx, record: &FleetRecord, timeout: Duration) -> Result<LeaseMap> {
    let mut record = record.clone();
    let name = record.name().to_string();
    let mut leases = LeaseWatch::open(ctx, &format!("{name}.*")).await?;
    let mut fleet = KvFeed::open(&ctx.conn.client, &ctx.buckets.fleets, &name).await?;
    let started = Instant::now();
    let deadline = started + timeout;
    let mut progress = Progress::new();
    let mut tick = tokio::time::interval(TICK);
    let mut last_running = 0u64;
    let mut last_change = started;
    let mut last_check = started;
    loop {
        let run = running(&record, leases.fleet(&name));
        let desired = record.desired();
        if run.devices >= desired {
            progress.finish();
            return Ok(leases.into_fleet(&name));
        }
        tokio::select! {
            r = leases.next() => r?,
            c = fleet.next() => match c? {
                Some(c) if c.live => match decode::<FleetRecord>(&c.value) {
                    Ok(r) => record = r,
                    Err(e) => tracing::warn!("ignoring an unreadable record of {name}: {e}"),
                },
                Some(_) => bail!("{name} was deleted while waiting for it to run"),
                None => bail!("lost the connection to NATS while waiting: {name} is recorded; see `pluribusctl status {name}`"),
            },
            _ = tokio::time::sleep_until(deadline) => {
                progress.finish();
                bail!(
                    "timed out after {}: {} of {desired} devices of {name} assigned to agents ({} pending): see `pluribusctl status {name}`",
                    duration(timeout), run.devices, desired - run.devices
                );
            }
            _ = tick.tick() => {
                let pending = desired - run.devices;
                progress.show(&format!(
                    "deploying {name}: {}/{desired} devices assigned to {} agent{}",
                    run.devices,
                    run.agents.len(),
                    if run.agents.len() == 1 { "" } else { "s" }
                ));
                let now = Instant::now();
                if run.devices != last_running {
                    last_running = run.devices;
                    last_change = now;
                }
                if now - last_change >= STALL && now - last_check >= Duration::from_secs(2) {
                    last_check = now;
                    let agents = state::load_agents(ctx).await?;
                    let live = state::live(&agents, now_ms());
                    if let Some(b) = state::blocker(&record.spec, &live, pending) {
                        progress.finish();
                        return Err(stalled(&name, pending, &b, &ctx.agent_command()));
                    }
                }
            }
        }
    }
}

/// The error when pending devices cannot run.
fn stalled(name: &str, pending: u64, b: &Blocker, start_agent: &str) -> anyhow::Error {
    match b {
        Blocker::Capacity { spare } => anyhow!(
            "not enough capacity: {pending} devices of {name} pending; live agents have room for {spare} more: start more agents, or raise --max-devices (for MQTT devices, each agent holds at most its open-files limit: run more agent processes)"
        ),
        Blocker::AllDraining => anyhow!(
            "{pending} devices of {name} pending, but every live agent that can run them is draining: start another agent, or `pluribusctl drain AGENT --undo`"
        ),
        Blocker::NoAgent => anyhow!(
            "{pending} devices of {name} pending, but no agent is alive: start one with `{start_agent}`"
        ),
        Blocker::NoFit(why) => anyhow!("{pending} devices of {name} pending: {why}"),
    }
}

/// Waits until no live lease of fleet `name` remains.
pub async fn until_gone(ctx: &Ctx, name: &str, timeout: Duration) -> Result<()> {
    let what = name.to_string();
    leases_until(
        ctx,
        &format!("{name}.*"),
        timeout,
        |w| {
            let l = w.fleet(&what);
            if l.is_empty() {
                return Step::Done;
            }
            let devices: u64 = l.values().map(|l| l.devices).sum();
            Step::Wait(format!(
                "stopping {what}: {devices} devices in {} shards still running",
                l.len()
            ))
        },
        |w| {
            let l = w.fleet(name);
            anyhow!(
                "timed out after {}: {} shards of {name} still held ({} devices): the agents stop them when their leases lapse; see `pluribusctl status`",
                duration(timeout),
                l.len(),
                l.values().map(|l| l.devices).sum::<u64>()
            )
        },
    )
    .await
    .map(|_| ())
}

/// Devices that still run above what `record` wants, given the live leases: shards past the
/// end, and the part of the last shard above its desired devices.
pub fn excess(record: &FleetRecord, leases: &LeaseMap) -> u64 {
    let count = record.shard_count();
    let past: u64 = leases.range(count..).map(|(_, l)| l.devices).sum();
    let boundary = count
        .checked_sub(1)
        .and_then(|last| leases.get(&last).map(|l| (last, l)))
        .map_or(0, |(last, l)| {
            l.devices.saturating_sub(record.shard_desired(last))
        });
    past + boundary
}

/// True when the shrink of `record` is done: no lease past the end, and the last shard's
/// lease (if any) reports exactly its desired devices.
pub fn shrunk(record: &FleetRecord, leases: &LeaseMap) -> bool {
    let count = record.shard_count();
    leases.range(count..).next().is_none()
        && count.checked_sub(1).is_none_or(|last| {
            leases
                .get(&last)
                .is_none_or(|l| l.devices == record.shard_desired(last))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pluribus_common::record::RecordKind;
    use pluribus_common::spec::FleetSpec;

    fn lease(devices: u64) -> LeaseRecord {
        LeaseRecord {
            v: 1,
            agent_id: "a".into(),
            agent_name: "n".into(),
            devices,
            generation: 1,
            since_ms: 0,
            epoch: 0,
        }
    }

    #[test]
    fn shrinking_waits_for_the_tail_and_the_boundary_shard() {
        let mut s = FleetSpec::counted("f", 1000);
        s.shard_size = 100;
        let mut r = FleetRecord::new(RecordKind::Fleet, s, 0, Duration::ZERO);
        let mut leases: LeaseMap = (0..10).map(|s| (s, lease(100))).collect();
        r.scale(450, 0, Duration::ZERO);
        assert_eq!(r.shard_count(), 5);
        assert!(!shrunk(&r, &leases));
        assert_eq!(excess(&r, &leases), 550);
        for s in 5..10 {
            leases.remove(&s);
        }
        assert!(!shrunk(&r, &leases));
        assert_eq!(excess(&r, &leases), 50);
        leases.insert(4, lease(50));
        assert!(shrunk(&r, &leases));
        assert_eq!(excess(&r, &leases), 0);
        leases.remove(&4);
        assert!(shrunk(&r, &leases));
        r.scale(0, 0, Duration::ZERO);
        assert!(!shrunk(&r, &leases));
        leases.clear();
        assert!(shrunk(&r, &leases));
    }
}
