//! Load shapes inside a shard runner: the arrival shape decides which devices run, and a
//! fleet-wide rate replaces the clock by Φ, the pace every agent computes alike (see
//! `pluribus_common::load`). Heap keys are then positions in thousandths of a slot
//! instead of due times in ms.

use std::cmp::Reverse;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use pluribus_common::load::Pace;
use pluribus_common::time::now_ms;

use super::schedule::Schedule;
use super::{milli_rate, Runner};

/// The pace of a rate-driven shard.
pub(super) struct PaceState {
    pub(super) pace: Pace,
    /// The seq of position 0.
    pub(super) seq_base: u64,
    /// Scheduled msg/s (thousandths) this shard last reported to the metrics.
    reported_milli: u64,
}

/// How often a shard with a load shape re-reads it (arrival and rate).
pub(super) const LOAD_TICK: Duration = Duration::from_millis(100);
/// Longest sleep of a rate-driven shard, so that rate changes are followed.
const PACE_MAX_SLEEP: Duration = Duration::from_millis(50);

/// A device's phase within a rate-driven slot, 0..1 (from its schedule's salt).
pub(super) fn phase_of(sched: &Schedule) -> f64 {
    (sched.salt % 1000) as f64 / 1000.0
}

/// The heap key of slot `k` at `phase`: its Φ position in thousandths of a slot.
pub(super) fn position_key(k: u64, phase: f64) -> u64 {
    ((k as f64 + phase) * 1000.0) as u64
}

impl Runner {
    /// The scheduled rate (thousandths of msg/s) of the clock-driven devices that publish.
    pub(super) fn clock_rate_milli(&self) -> u64 {
        self.slots
            .iter()
            .flatten()
            .filter(|s| self.sinks[s.sink as usize].1.publishes())
            .map(|s| milli_rate(s.sched.interval_ms))
            .sum()
    }

    /// Sets up (or drops) the pace from the record's load.
    pub(super) fn reset_pace(&mut self) {
        if let Some(old) = self.pace.take() {
            self.metrics
                .scheduled_milli_per_s
                .fetch_sub(old.reported_milli, Relaxed);
        }
        let Some(load) = self.record.spec.load.clone().filter(|l| l.rate.is_some()) else {
            return;
        };
        let first = self.record.epoch_for(0);
        let origin = self.record.load_since_ms.unwrap_or(first.epoch_ms);
        let pace = Pace::new(load, origin, self.record.count(), self.seed);
        self.pace = Some(PaceState {
            pace,
            seq_base: first.seq_base,
            reported_milli: 0,
        });
    }

    /// Follows the load shape: starts and stops devices as the arrival shape moves, and
    /// reports the scheduled rate of a rate-driven shard.
    pub(super) async fn load_tick(&mut self) {
        self.sync_devices().await;
        let running = self.running;
        if let Some(p) = self.pace.as_mut() {
            let milli = (p.pace.rate_at(now_ms()) * running as f64 * 1000.0) as u64;
            self.metrics.scheduled_milli_per_s.fetch_add(milli, Relaxed);
            self.metrics
                .scheduled_milli_per_s
                .fetch_sub(p.reported_milli, Relaxed);
            p.reported_milli = milli;
        }
    }

    /// A device's next slot at `now` (never below `min_seq`) and its heap key. Rate-driven,
    /// slot k is due when Φ reaches k + the device's phase; otherwise at its schedule's time.
    pub(super) fn plan(
        pace: &mut Option<PaceState>,
        sched: &Schedule,
        min_seq: u64,
        now: u64,
    ) -> (u64, u64) {
        match pace.as_mut() {
            Some(p) => {
                let phase = phase_of(sched);
                let k = ((p.pace.phi(now) - phase).max(0.0).ceil() as u64)
                    .max(min_seq.saturating_sub(p.seq_base));
                (p.seq_base + k, position_key(k, phase))
            }
            None => {
                let seq = sched.first_seq(now).max(min_seq);
                (seq, sched.due_ms(seq))
            }
        }
    }

    /// Puts every running device on the record's current schedule (after `set-load`),
    /// seq carrying on.
    pub(super) fn reschedule_all(&mut self) {
        let now = now_ms();
        let base = self.base();
        for at in 0..self.slots.len() {
            let Some(slot) = self.slots[at].as_ref() else {
                continue;
            };
            let epoch = self.record.epoch_for(base + at as u64);
            let sched = Schedule {
                start_ms: epoch.epoch_ms + slot.sched.salt % slot.sched.interval_ms,
                seq_base: epoch.seq_base,
                ..slot.sched
            };
            let (seq, key) = Self::plan(&mut self.pace, &sched, slot.seq, now);
            self.gen = self.gen.wrapping_add(1);
            let gen = self.gen;
            let mut publishes = false;
            if let Some(slot) = self.slots[at].as_mut() {
                slot.sched = sched;
                slot.seq = seq;
                slot.gen = gen;
                publishes = self.sinks[slot.sink as usize].1.publishes();
            }
            if publishes {
                self.heap.push(Reverse((key, at as u32, gen)));
            }
        }
    }

    /// The heap key limit now: due time (ms) or Φ position (thousandths of a slot).
    pub(super) fn key_now(&mut self, now: u64) -> u64 {
        match self.pace.as_mut() {
            Some(p) => (p.pace.phi(now) * 1000.0) as u64,
            None => now,
        }
    }

    /// How long until `key` is due.
    pub(super) fn wait_for(&mut self, key: u64) -> Duration {
        let now = now_ms();
        match self.pace.as_mut() {
            None => Duration::from_millis(key.saturating_sub(now)),
            Some(p) => {
                let (phi, rate) = (p.pace.phi(now), p.pace.rate_at(now));
                let ahead = key as f64 / 1000.0 - phi;
                if ahead <= 0.0 {
                    Duration::ZERO
                } else if rate <= 0.0 {
                    PACE_MAX_SLEEP
                } else {
                    Duration::from_secs_f64(ahead / rate).min(PACE_MAX_SLEEP)
                }
            }
        }
    }
}
