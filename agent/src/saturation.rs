//! Achieved rate and saturation of one fleet on this agent, judged at each heartbeat.
//!
//! A fleet is *saturated* when the agent cannot keep up with its schedule: over the last
//! interval it sent (or tried to send: a failed send is the sink's problem, not the
//! generator's) less than 98% of the scheduled messages, **and** the backlog since a
//! baseline is larger than the schedule's own unevenness can explain.
//!
//! Why the second condition: a device sends at `epoch + phase + k × interval`, so the
//! messages due in one short interval differ from `rate × dt` by up to a message or two per
//! device (phase, jitter, batching). A light fleet would look behind half of the time. A
//! generator that really cannot keep up builds a backlog that grows without bound, so
//! comparing the sends since a baseline with the scheduled rate integrated over the same
//! time tells the two apart. The scheduled rate may move (a load shape's pace): it is
//! integrated, not assumed constant.
//!
//! Not judged: the fleet's first interval (nothing is judged until [`EPOCH_LEAD`] after its
//! devices started and messages flow, since a deploy sets the schedule's epoch up to that
//! far ahead), and any interval in which its devices changed; a change widens the allowance
//! by what new devices may owe for their own epoch lead. Each interval in which the agent
//! kept up becomes the new baseline.

use std::time::{Duration, Instant};

/// How far ahead of a deploy or scale the schedule's epoch may be (`pluribusctl` sets 2 s).
pub const EPOCH_LEAD: Duration = Duration::from_secs(2);
/// Achieved below this share of the schedule counts as behind.
pub const BEHIND_RATIO: f64 = 0.98;
/// Backlog, in messages per running device, that the schedule's unevenness can explain.
const SLACK_PER_DEVICE: f64 = 3.0;
/// Backlog a batch in flight can explain (the runners count a batch when it is done).
const SLACK_BATCH: f64 = 4096.0;
/// Shorter intervals (a ping between two heartbeats) keep the previous figures.
const MIN_INTERVAL: Duration = Duration::from_millis(150);

/// What a fleet's counters read at one heartbeat.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Devices running.
    pub devices: u64,
    /// Scheduled messages per second, in thousandths.
    pub scheduled_milli: u64,
    /// Messages sent so far.
    pub messages: u64,
    /// Failed sends so far.
    pub errors: u64,
}

impl Reading {
    fn attempts(&self) -> u64 {
        self.messages + self.errors
    }

    fn scheduled(&self) -> f64 {
        self.scheduled_milli as f64 / 1000.0
    }
}

/// The figures of the last judged interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Verdict {
    /// Messages per second over the last interval.
    pub achieved_per_s: f64,
    /// Behind schedule (see the module doc).
    pub saturated: bool,
}

/// Where the backlog is counted from.
#[derive(Debug, Clone, Copy)]
struct Baseline {
    attempts: u64,
    /// Scheduled messages since the baseline (the rate integrated over time).
    expected: f64,
    /// Backlog the schedule's unevenness and device changes can explain.
    allowance: f64,
}

impl Baseline {
    fn new(r: &Reading) -> Self {
        Self {
            attempts: r.attempts(),
            expected: 0.0,
            allowance: SLACK_PER_DEVICE * r.devices as f64 + SLACK_BATCH,
        }
    }
}

/// Tracks one fleet across heartbeats.
#[derive(Debug, Clone, Default)]
pub struct RateTracker {
    prev: Option<(Instant, Reading)>,
    /// Since when the devices are unchanged while waiting for a baseline, and the
    /// attempts then.
    settled_from: Option<(Instant, u64)>,
    baseline: Option<Baseline>,
    last: Verdict,
}

impl RateTracker {
    /// Takes a reading at `now` and returns the figures of the interval since the last one.
    pub fn observe(&mut self, now: Instant, r: Reading) -> Verdict {
        let Some((then, prev)) = self.prev else {
            self.restart(now, r);
            return self.last;
        };
        let dt = now.saturating_duration_since(then);
        if dt < MIN_INTERVAL {
            return self.last;
        }
        self.prev = Some((now, r));
        if r.attempts() < prev.attempts() || r.devices == 0 {
            self.restart(now, r);
            return self.last;
        }
        let dt_s = dt.as_secs_f64();
        self.last = Verdict {
            achieved_per_s: r.messages.saturating_sub(prev.messages) as f64 / dt_s,
            saturated: false,
        };
        let devices_changed = r.devices != prev.devices;
        let Some(b) = self.baseline.as_mut() else {
            // Wait until the epoch has surely passed and messages flow; the interval in
            // which they started is partial, so it becomes the baseline and is not judged.
            match self.settled_from {
                Some(_) if devices_changed => self.settled_from = Some((now, r.attempts())),
                Some((since, attempts)) => {
                    if now.saturating_duration_since(since) >= EPOCH_LEAD && r.attempts() > attempts
                    {
                        self.baseline = Some(Baseline::new(&r));
                    }
                }
                None => self.settled_from = Some((now, r.attempts())),
            }
            return self.last;
        };
        let scheduled = (prev.scheduled() + r.scheduled()) / 2.0;
        b.expected += scheduled * dt_s;
        if devices_changed {
            // New devices may not send for an epoch lead, and each device's phase adds
            // unevenness: widen the allowance, and do not judge this interval.
            let more = (r.scheduled() - prev.scheduled()).max(0.0) * EPOCH_LEAD.as_secs_f64();
            b.allowance += more + SLACK_PER_DEVICE * r.devices.abs_diff(prev.devices) as f64;
            return self.last;
        }
        let tried_per_s = r.attempts().saturating_sub(prev.attempts()) as f64 / dt_s;
        if scheduled <= 0.0 || tried_per_s >= BEHIND_RATIO * scheduled {
            // Kept up over this interval: measure any backlog from here.
            *b = Baseline::new(&r);
            return self.last;
        }
        let backlog = b.expected - r.attempts().saturating_sub(b.attempts) as f64;
        self.last.saturated = backlog > b.allowance;
        self.last
    }

    fn restart(&mut self, now: Instant, r: Reading) {
        self.prev = Some((now, r));
        self.settled_from = Some((now, r.attempts()));
        self.baseline = None;
        self.last = Verdict::default();
    }

    /// The figures of the last judged interval.
    pub fn last(&self) -> Verdict {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(devices: u64, per_s: u64, messages: u64) -> Reading {
        Reading {
            devices,
            scheduled_milli: per_s * 1000,
            messages,
            errors: 0,
        }
    }

    /// Feeds readings every `step`, with messages from `sent(t_seconds)`; returns verdicts.
    fn run(devices: u64, per_s: u64, secs: u64, sent: impl Fn(f64) -> u64) -> Vec<Verdict> {
        let start = Instant::now();
        let mut t = RateTracker::default();
        (0..=secs * 2)
            .map(|i| {
                let at = Duration::from_millis(500 * i);
                t.observe(start + at, reading(devices, per_s, sent(at.as_secs_f64())))
            })
            .collect()
    }

    #[test]
    fn a_generator_that_keeps_up_is_never_saturated_even_when_uneven() {
        // 10 devices at 1/s, heartbeats every 500 ms: 3 or 7 messages per interval, not 5.
        let v = run(10, 10, 20, |t| {
            let k = (t * 2.0) as u64;
            k * 5 + if k % 2 == 1 { 2 } else { 0 }
        });
        assert!(v.iter().all(|v| !v.saturated), "{v:?}");
        assert!(v.last().is_some_and(|v| v.achieved_per_s > 5.0));
    }

    #[test]
    fn nothing_is_judged_before_the_epoch_and_the_first_messages() {
        // Scheduled from t=0 but the epoch is 2 s away: no messages until then.
        let v = run(1000, 1000, 6, |t| {
            if t < 2.0 {
                0
            } else {
                ((t - 2.0) * 1000.0) as u64
            }
        });
        assert!(v.iter().all(|v| !v.saturated), "{v:?}");
    }

    #[test]
    fn a_generator_far_behind_is_saturated_after_it_settles() {
        // 20,000 devices every 10 ms is 2M/s; the agent manages 100k/s.
        let v = run(20_000, 2_000_000, 6, |t| (t * 100_000.0) as u64);
        assert!(
            !v[0].saturated && !v[1].saturated,
            "first intervals are not judged"
        );
        assert!(v.last().is_some_and(|v| v.saturated), "{v:?}");
        assert!(v
            .last()
            .is_some_and(|v| (v.achieved_per_s - 100_000.0).abs() < 1.0));
    }

    #[test]
    fn a_change_of_devices_starts_over() {
        let start = Instant::now();
        let mut t = RateTracker::default();
        let mut sent = 0;
        for i in 0..12u64 {
            sent += 50_000;
            t.observe(
                start + Duration::from_millis(500 * i),
                reading(20_000, 2_000_000, sent),
            );
        }
        assert!(t.last().saturated);
        let v = t.observe(
            start + Duration::from_millis(6_000),
            reading(10, 10, sent + 5),
        );
        assert!(!v.saturated, "a scale-down is not judged at once");
    }

    /// Feeds `(devices, scheduled per s, messages)` every 500 ms; returns verdicts.
    fn feed(readings: impl IntoIterator<Item = (u64, f64, u64)>) -> Vec<Verdict> {
        let start = Instant::now();
        let mut t = RateTracker::default();
        readings
            .into_iter()
            .enumerate()
            .map(|(i, (devices, per_s, messages))| {
                let r = Reading {
                    devices,
                    scheduled_milli: (per_s * 1000.0) as u64,
                    messages,
                    errors: 0,
                };
                t.observe(start + Duration::from_millis(500 * i as u64), r)
            })
            .collect()
    }

    #[test]
    fn a_moving_pace_is_integrated() {
        // The rate ramps from 1000/s to 5000/s over 20 s; sends follow it exactly, then fall
        // to half of it.
        let rate = |t: f64| 1000.0 + 200.0 * t;
        let sent = |t: f64| (1000.0 * t + 100.0 * t * t) as u64;
        let keeping_up = feed((0..40).map(|i| {
            let t = i as f64 / 2.0;
            (1000, rate(t), sent(t))
        }));
        assert!(keeping_up.iter().all(|v| !v.saturated), "{keeping_up:?}");
        let behind = feed((0..40).map(|i| {
            let t = i as f64 / 2.0;
            (1000, rate(t), sent(t) / 2)
        }));
        assert!(behind.last().is_some_and(|v| v.saturated), "{behind:?}");
    }

    #[test]
    fn a_scale_up_whose_new_devices_wait_for_their_epoch_is_not_saturation() {
        // 100 devices at 10/s each; at t=5 s, 100 more, sending from t=7 s (epoch lead).
        let v = feed((0..30).map(|i| {
            let t = i as f64 / 2.0;
            let (devices, rate) = if t < 5.0 {
                (100, 1000.0)
            } else {
                (200, 2000.0)
            };
            let sent = 1000.0 * t + if t > 7.0 { 1000.0 * (t - 7.0) } else { 0.0 };
            (devices, rate, sent as u64)
        }));
        assert!(v.iter().all(|v| !v.saturated), "{v:?}");
    }

    #[test]
    fn a_ping_right_after_a_heartbeat_keeps_the_figures() {
        let start = Instant::now();
        let mut t = RateTracker::default();
        t.observe(start, reading(1, 10, 0));
        let v = t.observe(start + Duration::from_secs(1), reading(1, 10, 10));
        assert_eq!(v.achieved_per_s, 10.0);
        let again = t.observe(start + Duration::from_millis(1_010), reading(1, 10, 11));
        assert_eq!(again, v);
    }
}
