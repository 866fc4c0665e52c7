//! The `profile` device: a device type described as data ([`pluribus_common::profile`]).
//! Its options are the profile document; [`ProfileFactory::build`] validates and compiles it
//! once per shard, and every device then writes its JSON straight into the output buffer.
//!
//! Messages have the generic device's envelope, with the profile's name as `device_type`:
//!
//! ```json
//! {"device_id":"f-00001","fleet":"f","device_type":"smart-meter","seq":7,"ts":1700000000123,
//!  "scheduled_ts":1700000000120,"data":{"power_w":812.5,"voltage_v":229.8}}
//! ```
//!
//! An event adds `"event":"<name>"` before `data`; `on_start` / `on_stop` messages carry
//! `"lifecycle":"start"` or `"stop"` and `ts` (no seq: they are not telemetry slots; their
//! generators see seq 0 at start and the last telemetry seq at stop).
//!
//! Commands: `{"set": {"power_w": 30}}` fixes the listed fields at a value until
//! `{"set": {"power_w": null}}`; `{"interval": "500ms"}` changes the interval
//! (`{"interval": null}` goes back). Overrides live in the device only: they are lost when its
//! shard moves to another agent (the new agent starts from the profile).

mod compile;
mod eval;
mod json;
mod noise;
mod program;

use std::sync::Arc;
use std::time::Duration;

use pluribus_common::profile::Profile;

use super::{DeviceCtx, DeviceFactory, DeviceType, Tick, VirtualDevice};
use crate::shard::schedule::stable_hash;
use eval::{write_block, DevState, Env};
use json::{write_str, write_u64};
use program::{Block, Program};

/// Factory of `profile` devices.
#[derive(Debug, Default)]
pub struct ProfileFactory;

impl DeviceFactory for ProfileFactory {
    fn build(&self, options: &serde_json::Value) -> Result<Arc<dyn DeviceType>, String> {
        Ok(Arc::new(ProfileType::new(options)?))
    }
}

/// A compiled profile: makes devices.
#[derive(Debug)]
pub struct ProfileType {
    prog: Arc<Program>,
}

impl ProfileType {
    /// Validates and compiles the profile in `options`.
    pub fn new(options: &serde_json::Value) -> Result<Self, String> {
        let p = Profile::from_value(options).map_err(|e| format!("device.options.{e}"))?;
        Ok(Self::from_profile(&p))
    }

    /// Compiles an already validated profile.
    pub fn from_profile(p: &Profile) -> Self {
        Self {
            prog: Arc::new(Program::compile(p)),
        }
    }

    /// A new device, concretely typed (the benchmark and tests call it directly).
    pub fn device(&self, ctx: &DeviceCtx<'_>) -> ProfileDevice {
        let key = stable_hash(&[&ctx.seed.to_le_bytes(), ctx.device_id.as_bytes()]);
        let mut prefix = b"{\"device_id\":".to_vec();
        write_str(&mut prefix, ctx.device_id);
        prefix.extend_from_slice(b",\"fleet\":");
        write_str(&mut prefix, ctx.fleet);
        prefix.extend_from_slice(b",\"device_type\":");
        write_str(&mut prefix, ctx.device_type);
        prefix.push(b',');
        ProfileDevice {
            state: DevState::new(&self.prog, key),
            prog: self.prog.clone(),
            key,
            prefix: prefix.into(),
            interval: None,
            cursor: (u64::MAX, 0),
            last_seq: 0,
        }
    }
}

impl DeviceType for ProfileType {
    fn name(&self) -> Option<&str> {
        Some(&self.prog.name)
    }

    fn jitter(&self) -> Option<Duration> {
        self.prog.jitter
    }

    fn create(&self, ctx: &DeviceCtx<'_>) -> Box<dyn VirtualDevice> {
        Box::new(self.device(ctx))
    }
}

/// One device running a profile.
#[derive(Debug)]
pub struct ProfileDevice {
    prog: Arc<Program>,
    key: u64,
    /// `{"device_id":"…","fleet":"…","device_type":"…",`
    prefix: Box<[u8]>,
    state: DevState,
    /// Set by an interval command.
    interval: Option<Duration>,
    /// (seq, next event to try) for [`VirtualDevice::extra`].
    cursor: (u64, usize),
    last_seq: u64,
}

impl ProfileDevice {
    fn envelope(prefix: &[u8], tick: &Tick, out: &mut Vec<u8>) {
        out.extend_from_slice(prefix);
        out.extend_from_slice(b"\"seq\":");
        write_u64(out, tick.seq);
        out.extend_from_slice(b",\"ts\":");
        write_u64(out, tick.now_ms);
        out.extend_from_slice(b",\"scheduled_ts\":");
        write_u64(out, tick.scheduled_ms);
        out.push(b',');
    }

    fn lifecycle(&mut self, ctx: &DeviceCtx<'_>, stop: bool, now_ms: u64, out: &mut Vec<u8>) {
        let Self {
            prog,
            state,
            prefix,
            key,
            last_seq,
            ..
        } = self;
        let Some(block) = (if stop { &prog.on_stop } else { &prog.on_start }) else {
            return;
        };
        let env = Env {
            key: *key,
            seq: if stop { *last_seq } else { 0 },
            scheduled_ms: now_ms,
            now_ms,
            ctx,
        };
        out.extend_from_slice(prefix);
        out.extend_from_slice(b"\"ts\":");
        write_u64(out, now_ms);
        out.extend_from_slice(if stop {
            b",\"lifecycle\":\"stop\","
        } else {
            b",\"lifecycle\":\"start\","
        });
        data(prog, block, &env, state, out);
    }

    fn apply(&mut self, payload: &[u8]) -> Result<(), String> {
        let cmd: serde_json::Value = serde_json::from_slice(payload)
            .map_err(|e| format!("bad command ({e}): {}", self.usage()))?;
        let obj = cmd
            .as_object()
            .ok_or_else(|| format!("bad command: {}", self.usage()))?;
        let mut sets = Vec::new();
        let mut interval = None;
        for (k, v) in obj {
            match (k.as_str(), v) {
                ("set", serde_json::Value::Object(fields)) => {
                    for (path, value) in fields {
                        let slot = self
                            .prog
                            .settable
                            .iter()
                            .position(|s| s == path)
                            .ok_or_else(|| {
                                format!("field '{path}' cannot be set: {}", self.usage())
                            })?;
                        let bytes = (!value.is_null())
                            .then(|| serde_json::to_vec(value).map(Vec::into_boxed_slice))
                            .transpose()
                            .map_err(|e| format!("field '{path}': {e}"))?;
                        sets.push((slot, bytes));
                    }
                }
                ("interval", v) if self.prog.interval_command => {
                    interval = Some(match v {
                        serde_json::Value::Null => None,
                        serde_json::Value::String(s) => Some(parse_interval(s)?),
                        _ => {
                            return Err(
                                "interval: give a duration such as \"500ms\", or null".into()
                            )
                        }
                    });
                }
                ("interval", _) => {
                    return Err(format!(
                        "profile '{}' does not let commands change the interval (its commands need interval: true): {}",
                        self.prog.name,
                        self.usage()
                    ))
                }
                _ => return Err(format!("unknown command '{k}': {}", self.usage())),
            }
        }
        for (slot, bytes) in sets {
            self.state.overrides[slot] = bytes;
        }
        if let Some(i) = interval {
            self.interval = i;
        }
        Ok(())
    }

    fn usage(&self) -> String {
        let mut ways = Vec::new();
        if let Some(f) = self.prog.settable.first() {
            ways.push(format!(
                "{{\"set\": {{\"{f}\": <value or null>}}}} (settable: {})",
                self.prog.settable.join(", ")
            ));
        }
        if self.prog.interval_command {
            ways.push("{\"interval\": \"500ms\"}".to_string());
        }
        if ways.is_empty() {
            format!(
                "profile '{}' takes no commands (add commands: {{set: [...], interval: true}} to it)",
                self.prog.name
            )
        } else {
            format!("send {}", ways.join(" or "))
        }
    }
}

/// `"data":{…}}`: a message's data and the envelope's closing brace.
fn data(prog: &Program, block: &Block, env: &Env<'_>, state: &mut DevState, out: &mut Vec<u8>) {
    out.extend_from_slice(b"\"data\":");
    write_block(prog, block, env, state, out);
    out.push(b'}');
}

/// A raw payload: the pattern, with seq and the scheduled time (big-endian u64) in front.
fn write_raw(raw: &[u8], tick: &Tick, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(raw);
    let mut header = [0u8; 16];
    header[..8].copy_from_slice(&tick.seq.to_be_bytes());
    header[8..].copy_from_slice(&tick.scheduled_ms.to_be_bytes());
    let n = raw.len().min(16);
    out[start..start + n].copy_from_slice(&header[..n]);
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("interval '{s}': {e}: write e.g. \"500ms\" or \"2s\""))?;
    if d < Duration::from_millis(1) || d > Duration::from_secs(86_400) {
        return Err(format!("interval '{s}': must be between 1ms and 24h"));
    }
    Ok(d)
}

impl VirtualDevice for ProfileDevice {
    fn on_start(&mut self, ctx: &DeviceCtx<'_>, now_ms: u64, out: &mut Vec<u8>) {
        self.lifecycle(ctx, false, now_ms, out);
    }

    fn telemetry(&mut self, ctx: &DeviceCtx<'_>, tick: &Tick, out: &mut Vec<u8>) {
        self.last_seq = tick.seq;
        let Self {
            prog,
            state,
            prefix,
            key,
            ..
        } = self;
        if let Some(raw) = &prog.raw {
            write_raw(raw, tick, out);
            return;
        }
        let env = Env {
            key: *key,
            seq: tick.seq,
            scheduled_ms: tick.scheduled_ms,
            now_ms: tick.now_ms,
            ctx,
        };
        Self::envelope(prefix, tick, out);
        data(prog, &prog.data, &env, state, out);
    }

    fn extra(&mut self, ctx: &DeviceCtx<'_>, tick: &Tick, out: &mut Vec<u8>) -> bool {
        if self.cursor.0 != tick.seq {
            self.cursor = (tick.seq, 0);
        }
        let Self {
            prog,
            state,
            prefix,
            key,
            cursor,
            ..
        } = self;
        while let Some(e) = prog.events.get(cursor.1) {
            cursor.1 += 1;
            if noise::unit(noise::rand(*key ^ e.salt, tick.seq)) >= e.p {
                continue;
            }
            let env = Env {
                key: *key,
                seq: tick.seq,
                scheduled_ms: tick.scheduled_ms,
                now_ms: tick.now_ms,
                ctx,
            };
            Self::envelope(prefix, tick, out);
            out.extend_from_slice(&e.tag);
            data(prog, &e.data, &env, state, out);
            return true;
        }
        false
    }

    fn on_message(
        &mut self,
        _ctx: &DeviceCtx<'_>,
        payload: &[u8],
    ) -> Result<Option<Vec<u8>>, String> {
        self.apply(payload)?;
        Ok(Some(br#"{"applied":true}"#.to_vec()))
    }

    fn interval_override(&self) -> Option<Duration> {
        self.interval.or(self.prog.interval)
    }

    fn on_stop(&mut self, ctx: &DeviceCtx<'_>, now_ms: u64, out: &mut Vec<u8>) {
        self.lifecycle(ctx, true, now_ms, out);
    }
}

#[cfg(test)]
mod tests;
