//! Network impairments at the message layer, between a device and its sink: latency,
//! loss, duplication, reordering, a bandwidth cap, corruption, a skewed clock, and being
//! offline with store and forward (`offline.rs`, kept by [`Impaired`] itself since it
//! holds messages rather than transforming one).
//!
//! One trait ([`Impairment`]), one file per implementation. A shard runner wraps each of
//! its sinks in an [`Impaired`]: while the fleet has no network rules the wrapper is a
//! plain pass-through (no per-device state, no parsing); once rules exist it keeps a
//! small state per device and a delay queue per sink, which the runner drains alongside
//! its heap of due slots, so delayed messages never hold up the shard's other devices.
//! Every random draw comes from the fleet's seed, the device id and the message's `seq`
//! ([`rng::Rng`]): the same run injects the same faults again, on any agent.

mod bandwidth;
mod clock;
mod corrupt;
mod duplicate;
mod flap;
mod impaired;
mod latency;
mod loss;
mod offline;
mod payload;
mod reorder;
pub mod rng;

use std::sync::Arc;

use bytes::Bytes;
use pluribus_common::spec::network::Impairments;

pub use impaired::{Impaired, NetContext};
use rng::Rng;

/// One message on its way through the impairments.
#[derive(Debug)]
pub struct Msg {
    /// The payload (an impairment may replace it).
    pub payload: Bytes,
    /// When it was handed to the network (µs since the epoch).
    pub now_us: u64,
    /// Delay added so far (µs).
    pub delay_us: u64,
    /// Delay added by the bandwidth cap (µs), part of `delay_us`.
    pub throttle_us: u64,
    /// Lost.
    pub dropped: bool,
    /// Sent twice.
    pub duplicated: bool,
    /// Held back behind this many later messages of the device.
    pub hold: u32,
    /// Payload mangled.
    pub corrupted: bool,
}

/// What an impairment remembers about one device between its messages.
#[derive(Debug, Default)]
pub struct DevState {
    /// Gilbert-Elliott: in the bad state.
    pub bad: bool,
    /// Latency: the previous message's jitter (µs), for correlation.
    pub last_jitter_us: f64,
    /// Bandwidth: the theoretical arrival time of the token bucket (µs).
    pub tat_us: u64,
}

/// One network impairment.
pub trait Impairment: Send + Sync + std::fmt::Debug {
    /// Applies itself to `msg` of a device whose state is `dev`, drawing from `rng`.
    fn apply(&self, msg: &mut Msg, dev: &mut DevState, rng: &mut Rng);
}

/// The impairments of one effective profile, in the order a message meets them: the
/// device's clock, corruption, loss, duplication, the bandwidth queue, latency, reordering.
#[derive(Debug)]
pub struct Chain {
    /// What it was built from.
    pub from: Impairments,
    /// The stages.
    pub stages: Vec<Box<dyn Impairment>>,
}

impl Chain {
    /// The chain of `imp`; `start_ms` is the fleet's start, from which clock drift counts.
    pub fn new(imp: &Impairments, start_ms: u64) -> Arc<Self> {
        let mut stages: Vec<Box<dyn Impairment>> = Vec::new();
        if let Some(c) = &imp.clock {
            stages.push(Box::new(clock::Clock::new(c, start_ms)));
        }
        if let Some(c) = &imp.corrupt {
            stages.push(Box::new(corrupt::Corrupt::new(c)));
        }
        if let Some(l) = &imp.loss {
            stages.push(Box::new(loss::Loss::new(l)));
        }
        if let Some(d) = &imp.duplicate {
            stages.push(Box::new(duplicate::Duplicate::new(d)));
        }
        if let Some(b) = &imp.bandwidth {
            stages.push(Box::new(bandwidth::Bandwidth::new(b)));
        }
        if let Some(l) = &imp.latency {
            stages.push(Box::new(latency::Latency::new(l)));
        }
        if let Some(r) = &imp.reorder {
            stages.push(Box::new(reorder::Reorder::new(r)));
        }
        Arc::new(Self {
            from: imp.clone(),
            stages,
        })
    }

    /// Runs `msg` through the stages (a lost message goes no further).
    pub fn apply(&self, msg: &mut Msg, dev: &mut DevState, rng: &mut Rng) {
        for s in &self.stages {
            s.apply(msg, dev, rng);
            if msg.dropped {
                return;
            }
        }
    }
}
