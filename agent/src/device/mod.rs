//! Virtual devices: the [`VirtualDevice`] trait (one extension point, one file per
//! implementation) and the context a device is given.
//!
//! A device is state plus callbacks. It owns no task and no timer: the shard runner calls
//! it when a slot is due, so a million devices cost a million small structs, not a million
//! tasks.

pub mod generic;
pub mod profile;

use std::time::Duration;

/// Who a device is.
#[derive(Debug, Clone, Copy)]
pub struct DeviceCtx<'a> {
    /// Device id.
    pub device_id: &'a str,
    /// Fleet name.
    pub fleet: &'a str,
    /// Device type name.
    pub device_type: &'a str,
    /// Index in the fleet.
    pub index: u64,
    /// The fleet's seed (`--seed`); random values should derive from (seed, device id, seq)
    /// so that a device sends the same values on any agent and a run can be repeated.
    pub seed: u64,
}

/// One telemetry slot.
#[derive(Debug, Clone, Copy)]
pub struct Tick {
    /// Per-device sequence number: the slot index in the device's schedule.
    pub seq: u64,
    /// When the slot was scheduled (Unix ms).
    pub scheduled_ms: u64,
    /// Now (Unix ms); `now_ms - scheduled_ms` is the generator's lateness.
    pub now_ms: u64,
}

/// What a device does. Every callback writes at most one payload into `out` (cleared by the
/// caller); a callback that writes nothing sends nothing.
pub trait VirtualDevice: Send {
    /// Called once when the device starts (birth message, for example).
    fn on_start(&mut self, _ctx: &DeviceCtx<'_>, _now_ms: u64, _out: &mut Vec<u8>) {}

    /// Called on every telemetry slot.
    fn telemetry(&mut self, ctx: &DeviceCtx<'_>, tick: &Tick, out: &mut Vec<u8>);

    /// Called with a command addressed to the device. Returns the reply payload, if any,
    /// or an error text that is sent back to the caller.
    fn on_message(
        &mut self,
        _ctx: &DeviceCtx<'_>,
        _payload: &[u8],
    ) -> Result<Option<Vec<u8>>, String> {
        Err("this device type takes no commands".into())
    }

    /// Called once when the device stops (scale-down, delete, shutdown, release).
    fn on_stop(&mut self, _ctx: &DeviceCtx<'_>, _now_ms: u64, _out: &mut Vec<u8>) {}

    /// Called after `telemetry`, with the same tick: writes one more payload (an event, for
    /// example) and returns true if there is one. The runner calls it again, with `out`
    /// cleared, until it returns false: a tick may send several extra messages.
    fn extra(&mut self, _ctx: &DeviceCtx<'_>, _tick: &Tick, _out: &mut Vec<u8>) -> bool {
        false
    }

    /// The interval this device wants instead of its fleet's: a profile's own interval, or
    /// one set by a command. The runner consults it when the device is created and after
    /// every `on_message`, and reschedules the device when it changed.
    fn interval_override(&self) -> Option<Duration> {
        None
    }
}

/// A device type with its options parsed: makes devices cheaply, many times.
pub trait DeviceType: Send + Sync {
    /// The type name shown in telemetry, when it differs from the registered name (a
    /// profile's own name, for example).
    fn name(&self) -> Option<&str> {
        None
    }

    /// The jitter this type wants instead of its fleet's (a profile's own `jitter`). The
    /// runner uses it when it schedules the type's devices.
    fn jitter(&self) -> Option<Duration> {
        None
    }

    /// A new device.
    fn create(&self, ctx: &DeviceCtx<'_>) -> Box<dyn VirtualDevice>;
}

/// Makes device types from their options: registered by name in the agent's registry.
pub trait DeviceFactory: Send + Sync {
    /// Parses and checks the options, once per shard. The error names the option and says
    /// what to do; the shard is then refused (another agent may know better).
    fn build(&self, options: &serde_json::Value) -> Result<std::sync::Arc<dyn DeviceType>, String>;
}
