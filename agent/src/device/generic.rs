//! The built-in `generic` device: JSON telemetry with a temperature random walk and a
//! battery that drains with every message. It accepts `{"set": {"temperature": 30}}` and
//! `{"interval": "500ms"}` (the schedule follows from the next seq).
//!
//! ```json
//! {"device_id":"f-00001","fleet":"f","device_type":"generic","seq":7,"ts":1700000000123,
//!  "scheduled_ts":1700000000120,"data":{"temperature":21.4,"battery":99.93}}
//! ```

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{DeviceCtx, DeviceFactory, DeviceType, Tick, VirtualDevice};
use crate::shard::schedule::{mix, stable_hash};

/// Options of the generic device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericOptions {
    /// Battery percentage lost per message.
    #[serde(default = "default_drain")]
    pub battery_drain: f64,
}

fn default_drain() -> f64 {
    0.01
}

/// Factory of [`Generic`] devices.
#[derive(Debug, Default)]
pub struct GenericFactory;

impl DeviceFactory for GenericFactory {
    fn build(&self, options: &serde_json::Value) -> Result<Arc<dyn DeviceType>, String> {
        Ok(Arc::new(parse(options)?))
    }
}

impl DeviceType for GenericOptions {
    fn create(&self, ctx: &DeviceCtx<'_>) -> Box<dyn VirtualDevice> {
        let seed = stable_hash(&[&ctx.seed.to_le_bytes(), ctx.device_id.as_bytes()]);
        Box::new(Generic {
            temperature: 15.0 + (seed % 1000) as f64 / 100.0,
            rng: seed | 1,
            drain: self.battery_drain,
            interval: None,
        })
    }
}

fn parse(options: &serde_json::Value) -> Result<GenericOptions, String> {
    if options.is_null() {
        return Ok(GenericOptions {
            battery_drain: default_drain(),
        });
    }
    serde_json::from_value(options.clone()).map_err(|e| format!("device.options: {e}"))
}

/// A generic device's state.
#[derive(Debug)]
pub struct Generic {
    temperature: f64,
    rng: u64,
    drain: f64,
    /// Set by an interval command; the schedule follows it.
    interval: Option<std::time::Duration>,
}

#[derive(Serialize)]
struct Telemetry<'a> {
    device_id: &'a str,
    fleet: &'a str,
    device_type: &'a str,
    seq: u64,
    ts: u64,
    scheduled_ts: u64,
    data: Data,
}

#[derive(Serialize)]
struct Data {
    temperature: f64,
    battery: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Command {
    #[serde(default)]
    set: Option<SetFields>,
    /// A new interval, e.g. "500ms".
    #[serde(default)]
    interval: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetFields {
    temperature: Option<f64>,
}

impl VirtualDevice for Generic {
    fn telemetry(&mut self, ctx: &DeviceCtx<'_>, tick: &Tick, out: &mut Vec<u8>) {
        self.rng = mix(self.rng);
        let step = (self.rng % 1001) as f64 / 1000.0 - 0.5;
        self.temperature = (self.temperature + step).clamp(-20.0, 60.0);
        let battery = (100.0 - tick.seq as f64 * self.drain).max(0.0);
        let t = Telemetry {
            device_id: ctx.device_id,
            fleet: ctx.fleet,
            device_type: ctx.device_type,
            seq: tick.seq,
            ts: tick.now_ms,
            scheduled_ts: tick.scheduled_ms,
            data: Data {
                temperature: (self.temperature * 100.0).round() / 100.0,
                battery: (battery * 100.0).round() / 100.0,
            },
        };
        // Writing plain numbers and strings into a Vec cannot fail.
        let _ = serde_json::to_writer(out, &t);
    }

    fn on_message(
        &mut self,
        _ctx: &DeviceCtx<'_>,
        payload: &[u8],
    ) -> Result<Option<Vec<u8>>, String> {
        const HOW: &str = r#"send {"set": {"temperature": 30}} and/or {"interval": "500ms"}"#;
        let cmd: Command =
            serde_json::from_slice(payload).map_err(|e| format!("bad command ({e}): {HOW}"))?;
        if cmd.set.is_none() && cmd.interval.is_none() {
            return Err(format!("empty command: {HOW}"));
        }
        let interval = match &cmd.interval {
            Some(text) => {
                let d = humantime::parse_duration(text)
                    .map_err(|e| format!("interval '{text}': {e}: {HOW}"))?;
                if d < std::time::Duration::from_millis(1) {
                    return Err(format!("interval '{text}' is shorter than 1ms"));
                }
                Some(d)
            }
            None => None,
        };
        if let Some(t) = cmd.set.and_then(|s| s.temperature) {
            self.temperature = t;
        }
        if interval.is_some() {
            self.interval = interval;
        }
        Ok(Some(br#"{"applied":true}"#.to_vec()))
    }

    fn interval_override(&self) -> Option<std::time::Duration> {
        self.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_has_the_documented_fields_and_commands_apply() {
        let ctx = DeviceCtx {
            device_id: "d1",
            fleet: "f",
            device_type: "generic",
            index: 0,
            seed: 0,
        };
        let mut d = GenericFactory
            .build(&serde_json::Value::Null)
            .expect("type")
            .create(&ctx);
        let mut out = Vec::new();
        d.telemetry(
            &ctx,
            &Tick {
                seq: 3,
                scheduled_ms: 10,
                now_ms: 12,
            },
            &mut out,
        );
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["device_id"], "d1");
        assert_eq!(v["seq"], 3);
        assert_eq!(v["scheduled_ts"], 10);
        assert_eq!(v["data"]["battery"], 99.97);
        d.on_message(&ctx, br#"{"set":{"temperature":42.5}}"#)
            .expect("applied");
        out.clear();
        d.telemetry(
            &ctx,
            &Tick {
                seq: 4,
                scheduled_ms: 10,
                now_ms: 12,
            },
            &mut out,
        );
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        let t = v["data"]["temperature"].as_f64().expect("num");
        assert!((t - 42.5).abs() <= 0.5, "{t}");
        assert!(d.on_message(&ctx, b"nope").is_err());
        assert!(d.on_message(&ctx, b"{}").is_err());
        assert!(d.on_message(&ctx, br#"{"interval":"soon"}"#).is_err());
        assert_eq!(d.interval_override(), None);
        d.on_message(&ctx, br#"{"interval":"250ms"}"#)
            .expect("applied");
        assert_eq!(
            d.interval_override(),
            Some(std::time::Duration::from_millis(250))
        );
        assert!(GenericFactory
            .build(&serde_json::json!({"bogus": 1}))
            .is_err());
    }
}
