//! A profile compiled once per shard into a fast form: each message is a flat list of ops,
//! literal JSON (keys pre-escaped, constants pre-serialised) merged into runs of bytes, and
//! compiled generators in between.

use std::time::Duration;

use pluribus_common::profile::generator::Generator;
use pluribus_common::profile::{Field, Payload, Profile};

use super::json::write_str;
use super::noise::Walk;
use crate::shard::schedule::{mix, stable_hash};

/// One step of writing a message's `data`.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    /// Literal bytes `lits[start..end]`.
    Lit(u32, u32),
    /// Generator `gens[i]`.
    Gen(u32),
    /// A field a command may set: when override `slot` is set, write it and go to op `skip_to`.
    Override {
        /// Index into the device's overrides.
        slot: u16,
        /// The first op after the field.
        skip_to: u32,
    },
}

/// The ops of one message's `data`.
#[derive(Debug, Clone, Default)]
pub struct Block {
    /// The ops, in order.
    pub ops: Vec<Op>,
}

/// A wave's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// sin
    Sine,
    /// ±1 halves
    Square,
    /// rising ramp
    Sawtooth,
}

/// A time shift, compiled.
#[derive(Debug, Clone, Copy)]
pub enum Shift {
    /// Fixed, in ms, already reduced modulo the period.
    Fixed(u64),
    /// From the device's hash.
    PerDevice,
}

/// A compiled generator.
#[derive(Debug, Clone)]
pub enum Gen {
    /// `uniform`
    Uniform {
        salt: u64,
        min: f64,
        span: f64,
        dec: u8,
    },
    /// `normal`
    Normal {
        salt: u64,
        mean: f64,
        sd: f64,
        min: f64,
        max: f64,
        dec: u8,
    },
    /// `random_walk`; `origin` indexes the device's walk origins.
    Walk { walk: Walk, origin: u32, dec: u8 },
    /// `sine`, `square`, `sawtooth`
    Wave {
        shape: Shape,
        salt: u64,
        period_ms: u64,
        amplitude: f64,
        offset: f64,
        shift: Shift,
        dec: u8,
    },
    /// `counter`
    Counter { start: f64, step: f64, dec: u8 },
    /// `sequence`
    Sequence,
    /// Pre-serialised JSON.
    Literal(Box<[u8]>),
    /// `choice`: pre-serialised values and cumulative weights.
    Choice {
        salt: u64,
        values: Vec<Box<[u8]>>,
        cumulative: Vec<f64>,
    },
    /// `bool`
    Bool { salt: u64, p: f64 },
    /// `uuid`
    Uuid { salt: u64 },
    /// `timestamp`
    Timestamp,
    /// `gps {walk}`: two walks in metres (north, east); origins at `origin`, `origin + 1`.
    GpsWalk {
        salt: u64,
        lat: f64,
        lon: f64,
        deg_per_m_lat: f64,
        deg_per_m_lon: f64,
        north: Walk,
        east: Walk,
        spread: f64,
        origin: u32,
        dec: u8,
    },
    /// `gps {waypoints}`: points in degrees, cumulative metres at each point, loop length.
    GpsRoute {
        salt: u64,
        points: Vec<(f64, f64)>,
        cumulative: Vec<f64>,
        total_m: f64,
        speed_mps: f64,
        shift_ms: Option<f64>,
        dec: u8,
    },
    /// `template`: parts with literals pre-escaped.
    Template(Vec<Tpl>),
    /// `state_machine`; `cache` indexes the device's state machine caches.
    StateMachine {
        salt: u64,
        machine: Machine,
        cache: u32,
    },
}

/// A compiled template part.
#[derive(Debug, Clone)]
pub enum Tpl {
    /// Escaped literal text.
    Lit(Box<[u8]>),
    /// `{device_id}`
    DeviceId,
    /// `{fleet}`
    Fleet,
    /// `{index}` zero-padded to a width
    Index(usize),
    /// `{seq}`
    Seq,
}

/// A compiled state machine.
#[derive(Debug, Clone)]
pub struct Machine {
    /// The states.
    pub states: Vec<MState>,
    /// Ticks between restarts in the first state.
    pub restart_every: u64,
}

/// A compiled state.
#[derive(Debug, Clone)]
pub struct MState {
    /// The name as a JSON string.
    pub json: Box<[u8]>,
    /// Fewest ticks in the state.
    pub dwell_min: u64,
    /// Number of possible dwell lengths (max - min + 1).
    pub dwell_span: u64,
    /// (cumulative weight, state index); empty: the state is final until the restart.
    pub next: Vec<(f64, u32)>,
}

/// A compiled event.
#[derive(Debug, Clone)]
pub struct EventProg {
    /// `"event":"<name>",`
    pub tag: Box<[u8]>,
    /// Chance per tick.
    pub p: f64,
    /// Salt of the event's draw.
    pub salt: u64,
    /// Its data.
    pub data: Block,
}

/// A whole profile, compiled.
#[derive(Debug)]
pub struct Program {
    /// The profile's name.
    pub name: String,
    /// Raw payload pattern, when the profile sends bytes.
    pub raw: Option<Box<[u8]>>,
    /// Telemetry data.
    pub data: Block,
    /// Events.
    pub events: Vec<EventProg>,
    /// on_start data.
    pub on_start: Option<Block>,
    /// on_stop data.
    pub on_stop: Option<Block>,
    /// Generators referred to by the blocks.
    pub gens: Vec<Gen>,
    /// Literal bytes referred to by the blocks.
    pub lits: Vec<u8>,
    /// Paths a command may set, by override slot.
    pub settable: Vec<String>,
    /// Whether a command may change the interval.
    pub interval_command: bool,
    /// The profile's interval.
    pub interval: Option<Duration>,
    /// The profile's jitter.
    pub jitter: Option<Duration>,
    /// Walk origins per device.
    pub origins: usize,
    /// State machine caches per device.
    pub machines: usize,
}

impl Program {
    /// Compiles a validated profile.
    pub fn compile(p: &Profile) -> Self {
        let mut prog = Program {
            name: p.name.clone(),
            raw: None,
            data: Block::default(),
            events: Vec::new(),
            on_start: None,
            on_stop: None,
            gens: Vec::new(),
            lits: Vec::new(),
            settable: p.commands.set.clone(),
            interval_command: p.commands.interval,
            interval: p.interval,
            jitter: p.jitter,
            origins: 0,
            machines: 0,
        };
        if let Payload::Bytes(n) = p.payload {
            let seed = stable_hash(&[p.name.as_bytes()]);
            prog.raw = Some(
                (0..n as u64)
                    .map(|i| (mix(seed ^ (i / 8)) >> ((i % 8) * 8)) as u8)
                    .collect(),
            );
        }
        prog.data = prog.block(&p.fields, "fields", true);
        for (i, e) in p.events.iter().enumerate() {
            let mut tag = b"\"event\":".to_vec();
            write_str(&mut tag, &e.name);
            tag.push(b',');
            let path = format!("events[{i}]");
            let data = prog.block(&e.fields, &format!("{path}.fields"), false);
            prog.events.push(EventProg {
                tag: tag.into(),
                p: e.probability,
                salt: stable_hash(&[path.as_bytes()]),
                data,
            });
        }
        prog.on_start = p
            .on_start
            .as_ref()
            .map(|l| prog.block(&l.fields, "on_start.fields", false));
        prog.on_stop = p
            .on_stop
            .as_ref()
            .map(|l| prog.block(&l.fields, "on_stop.fields", false));
        prog
    }

    fn block(&mut self, f: &Field, path: &str, settable: bool) -> Block {
        let mut b = Builder {
            ops: Vec::new(),
            pending: Vec::new(),
        };
        self.node(&mut b, f, path, settable.then_some(""));
        b.flush(&mut self.lits);
        Block { ops: b.ops }
    }

    /// Compiles one node; `dotted` is its path of object keys, for command overrides (None
    /// inside arrays and outside telemetry).
    fn node(&mut self, b: &mut Builder, f: &Field, path: &str, dotted: Option<&str>) {
        let slot = dotted.and_then(|d| self.settable.iter().position(|s| s == d));
        let at = slot.map(|slot| {
            b.flush(&mut self.lits);
            b.ops.push(Op::Override {
                slot: slot as u16,
                skip_to: 0,
            });
            b.ops.len() - 1
        });
        match f {
            Field::Object(kv) => {
                b.pending.push(b'{');
                for (i, (k, v)) in kv.iter().enumerate() {
                    if i > 0 {
                        b.pending.push(b',');
                    }
                    write_str(&mut b.pending, k);
                    b.pending.push(b':');
                    let child = dotted.map(|d| {
                        if d.is_empty() {
                            k.clone()
                        } else {
                            format!("{d}.{k}")
                        }
                    });
                    self.node(b, v, &format!("{path}.{k}"), child.as_deref());
                }
                b.pending.push(b'}');
            }
            Field::Array(items) => {
                b.pending.push(b'[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        b.pending.push(b',');
                    }
                    self.node(b, v, &format!("{path}[{i}]"), None);
                }
                b.pending.push(b']');
            }
            Field::Gen(Generator::Constant(v)) => {
                // Serialising a Value into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut b.pending, v);
            }
            Field::Gen(g) => {
                let gen = self.gen(g, path);
                b.flush(&mut self.lits);
                b.ops.push(Op::Gen(self.gens.len() as u32));
                self.gens.push(gen);
            }
        }
        if let Some(at) = at {
            b.flush(&mut self.lits);
            let end = b.ops.len() as u32;
            if let Some(Op::Override { skip_to, .. }) = b.ops.get_mut(at) {
                *skip_to = end;
            }
        }
    }
}

struct Builder {
    ops: Vec<Op>,
    pending: Vec<u8>,
}

impl Builder {
    fn flush(&mut self, lits: &mut Vec<u8>) {
        if self.pending.is_empty() {
            return;
        }
        let start = lits.len() as u32;
        lits.append(&mut self.pending);
        self.ops.push(Op::Lit(start, lits.len() as u32));
    }
}
