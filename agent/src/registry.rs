//! The device and sink types an agent knows, by name. Built-ins are registered by
//! [`Registry::builtin`]; a user crate adds its own before starting the agent:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use pluribus_agent::{Registry, device::generic::GenericFactory};
//! let registry = Registry::builtin().with_device("my-sensor", Arc::new(GenericFactory));
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::device::generic::GenericFactory;
use crate::device::profile::ProfileFactory;
use crate::device::DeviceFactory;
use crate::sink::console::ConsoleFactory;
use crate::sink::fix::FixFactory;
use crate::sink::http::HttpFactory;
use crate::sink::mqtt::MqttFactory;
use crate::sink::nats::NatsFactory;
use crate::sink::SinkFactory;

/// Device and sink factories by type name.
#[derive(Clone, Default)]
pub struct Registry {
    devices: BTreeMap<String, Arc<dyn DeviceFactory>>,
    sinks: BTreeMap<String, Arc<dyn SinkFactory>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("devices", &self.device_types())
            .field("sinks", &self.sink_types())
            .finish()
    }
}

impl Registry {
    /// The built-in types: devices `generic` and `profile`; sinks `console`, `nats`, `http`, `mqtt` and `fix`.
    pub fn builtin() -> Self {
        Self::default()
            .with_device("generic", Arc::new(GenericFactory))
            .with_device("profile", Arc::new(ProfileFactory))
            .with_sink("console", Arc::new(ConsoleFactory))
            .with_sink("nats", Arc::new(NatsFactory))
            .with_sink("mqtt", Arc::new(MqttFactory::default()))
            .with_sink("http", Arc::new(HttpFactory::default()))
            .with_sink("fix", Arc::new(FixFactory::default()))
    }

    /// Adds (or replaces) a device type.
    pub fn with_device(mut self, name: &str, f: Arc<dyn DeviceFactory>) -> Self {
        self.devices.insert(name.to_string(), f);
        self
    }

    /// Adds (or replaces) a sink type.
    pub fn with_sink(mut self, name: &str, f: Arc<dyn SinkFactory>) -> Self {
        self.sinks.insert(name.to_string(), f);
        self
    }

    /// A device factory by name.
    pub fn device(&self, name: &str) -> Option<&Arc<dyn DeviceFactory>> {
        self.devices.get(name)
    }

    /// A sink factory by name.
    pub fn sink(&self, name: &str) -> Option<&Arc<dyn SinkFactory>> {
        self.sinks.get(name)
    }

    /// Known device type names.
    pub fn device_types(&self) -> Vec<String> {
        self.devices.keys().cloned().collect()
    }

    /// Known sink type names.
    pub fn sink_types(&self) -> Vec<String> {
        self.sinks.keys().cloned().collect()
    }
}
