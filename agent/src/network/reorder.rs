//! Reordering: a message is held back until the device's next `gap` messages went out.

use pluribus_common::spec::network::ReorderSpec;

use super::{rng::Rng, DevState, Impairment, Msg};

/// Holds messages back.
#[derive(Debug)]
pub struct Reorder {
    probability: f64,
    gap: u32,
}

impl Reorder {
    /// From its spec.
    pub fn new(s: &ReorderSpec) -> Self {
        Self {
            probability: s.probability,
            gap: s.gap,
        }
    }
}

impl Impairment for Reorder {
    fn apply(&self, msg: &mut Msg, _dev: &mut DevState, rng: &mut Rng) {
        if rng.chance(self.probability) {
            msg.hold = self.gap;
        }
    }
}
