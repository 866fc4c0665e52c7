//! Desired state as stored in the fleets KV bucket, and the arithmetic over it: which
//! devices a shard holds, what each device is called, and when its schedule started.

use std::collections::BTreeSet;
use std::ops::Range;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::spec::{DeviceTemplate, FleetSpec, SinkSpec, Template, TemplateVars};
use crate::{SpecError, PROTOCOL_VERSION};

/// The most schedule epochs a record may carry (one per scale-up since the last replace).
pub const MAX_EPOCHS: usize = 10_000;

/// What the user deployed: a fleet, or a single device (`pluribusctl deploy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// `deploy-fleet`
    Fleet,
    /// `deploy`: a fleet of one device, named after it.
    Device,
}

/// Devices from `from_index` on started their schedules at `epoch_ms` (a fleet grows by
/// `scale`, and the new devices start later than the first ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Epoch {
    /// First device index this epoch applies to.
    pub from_index: u64,
    /// Unix ms of the device's first slot (before its phase offset).
    pub epoch_ms: u64,
    /// The `seq` of that first slot: after a `--replace` the schedule starts again, and
    /// `seq` carries on above every value already sent instead of going back to 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq_base: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// The value under a fleet's key in the fleets bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetRecord {
    /// Protocol version.
    pub v: u32,
    /// Fleet or single device.
    pub kind: RecordKind,
    /// What the user asked for; `count` follows `scale`.
    pub spec: FleetSpec,
    /// Bumped when the spec is replaced (`--replace`): agents restart the devices.
    pub generation: u64,
    /// When the fleet was first deployed.
    pub created_ms: u64,
    /// Schedule start per range of indices; sorted by `from_index`.
    pub epochs: Vec<Epoch>,
    /// When the load shape started (Unix ms): the schedule's epoch at deploy, or the time
    /// of the last `set-load`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_since_ms: Option<u64>,
    /// Indices stopped one by one with `pluribusctl stop`.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub stopped: BTreeSet<u64>,
    /// Network rules set at runtime (`pluribusctl network`), over the spec's `network:`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network: Vec<crate::spec::network::plan::RuntimeRule>,
}

/// Everything needed to run one device, resolved from the fleet and its entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedDevice<'a> {
    /// Index in the fleet.
    pub index: u64,
    /// Device id.
    pub device_id: String,
    /// Device type.
    pub kind: &'a str,
    /// Interval between telemetry messages.
    pub interval: Duration,
    /// Type options.
    pub options: &'a serde_json::Value,
    /// Where its telemetry goes.
    pub sink: &'a SinkSpec,
    /// When its schedule starts, and the seq of its first slot.
    pub epoch: Epoch,
}

impl FleetRecord {
    /// A new record; devices start their schedules `start_delay` from now, which leaves
    /// agents time to claim them so that every device sends `seq` 0.
    pub fn new(kind: RecordKind, spec: FleetSpec, now_ms: u64, start_delay: Duration) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            kind,
            spec,
            generation: 1,
            created_ms: now_ms,
            epochs: vec![Epoch {
                from_index: 0,
                epoch_ms: now_ms + start_delay.as_millis() as u64,
                seq_base: 0,
            }],
            stopped: BTreeSet::new(),
            load_since_ms: None,
            network: Vec::new(),
        }
    }

    /// Checks a record read from KV before anything is allocated for it: whoever wrote it
    /// may not be `pluribusctl`. The spec gets every check `pluribusctl` makes (sizes,
    /// templates, telemetry subjects), and the record's own fields are bounded.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.spec.validate()?;
        if self.epochs.is_empty() || self.epochs.len() > MAX_EPOCHS {
            return Err(SpecError::new(
                "epochs",
                format!(
                    "{} schedule epochs: a record has 1 to {MAX_EPOCHS}; redeploy the fleet with pluribusctl",
                    self.epochs.len()
                ),
            ));
        }
        if self
            .epochs
            .windows(2)
            .any(|w| w[0].from_index > w[1].from_index)
            || self.epochs[0].from_index != 0
        {
            return Err(SpecError::new(
                "epochs",
                "are not sorted from index 0: redeploy the fleet with pluribusctl",
            ));
        }
        if self.stopped.len() as u64 > self.count() {
            return Err(SpecError::new(
                "stopped",
                "lists more devices than the fleet has: redeploy the fleet with pluribusctl",
            ));
        }
        // Runtime network rules are checked like the spec's own.
        if self.network.len() > crate::spec::network::MAX_RULES {
            return Err(SpecError::new(
                "network",
                format!(
                    "{} runtime rules: at most {}; clear them with pluribusctl network clear",
                    self.network.len(),
                    crate::spec::network::MAX_RULES
                ),
            ));
        }
        for (i, r) in self.network.iter().enumerate() {
            r.rule.validate(&format!("network[{i}]"))?;
        }
        let named = self.network_cohorts().len();
        if named > crate::spec::network::MAX_COHORTS {
            return Err(SpecError::new(
                "network",
                format!(
                    "the fleet's rules name {named} different cohorts: at most {}; clear some with pluribusctl network clear --cohort",
                    crate::spec::network::MAX_COHORTS
                ),
            ));
        }
        Ok(())
    }

    /// The distinct cohorts the fleet's rules name (file and runtime).
    pub fn network_cohorts(&self) -> Vec<&crate::spec::network::Cohort> {
        let spec = self
            .spec
            .network
            .iter()
            .flat_map(|n| n.cohorts.iter().chain(&n.timeline));
        crate::spec::network::cohorts(spec.chain(self.network.iter().map(|r| &r.rule)))
    }

    /// The fleet's network rules (file and runtime), with the timeline counted from the
    /// first device's schedule start.
    pub fn network_plan(&self) -> crate::spec::network::plan::NetPlan {
        let start = self
            .epochs
            .first()
            .map(|e| e.epoch_ms)
            .unwrap_or(self.created_ms);
        crate::spec::network::plan::NetPlan::new(
            self.spec.network.as_ref(),
            &self.network,
            start,
            self.spec.seed.unwrap_or(0),
        )
    }

    /// Seconds since the load shape started, at `now_ms`.
    pub fn load_elapsed(&self, now_ms: u64) -> f64 {
        let since = self.load_since_ms.unwrap_or_else(|| {
            self.epochs
                .first()
                .map(|e| e.epoch_ms)
                .unwrap_or(self.created_ms)
        });
        now_ms.saturating_sub(since) as f64 / 1000.0
    }

    /// Devices the load shape has active now (all desired ones without an arrival shape).
    pub fn active_at(&self, now_ms: u64) -> u64 {
        match &self.spec.load {
            Some(l) => l.active(
                self.load_elapsed(now_ms),
                self.count(),
                self.spec.seed.unwrap_or(0),
            ),
            None => self.count(),
        }
    }

    /// The fleet name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Devices the spec asks for (stopped ones included).
    pub fn count(&self) -> u64 {
        self.spec.device_count()
    }

    /// Devices that should run.
    pub fn desired(&self) -> u64 {
        self.count() - self.stopped.iter().filter(|&&i| i < self.count()).count() as u64
    }

    /// Number of shards.
    pub fn shard_count(&self) -> u32 {
        let size = u64::from(self.spec.shard_size.max(1));
        self.count().div_ceil(size) as u32
    }

    /// Device indices in a shard (empty past the end).
    pub fn shard_range(&self, shard: u32) -> Range<u64> {
        let size = u64::from(self.spec.shard_size.max(1));
        let start = (u64::from(shard) * size).min(self.count());
        let end = (start + size).min(self.count());
        start..end
    }

    /// Devices that should run in a shard.
    pub fn shard_desired(&self, shard: u32) -> u64 {
        let r = self.shard_range(shard);
        let stopped = self.stopped.range(r.clone()).count() as u64;
        r.end - r.start - stopped
    }

    /// When the fleet stops and deletes itself, if it has a duration.
    pub fn expires_ms(&self) -> Option<u64> {
        self.spec
            .duration
            .map(|d| self.created_ms + d.as_millis() as u64)
    }

    /// The schedule start of device `index`.
    pub fn epoch_for(&self, index: u64) -> Epoch {
        self.epochs
            .iter()
            .rev()
            .find(|e| e.from_index <= index)
            .copied()
            .unwrap_or(Epoch {
                from_index: 0,
                epoch_ms: self.created_ms,
                seq_base: 0,
            })
    }

    /// Starts every device's schedule again `start_delay` from now (a replaced spec may
    /// have another interval), with `seq` continuing above anything the current spec can
    /// have sent by then. Call it before changing the spec.
    pub fn restart_schedule(&mut self, now_ms: u64, start_delay: Duration) {
        let start = now_ms + start_delay.as_millis() as u64;
        let shortest = self
            .spec
            .devices
            .iter()
            .filter_map(|d| d.interval)
            .chain(std::iter::once(self.spec.device.interval))
            .min()
            .unwrap_or(self.spec.device.interval)
            .as_millis()
            .max(1) as u64;
        let reached = match self.spec.load.clone().filter(|l| l.rate.is_some()) {
            // Rate-driven: every device is at most at Φ(start) slots past the seq base.
            Some(load) => {
                let first = self.epoch_for(0);
                let origin = self.load_since_ms.unwrap_or(first.epoch_ms);
                let seed = self.spec.seed.unwrap_or(0);
                let mut pace = crate::load::Pace::new(load, origin, self.count(), seed);
                first.seq_base + pace.phi(start).ceil() as u64 + 1
            }
            None => self
                .epochs
                .iter()
                .map(|e| e.seq_base + start.saturating_sub(e.epoch_ms) / shortest + 1)
                .max()
                .unwrap_or(0),
        };
        self.epochs = vec![Epoch {
            from_index: 0,
            epoch_ms: start,
            seq_base: reached,
        }];
        self.load_since_ms = Some(start);
    }

    /// Grows or shrinks the fleet to `count`. New devices start after `start_delay`.
    pub fn scale(&mut self, count: u64, now_ms: u64, start_delay: Duration) {
        let old = self.count();
        self.epochs
            .retain(|e| e.from_index < count || e.from_index == 0);
        if count > old {
            self.epochs.push(Epoch {
                from_index: old,
                epoch_ms: now_ms + start_delay.as_millis() as u64,
                seq_base: 0,
            });
        }
        self.stopped.retain(|&i| i < count);
        self.spec.count = Some(count);
    }

    /// Resolves device `index` with a pre-parsed id template (see [`FleetSpec::id_template`]).
    pub fn resolve<'a>(&'a self, index: u64, ids: Option<&Template>) -> ResolvedDevice<'a> {
        let spec = &self.spec;
        let d: &DeviceTemplate = &spec.device;
        match spec.devices.get(index as usize) {
            Some(e) if spec.count.is_none() => ResolvedDevice {
                index,
                device_id: e.device_id.clone(),
                kind: e.kind.as_deref().unwrap_or(&d.kind),
                interval: e.interval.unwrap_or(d.interval),
                options: if e.options.is_null() {
                    &d.options
                } else {
                    &e.options
                },
                sink: e.sink.as_ref().unwrap_or(&spec.sink),
                epoch: self.epoch_for(index),
            },
            _ => ResolvedDevice {
                index,
                device_id: match ids {
                    Some(t) => t.render(&TemplateVars {
                        fleet: &spec.name,
                        device_id: None,
                        index,
                    }),
                    None => format!("{}-{index:05}", spec.name),
                },
                kind: &d.kind,
                interval: d.interval,
                options: &d.options,
                sink: &spec.sink,
                epoch: self.epoch_for(index),
            },
        }
    }

    /// The index of a device id, if it belongs to this fleet.
    pub fn index_of(&self, device_id: &str) -> Option<u64> {
        if self.spec.count.is_none() {
            return self
                .spec
                .devices
                .iter()
                .position(|d| d.device_id == device_id)
                .map(|i| i as u64);
        }
        let t = self.spec.id_template().ok()?;
        // Try every run of digits in the id as the index, then confirm by rendering.
        let bytes = device_id.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i].is_ascii_digit() {
                let start = i;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                if let Ok(idx) = device_id[start..i].parse::<u64>() {
                    if idx < self.count()
                        && t.render(&TemplateVars {
                            fleet: &self.spec.name,
                            device_id: None,
                            index: idx,
                        }) == device_id
                    {
                        return Some(idx);
                    }
                }
            } else {
                i += 1;
            }
        }
        None
    }

    /// True when `other` is the same deployment (for idempotent deploys): the spec matches.
    pub fn same_spec(&self, spec: &FleetSpec) -> bool {
        &self.spec == spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(count: u64, shard: u32) -> FleetRecord {
        let mut s = FleetSpec::counted("f", count);
        s.shard_size = shard;
        FleetRecord::new(RecordKind::Fleet, s, 1_000, Duration::from_secs(2))
    }

    #[test]
    fn shards_cover_every_device_once() {
        let r = rec(1050, 100);
        assert_eq!(r.shard_count(), 11);
        assert_eq!(r.shard_range(0), 0..100);
        assert_eq!(r.shard_range(10), 1000..1050);
        assert_eq!(r.shard_range(11), 1050..1050);
        let total: u64 = (0..r.shard_count()).map(|s| r.shard_desired(s)).sum();
        assert_eq!(total, 1050);
    }

    #[test]
    fn scaling_keeps_old_epochs_and_dates_new_devices() {
        let mut r = rec(10, 5);
        assert_eq!(r.epoch_for(9).epoch_ms, 3_000);
        r.scale(20, 10_000, Duration::from_secs(2));
        assert_eq!(r.epoch_for(9).epoch_ms, 3_000);
        assert_eq!(r.epoch_for(10).epoch_ms, 12_000);
        r.scale(5, 20_000, Duration::ZERO);
        assert_eq!(r.epochs.len(), 1);
        assert_eq!(r.count(), 5);
    }

    #[test]
    fn a_restarted_schedule_continues_seq_above_what_was_sent() {
        let mut r = rec(10, 5);
        // Epoch 3_000 at 1 s: by 20_000 + 2 s no device is past seq 19.
        r.restart_schedule(20_000, Duration::from_secs(2));
        assert_eq!(r.epochs.len(), 1);
        assert_eq!(r.epoch_for(0).epoch_ms, 22_000);
        assert!(r.epoch_for(0).seq_base >= 20, "{:?}", r.epochs);
    }

    #[test]
    fn device_ids_come_from_the_template_and_back() {
        let r = rec(200, 50);
        let t = r.spec.id_template().expect("tpl");
        let d = r.resolve(42, Some(&t));
        assert_eq!(d.device_id, "f-00042");
        assert_eq!(r.index_of("f-00042"), Some(42));
        assert_eq!(r.index_of("f-00200"), None);
        assert_eq!(r.index_of("g-00001"), None);
    }

    #[test]
    fn records_are_checked_before_use() {
        rec(10, 5).validate().expect("valid");
        let mut r = rec(10, 5);
        r.epochs.clear();
        assert_eq!(r.validate().expect_err("no epoch").field, "epochs");
        let mut r = rec(10, 5);
        r.stopped = (0..11).collect();
        assert_eq!(r.validate().expect_err("stopped").field, "stopped");
        let mut r = rec(10, 5);
        r.spec.count = Some(u64::MAX);
        assert_eq!(r.validate().expect_err("count").field, "count");
    }

    #[test]
    fn stopped_devices_are_not_desired() {
        let mut r = rec(10, 5);
        r.stopped.insert(3);
        assert_eq!(r.desired(), 9);
        assert_eq!(r.shard_desired(0), 4);
        assert_eq!(r.shard_desired(1), 5);
    }
}
