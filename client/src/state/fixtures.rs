//! A heartbeat made by hand, for the unit tests of this crate and of the programs built on
//! it (pluribusctl's views).

use std::collections::BTreeMap;

use pluribus_common::messages::Heartbeat;

/// A heartbeat of agent `id` holding `devices`, with room for `capacity`.
pub fn hb(id: &str, devices: u64, capacity: Option<u64>) -> Heartbeat {
    Heartbeat {
        v: 1,
        id: id.into(),
        name: format!("n-{id}"),
        labels: BTreeMap::new(),
        version: "0.1.0".into(),
        uptime_s: 10,
        devices,
        capacity,
        draining: false,
        connection_capacity: None,
        connection_devices: 0,
        refusals: BTreeMap::new(),
        device_types: vec!["generic".into()],
        sink_types: vec!["console".into(), "nats".into()],
        fleets: BTreeMap::new(),
        saturated: false,
        interval_ms: 2_000,
        ts_ms: 100_000,
        arrived_ms: None,
    }
}
