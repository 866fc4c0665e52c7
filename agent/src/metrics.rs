//! Per-fleet counters of one agent. Shard runners add to them once per batch; the
//! heartbeat reads them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use pluribus_common::messages::FleetCounters;

/// Counters of one fleet on this agent.
#[derive(Debug, Default)]
pub struct FleetMetrics {
    /// Devices running now.
    pub devices: AtomicU64,
    /// Messages sent.
    pub messages: AtomicU64,
    /// Payload bytes sent.
    pub bytes: AtomicU64,
    /// Send errors.
    pub errors: AtomicU64,
}

impl FleetMetrics {
    fn snapshot(&self) -> FleetCounters {
        FleetCounters {
            devices: self.devices.load(Relaxed),
            messages: self.messages.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            errors: self.errors.load(Relaxed),
        }
    }
}

/// All fleets' counters.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    fleets: Arc<Mutex<BTreeMap<String, Arc<FleetMetrics>>>>,
}

impl Metrics {
    /// The counters of `fleet`, created on first use.
    pub fn fleet(&self, fleet: &str) -> Arc<FleetMetrics> {
        let mut m = self.fleets.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(fleet.to_string()).or_default().clone()
    }

    /// A snapshot for the heartbeat. Fleets with no devices left and no traffic are dropped
    /// from the map after they have been reported once with zero devices.
    pub fn snapshot(&self) -> BTreeMap<String, FleetCounters> {
        let mut m = self.fleets.lock().unwrap_or_else(|p| p.into_inner());
        let out: BTreeMap<_, _> = m.iter().map(|(k, v)| (k.clone(), v.snapshot())).collect();
        m.retain(|_, v| v.devices.load(Relaxed) > 0 || Arc::strong_count(v) > 1);
        out
    }

    /// Devices running on this agent.
    pub fn devices(&self) -> u64 {
        let m = self.fleets.lock().unwrap_or_else(|p| p.into_inner());
        m.values().map(|v| v.devices.load(Relaxed)).sum()
    }
}
