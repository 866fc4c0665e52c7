//! The Pluribus protocol, shared by `pluribus-agent` and `pluribusctl`.
//!
//! Everything two processes must agree on lives here and nowhere else:
//! - [`subjects`]: every NATS subject and KV bucket name (habit: one place spells each subject);
//! - [`messages`]: the typed, versioned messages on the bus;
//! - [`spec`]: fleet and device specs, with validation that names the field;
//! - [`profile`]: device profiles, any device described as data (YAML, TOML or JSON);
//! - [`record`]: the desired state stored in JetStream KV and the shard arithmetic over it;
//! - [`connect`]: the NATS connection options both binaries take, and the checks run on connect;
//! - [`kv`]: the buckets, and the compare-and-set-with-TTL write the leases are built on.

pub mod connect;
pub mod error;
pub mod hist;
pub mod kv;
pub mod load;
pub mod messages;
pub mod names;
pub mod peer;
pub mod profile;
pub mod record;
pub mod spec;
pub mod subjects;
pub mod time;
#[cfg(feature = "tls")]
pub mod tls;
pub mod wire;

pub use error::SpecError;

/// The protocol version every message carries in its `v` field.
pub const PROTOCOL_VERSION: u32 = 1;

/// The oldest nats-server Pluribus works with: KV per-key TTL (the leases) needs 2.11.
pub const MIN_SERVER_VERSION: (u64, u64) = (2, 11);

/// This build's version, reported in heartbeats.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
