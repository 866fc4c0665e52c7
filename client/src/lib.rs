//! The Pluribus client library: everything a program needs to drive a Pluribus cluster
//! over NATS, shared by `pluribusctl`, its dashboard and the scenario runner.
//!
//! - [`Ctx`]: a connection with the KV buckets open;
//! - [`apply`]: write a fleet record, offer its shards, wait until it runs;
//! - [`state`], [`figures`], [`netfigures`], [`connections`]: read agents, fleets and
//!   leases, and merge the agents' heartbeat figures;
//! - [`wait`], [`feed`], [`beats`]: wait for outcomes and follow heartbeats;
//! - [`probe`]: measure what the system under test delivers (latency, loss, order);
//! - [`bus`], [`denied`]: publish commands and events, turn permission refusals into the
//!   role a credential needs;
//! - [`output`]: tables, JSON and progress lines, as the commands print them;
//! - [`scenario`]: scenarios (steps with checks, a verdict, JUnit and JSON reports).
//!
//! Layers: `pluribus-common` (the protocol) below, the binaries above; the agent may use
//! this crate, and nothing here knows about the command line.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod apply;
pub mod beats;
pub mod bus;
pub mod connections;
mod ctx;
pub mod denied;
pub mod feed;
pub mod figures;
pub mod netfigures;
pub mod output;
pub mod probe;
pub mod quantiles;
pub mod scenario;
pub mod state;
pub mod wait;

pub use ctx::{no_fleet, Ctx};
