//! The seed README's MQTT scenario on Pluribus: a custom device type and a custom sink,
//! registered by name in an otherwise stock agent (the `seed-mqtt-agent` binary).
//!
//! | seed (Elixir) | here | registered as |
//! |---|---|---|
//! | `MQTTVirtualDevice` | [`device::MetricsDeviceFactory`] | [`DEVICE_TYPE`] |
//! | `MQTTTelemetryAggregator` | [`aggregator::AggregatorFactory`] | [`SINK_TYPE`] |
//!
//! See the crate's README for how to run it and how each seed call maps to `pluribusctl`.

pub mod aggregator;
pub mod device;

/// The device type name of the seed's `MQTTVirtualDevice`.
pub const DEVICE_TYPE: &str = "mqtt-metrics";
/// The sink type name of the seed's `MQTTTelemetryAggregator`.
pub const SINK_TYPE: &str = "mqtt-aggregator";
