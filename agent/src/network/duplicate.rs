//! Duplication: a message is sent twice.

use pluribus_common::spec::network::ChanceSpec;

use super::{rng::Rng, DevState, Impairment, Msg};

/// Duplicates messages.
#[derive(Debug)]
pub struct Duplicate {
    probability: f64,
}

impl Duplicate {
    /// From its spec.
    pub fn new(s: &ChanceSpec) -> Self {
        Self {
            probability: s.probability,
        }
    }
}

impl Impairment for Duplicate {
    fn apply(&self, msg: &mut Msg, _dev: &mut DevState, rng: &mut Rng) {
        if rng.chance(self.probability) {
            msg.duplicated = true;
        }
    }
}
