//! Running a compiled profile: writes one message's `data` for (device, seq, time).

use super::json::{write_f64, write_str_inner, write_u64, write_u64_padded, write_uuid};
use super::noise::{gauss, rand, unit};
use super::program::{Block, Gen, Machine, Op, Program, Shape, Shift, Tpl};
use crate::device::DeviceCtx;
use crate::shard::schedule::mix;

/// What a value may depend on.
#[derive(Debug, Clone, Copy)]
pub struct Env<'a> {
    /// The device's key: a hash of (fleet seed, device id).
    pub key: u64,
    /// The message's seq.
    pub seq: u64,
    /// When its slot was scheduled, Unix ms (waves and routes use it).
    pub scheduled_ms: u64,
    /// Now, Unix ms (`timestamp`).
    pub now_ms: u64,
    /// Who the device is (`template`).
    pub ctx: &'a DeviceCtx<'a>,
}

/// Where a device's state machine is: the segment that holds seq `start..end`.
#[derive(Debug, Clone, Copy)]
pub struct MachineCache {
    epoch: u64,
    seg: u64,
    start: u64,
    end: u64,
    state: u32,
}

impl Default for MachineCache {
    fn default() -> Self {
        Self {
            epoch: u64::MAX,
            seg: 0,
            start: 0,
            end: 0,
            state: 0,
        }
    }
}

/// The per-device state behind a profile device: everything else is computed from seq.
#[derive(Debug)]
pub struct DevState {
    /// `raw(key, 0)` of each walk: the walks start at their `start` value.
    origins: Box<[f64]>,
    /// Where each state machine is (a cache: recomputed from seq when missing).
    machines: Box<[MachineCache]>,
    /// Command overrides (pre-serialised JSON) by slot.
    pub overrides: Box<[Option<Box<[u8]>>]>,
}

impl DevState {
    /// The state of a new device with key `key`.
    pub fn new(prog: &Program, key: u64) -> Self {
        let mut origins = vec![0.0; prog.origins];
        for g in &prog.gens {
            match g {
                Gen::Walk { walk, origin, .. } => origins[*origin as usize] = walk.raw(key, 0),
                Gen::GpsWalk {
                    north,
                    east,
                    origin,
                    ..
                } => {
                    origins[*origin as usize] = north.raw(key, 0);
                    origins[*origin as usize + 1] = east.raw(key, 0);
                }
                _ => {}
            }
        }
        Self {
            origins: origins.into(),
            machines: vec![MachineCache::default(); prog.machines].into(),
            overrides: vec![None; prog.settable.len()].into(),
        }
    }
}

/// Writes a block's JSON into `out`.
pub fn write_block(
    prog: &Program,
    block: &Block,
    env: &Env<'_>,
    st: &mut DevState,
    out: &mut Vec<u8>,
) {
    let mut i = 0;
    while let Some(op) = block.ops.get(i) {
        match *op {
            Op::Lit(a, b) => out.extend_from_slice(&prog.lits[a as usize..b as usize]),
            Op::Gen(g) => write_gen(&prog.gens[g as usize], env, st, out),
            Op::Override { slot, skip_to } => {
                if let Some(Some(v)) = st.overrides.get(usize::from(slot)) {
                    out.extend_from_slice(v);
                    i = skip_to as usize;
                    continue;
                }
            }
        }
        i += 1;
    }
}

fn write_gen(g: &Gen, env: &Env<'_>, st: &mut DevState, out: &mut Vec<u8>) {
    let seq = env.seq;
    match g {
        Gen::Uniform {
            salt,
            min,
            span,
            dec,
        } => {
            write_f64(out, min + unit(rand(env.key ^ salt, seq)) * span, *dec);
        }
        Gen::Normal {
            salt,
            mean,
            sd,
            min,
            max,
            dec,
        } => {
            let v = mean + sd * gauss(rand(env.key ^ salt, seq));
            write_f64(out, v.max(*min).min(*max), *dec);
        }
        Gen::Walk { walk, origin, dec } => {
            let o = st.origins[*origin as usize];
            write_f64(out, walk.value(env.key, seq, o, 0.0), *dec);
        }
        Gen::Wave {
            shape,
            salt,
            period_ms,
            amplitude,
            offset,
            shift,
            dec,
        } => {
            let shift = match shift {
                Shift::Fixed(ms) => *ms,
                Shift::PerDevice => rand(env.key ^ salt, 0) % period_ms,
            };
            let t = (env.scheduled_ms % period_ms + shift) % period_ms;
            let frac = t as f64 / *period_ms as f64;
            let x = match shape {
                Shape::Sine => (std::f64::consts::TAU * frac).sin(),
                Shape::Square => {
                    if frac < 0.5 {
                        1.0
                    } else {
                        -1.0
                    }
                }
                Shape::Sawtooth => 2.0 * frac - 1.0,
            };
            write_f64(out, offset + amplitude * x, *dec);
        }
        Gen::Counter { start, step, dec } => write_f64(out, start + step * seq as f64, *dec),
        Gen::Sequence => write_u64(out, seq),
        Gen::Literal(v) => out.extend_from_slice(v),
        Gen::Choice {
            salt,
            values,
            cumulative,
        } => {
            let total = cumulative.last().copied().unwrap_or(0.0);
            let u = unit(rand(env.key ^ salt, seq)) * total;
            let i = cumulative
                .partition_point(|c| *c <= u)
                .min(values.len().saturating_sub(1));
            if let Some(v) = values.get(i) {
                out.extend_from_slice(v);
            }
        }
        Gen::Bool { salt, p } => {
            let yes = unit(rand(env.key ^ salt, seq)) < *p;
            out.extend_from_slice(if yes { b"true" } else { b"false" });
        }
        Gen::Uuid { salt } => {
            let h1 = rand(env.key ^ salt, seq);
            let h2 = mix(h1 ^ 0x6a09_e667_f3bc_c909);
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&h1.to_be_bytes());
            b[8..].copy_from_slice(&h2.to_be_bytes());
            b[6] = (b[6] & 0x0f) | 0x40;
            b[8] = (b[8] & 0x3f) | 0x80;
            write_uuid(out, b);
        }
        Gen::Timestamp => write_u64(out, env.now_ms),
        Gen::GpsWalk {
            salt,
            lat,
            lon,
            deg_per_m_lat,
            deg_per_m_lon,
            north,
            east,
            spread,
            origin,
            dec,
        } => {
            let ks = env.key ^ salt;
            let (sn, se) = if *spread > 0.0 {
                (
                    (unit(rand(ks, 1)) * 2.0 - 1.0) * spread,
                    (unit(rand(ks, 2)) * 2.0 - 1.0) * spread,
                )
            } else {
                (0.0, 0.0)
            };
            let o = *origin as usize;
            let n = north.value(env.key, seq, st.origins[o], sn);
            let e = east.value(env.key, seq, st.origins[o + 1], se);
            write_position(out, lat + n * deg_per_m_lat, lon + e * deg_per_m_lon, *dec);
        }
        Gen::GpsRoute {
            salt,
            points,
            cumulative,
            total_m,
            speed_mps,
            shift_ms,
            dec,
        } => {
            let loop_ms = total_m / speed_mps * 1000.0;
            let shift = shift_ms.unwrap_or_else(|| unit(rand(env.key ^ salt, 0)) * loop_ms);
            let d = (env.scheduled_ms as f64 + shift).rem_euclid(loop_ms) / 1000.0 * speed_mps;
            let n = points.len();
            let i = cumulative
                .partition_point(|c| *c <= d)
                .saturating_sub(1)
                .min(n - 1);
            let len = cumulative[i + 1] - cumulative[i];
            let f = if len > 0.0 {
                ((d - cumulative[i]) / len).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let (a, b) = (points[i], points[(i + 1) % n]);
            write_position(out, a.0 + (b.0 - a.0) * f, a.1 + (b.1 - a.1) * f, *dec);
        }
        Gen::Template(parts) => {
            out.push(b'"');
            for p in parts {
                match p {
                    Tpl::Lit(s) => out.extend_from_slice(s),
                    Tpl::DeviceId => write_str_inner(out, env.ctx.device_id),
                    Tpl::Fleet => write_str_inner(out, env.ctx.fleet),
                    Tpl::Index(w) => write_u64_padded(out, env.ctx.index, *w),
                    Tpl::Seq => write_u64(out, seq),
                }
            }
            out.push(b'"');
        }
        Gen::StateMachine {
            salt,
            machine,
            cache,
        } => {
            let c = &mut st.machines[*cache as usize];
            let s = machine.state_at(env.key ^ salt, seq, c);
            out.extend_from_slice(&machine.states[s as usize].json);
        }
    }
}

fn write_position(out: &mut Vec<u8>, lat: f64, lon: f64, dec: u8) {
    let lon = (lon + 180.0).rem_euclid(360.0) - 180.0;
    out.extend_from_slice(b"{\"lat\":");
    write_f64(out, lat.clamp(-90.0, 90.0), dec);
    out.extend_from_slice(b",\"lon\":");
    write_f64(out, lon, dec);
    out.push(b'}');
}

impl Machine {
    /// The state at `seq` for stream `ks`. The machine restarts in state 0 at every multiple
    /// of `restart_every`, and walks its segments from there; `c` remembers the current
    /// segment, so consecutive seqs cost O(1).
    pub fn state_at(&self, ks: u64, seq: u64, c: &mut MachineCache) -> u32 {
        let epoch = seq / self.restart_every;
        let stream = mix(ks ^ epoch);
        if c.epoch != epoch || seq < c.start {
            let start = epoch * self.restart_every;
            *c = MachineCache {
                epoch,
                seg: 0,
                start,
                end: start.saturating_add(self.dwell(stream, 0, 0)),
                state: 0,
            };
        }
        while seq >= c.end {
            c.state = self.next(stream, c.seg, c.state);
            c.seg += 1;
            c.start = c.end;
            c.end = c.start.saturating_add(self.dwell(stream, c.seg, c.state));
        }
        c.state
    }

    fn dwell(&self, stream: u64, seg: u64, state: u32) -> u64 {
        match self.states.get(state as usize) {
            Some(s) if !s.next.is_empty() => s.dwell_min + rand(stream, 2 * seg) % s.dwell_span,
            // A final state lasts until the restart.
            _ => u64::MAX,
        }
    }

    fn next(&self, stream: u64, seg: u64, state: u32) -> u32 {
        let Some(s) = self.states.get(state as usize) else {
            return 0;
        };
        let total = s.next.last().map(|(c, _)| *c).unwrap_or(0.0);
        let u = unit(rand(stream, 2 * seg + 1)) * total;
        let i = s
            .next
            .partition_point(|(c, _)| *c <= u)
            .min(s.next.len().saturating_sub(1));
        s.next.get(i).map(|(_, to)| *to).unwrap_or(state)
    }
}
