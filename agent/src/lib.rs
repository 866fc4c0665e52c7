//! The Pluribus agent as a library: start one with [`Agent::start`], or register your own
//! device and sink types in a [`Registry`] first.
//!
//! Inside, one control loop (`control`) owns the agent's view of NATS and the shards it
//! holds; each shard runs its devices in one task ([`shard`]); devices ([`device`]) and
//! sinks ([`sink`]) are traits with one file per implementation.

pub mod agent;
pub mod cli;
pub mod config;
mod control;
pub mod device;
pub mod events;
pub mod fence;
pub mod metrics;
pub mod network;
pub mod prometheus;
pub mod registry;
pub mod runtime;
pub mod saturation;
pub mod secrets;
pub mod shard;
pub mod sink;

pub use agent::{Agent, AgentConfig, AgentHandle};
pub use registry::Registry;
