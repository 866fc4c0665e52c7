//! Loss: Bernoulli, or bursty (Gilbert-Elliott).

use pluribus_common::spec::network::{GilbertSpec, LossSpec};

use super::{rng::Rng, DevState, Impairment, Msg};

/// Drops messages.
#[derive(Debug)]
pub struct Loss {
    probability: f64,
    gilbert: Option<GilbertSpec>,
}

impl Loss {
    /// From its spec.
    pub fn new(s: &LossSpec) -> Self {
        Self {
            probability: s.probability,
            gilbert: s.gilbert.clone(),
        }
    }
}

impl Impairment for Loss {
    fn apply(&self, msg: &mut Msg, dev: &mut DevState, rng: &mut Rng) {
        let p = match &self.gilbert {
            None => self.probability,
            Some(g) => {
                // The link changes state before the message crosses it.
                let flip = if dev.bad { g.leave_bad } else { g.enter_bad };
                if rng.chance(flip) {
                    dev.bad = !dev.bad;
                }
                if dev.bad {
                    g.loss_bad
                } else {
                    g.loss_good
                }
            }
        };
        if rng.chance(p) {
            msg.dropped = true;
        }
    }
}
