//! The agent's connect pacers, one per (rate, most in flight): every shard of every fleet
//! with the same settings shares one, so a sink's `connect_rate` and `max_connecting` hold
//! agent-wide. Sinks that hold connections (fix; mqtt keeps its own copy of this map for
//! now) keep one [`Pacers`] in their factory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::mqtt::Pacer;

/// Pacers by (rate in milli-connects/s, max connecting).
#[derive(Debug, Default)]
pub struct Pacers {
    by: Mutex<HashMap<(u64, u32), Arc<Pacer>>>,
}

impl Pacers {
    /// The pacer for `rate` connects per second (unlimited if `None`) and `max_connecting`
    /// in flight, made on first use.
    pub fn get(&self, rate: Option<f64>, max_connecting: u32) -> Arc<Pacer> {
        let key = (rate.map_or(0, |r| (r * 1000.0) as u64), max_connecting);
        self.by
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_insert_with(|| Arc::new(Pacer::new(max_connecting, rate)))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_settings_share_a_pacer() {
        let p = Pacers::default();
        assert!(Arc::ptr_eq(&p.get(Some(10.0), 4), &p.get(Some(10.0), 4)));
        assert!(!Arc::ptr_eq(&p.get(Some(10.0), 4), &p.get(Some(20.0), 4)));
        assert!(!Arc::ptr_eq(&p.get(None, 4), &p.get(None, 8)));
    }
}
