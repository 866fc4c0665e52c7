//! The last events seen on `evt.>`, numbered, for the page's live list, the device
//! drill-down and reports.

use std::collections::VecDeque;
use std::sync::Arc;

use pluribus_common::messages::{Event, EventKind};
use serde::Serialize;

/// Events kept.
pub const KEEP: usize = 2_000;

/// One event as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Its number in this dashboard (1, 2, ...), for clients to ask for what is new.
    pub seq: u64,
    /// When the agent or ctl sent it (Unix ms).
    pub ts_ms: u64,
    /// Its kind (`fleet_scaled`, `device_failed`, ...).
    pub kind: &'static str,
    /// The fleet it is about, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<String>,
    /// The line `pluribusctl events` prints.
    pub text: String,
    /// The event itself (device id lists included).
    #[serde(skip)]
    pub event: Event,
}

impl Entry {
    /// True when the event names device `id`.
    pub fn mentions_device(&self, id: &str) -> bool {
        match &self.event.kind {
            EventKind::DevicesStarted { device_ids, .. }
            | EventKind::DevicesStopped { device_ids, .. } => device_ids.iter().any(|d| d == id),
            EventKind::DeviceFailed { device_id, .. } => device_id == id,
            _ => false,
        }
    }
}

/// The fleet an event is about.
fn fleet_of(k: &EventKind) -> Option<&str> {
    match k {
        EventKind::FleetCreated { fleet, .. }
        | EventKind::FleetScaled { fleet, .. }
        | EventKind::FleetDeleted { fleet, .. }
        | EventKind::ShardClaimed { fleet, .. }
        | EventKind::ShardReleased { fleet, .. }
        | EventKind::ShardFenced { fleet, .. }
        | EventKind::DevicesStarted { fleet, .. }
        | EventKind::DevicesStopped { fleet, .. }
        | EventKind::DeviceFailed { fleet, .. } => Some(fleet),
        _ => None,
    }
}

/// The last [`KEEP`] events.
#[derive(Debug, Default)]
pub struct EventLog {
    entries: VecDeque<Arc<Entry>>,
    next: u64,
}

impl EventLog {
    /// Adds an event.
    pub fn push(&mut self, event: Event) {
        self.next += 1;
        let entry = Entry {
            seq: self.next,
            ts_ms: event.ts_ms,
            kind: event.kind.token(),
            fleet: fleet_of(&event.kind).map(str::to_string),
            text: crate::cmd::events::line(&event),
            event,
        };
        if self.entries.len() == KEEP {
            self.entries.pop_front();
        }
        self.entries.push_back(Arc::new(entry));
    }

    /// The number of the last event (0: none yet).
    pub fn last_seq(&self) -> u64 {
        self.next
    }

    /// Events numbered above `after`, the last `max` of them.
    pub fn since(&self, after: u64, max: usize) -> Vec<Arc<Entry>> {
        let newer = self.entries.iter().filter(|e| e.seq > after).count();
        self.entries
            .iter()
            .skip(self.entries.len() - newer.min(max).min(self.entries.len()))
            .cloned()
            .collect()
    }

    /// Every kept event, oldest first.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Entry>> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaled(to: u64) -> Event {
        Event {
            v: 1,
            ts_ms: to,
            kind: EventKind::FleetScaled {
                fleet: "f".into(),
                from: 1,
                to,
            },
        }
    }

    #[test]
    fn events_are_numbered_and_bounded() {
        let mut log = EventLog::default();
        for i in 0..(KEEP as u64 + 5) {
            log.push(scaled(i));
        }
        assert_eq!(log.all().count(), KEEP);
        assert_eq!(log.last_seq(), KEEP as u64 + 5);
        let last = log.since(KEEP as u64 + 2, 100);
        assert_eq!(
            last.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [2_003, 2_004, 2_005]
        );
        assert_eq!(log.since(0, 2).len(), 2);
        assert_eq!(last[0].fleet.as_deref(), Some("f"));
        assert!(last[0].text.contains("fleet_scaled fleet=f"));
    }
}
