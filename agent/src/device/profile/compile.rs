//! Compiling one generator: parameters resolved, salts and tables computed once per shard.

use pluribus_common::profile::generator::{
    parse_template, Generator, Gps, Phase, TemplatePart, MAX_DECIMALS,
};

use super::json::{write_str, write_str_inner};
use super::noise::Walk;
use super::program::{Gen, MState, Machine, Program, Shape, Shift, Tpl};
use crate::shard::schedule::{mix, stable_hash};

/// Default decimals of random and wave values.
const DEFAULT_DECIMALS: u8 = 2;

impl Program {
    pub(super) fn gen(&mut self, g: &Generator, path: &str) -> Gen {
        let salt = stable_hash(&[path.as_bytes()]);
        let dec = |d: Option<u8>, default: u8| d.unwrap_or(default).min(MAX_DECIMALS);
        match g {
            Generator::Uniform(u) => Gen::Uniform {
                salt,
                min: u.min,
                span: u.max - u.min,
                dec: dec(u.decimals, DEFAULT_DECIMALS),
            },
            Generator::Normal(n) => Gen::Normal {
                salt,
                mean: n.mean,
                sd: n.stddev,
                min: n.min.unwrap_or(f64::NEG_INFINITY),
                max: n.max.unwrap_or(f64::INFINITY),
                dec: dec(n.decimals, DEFAULT_DECIMALS),
            },
            Generator::RandomWalk(w) => {
                self.origins += 1;
                Gen::Walk {
                    walk: Walk::new(salt, w.start, w.step, w.min, w.max),
                    origin: (self.origins - 1) as u32,
                    dec: dec(w.decimals, DEFAULT_DECIMALS),
                }
            }
            Generator::Sine(w) | Generator::Square(w) | Generator::Sawtooth(w) => {
                let period_ms = (w.period.as_millis() as u64).max(1);
                Gen::Wave {
                    shape: match g {
                        Generator::Sine(_) => Shape::Sine,
                        Generator::Square(_) => Shape::Square,
                        _ => Shape::Sawtooth,
                    },
                    salt,
                    period_ms,
                    amplitude: w.amplitude,
                    offset: w.offset,
                    shift: match w.phase {
                        Phase::PerDevice => Shift::PerDevice,
                        Phase::Seconds(s) => Shift::Fixed(
                            ((s * 1000.0).round() as i64).rem_euclid(period_ms as i64) as u64,
                        ),
                    },
                    dec: dec(w.decimals, DEFAULT_DECIMALS),
                }
            }
            Generator::Counter(c) => Gen::Counter {
                start: c.start,
                step: c.step,
                dec: dec(c.decimals, MAX_DECIMALS),
            },
            Generator::Sequence => Gen::Sequence,
            Generator::Choice(c) => {
                let mut total = 0.0;
                let cumulative = (0..c.values.len())
                    .map(|i| {
                        total += c
                            .weights
                            .as_ref()
                            .and_then(|w| w.get(i).copied())
                            .unwrap_or(1.0);
                        total
                    })
                    .collect();
                Gen::Choice {
                    salt,
                    values: c
                        .values
                        .iter()
                        .map(|v| serde_json::to_vec(v).unwrap_or_default().into())
                        .collect(),
                    cumulative,
                }
            }
            Generator::Bool(b) => Gen::Bool {
                salt,
                p: b.probability,
            },
            Generator::Uuid => Gen::Uuid { salt },
            Generator::Timestamp => Gen::Timestamp,
            Generator::Gps(gps) => self.gps(gps, salt),
            Generator::Template(t) => Gen::Template(
                parse_template(path, t)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| match p {
                        TemplatePart::Lit(s) => {
                            let mut b = Vec::new();
                            write_str_inner(&mut b, &s);
                            Tpl::Lit(b.into())
                        }
                        TemplatePart::DeviceId => Tpl::DeviceId,
                        TemplatePart::Fleet => Tpl::Fleet,
                        TemplatePart::Index { width } => Tpl::Index(width),
                        TemplatePart::Seq => Tpl::Seq,
                    })
                    .collect(),
            ),
            Generator::StateMachine(m) => {
                let names: Vec<&str> = m.states.iter().map(|s| s.name.as_str()).collect();
                let states = m
                    .states
                    .iter()
                    .map(|s| {
                        let mut json = Vec::new();
                        write_str(&mut json, &s.name);
                        let mut total = 0.0;
                        let next = s
                            .next
                            .iter()
                            .filter_map(|(n, w)| {
                                let i = names.iter().position(|x| x == n)?;
                                total += w;
                                Some((total, i as u32))
                            })
                            .collect();
                        MState {
                            json: json.into(),
                            dwell_min: s.dwell.min.max(1),
                            dwell_span: s.dwell.max.saturating_sub(s.dwell.min) + 1,
                            next,
                        }
                    })
                    .collect();
                self.machines += 1;
                Gen::StateMachine {
                    salt,
                    machine: Machine {
                        states,
                        restart_every: m.restart_every.max(1),
                    },
                    cache: (self.machines - 1) as u32,
                }
            }
            // `node` merges constants into the literals; this arm keeps `gen` total.
            Generator::Constant(v) => {
                Gen::Literal(serde_json::to_vec(v).unwrap_or_default().into())
            }
        }
    }

    fn gps(&mut self, g: &Gps, salt: u64) -> Gen {
        const M_PER_DEG: f64 = 111_320.0;
        let dec = g.decimals.unwrap_or(6).min(MAX_DECIMALS);
        if let Some(w) = &g.walk {
            let radius = w.radius_m.unwrap_or(1000.0 * w.step_m);
            let axis_step = w.step_m / std::f64::consts::SQRT_2;
            self.origins += 2;
            return Gen::GpsWalk {
                salt,
                lat: w.lat,
                lon: w.lon,
                deg_per_m_lat: 1.0 / M_PER_DEG,
                deg_per_m_lon: 1.0 / (M_PER_DEG * w.lat.to_radians().cos().max(1e-6)),
                north: Walk::new(mix(salt ^ 1), 0.0, axis_step, -radius, radius),
                east: Walk::new(mix(salt ^ 2), 0.0, axis_step, -radius, radius),
                spread: w.spread_m.unwrap_or(0.0).min(radius),
                origin: (self.origins - 2) as u32,
                dec,
            };
        }
        let points: Vec<(f64, f64)> = g
            .waypoints
            .iter()
            .flatten()
            .map(|[a, b]| (*a, *b))
            .collect();
        let mut cumulative = vec![0.0];
        let mut total = 0.0;
        for (i, a) in points.iter().enumerate() {
            let b = points[(i + 1) % points.len()];
            let mid = ((a.0 + b.0) / 2.0).to_radians().cos();
            let dn = (b.0 - a.0) * M_PER_DEG;
            let de = (b.1 - a.1) * M_PER_DEG * mid;
            total += (dn * dn + de * de).sqrt();
            cumulative.push(total);
        }
        let speed_mps = g.speed_kmh.unwrap_or(1.0) / 3.6;
        Gen::GpsRoute {
            salt,
            points,
            cumulative,
            total_m: total.max(1e-9),
            speed_mps,
            shift_ms: match g.phase {
                Phase::PerDevice => None,
                Phase::Seconds(s) => Some(s * 1000.0),
            },
            dec,
        }
    }
}
