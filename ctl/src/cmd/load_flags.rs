//! Load-shape flags, shared by `deploy-fleet` and `set-load`:
//! `--rate 20000/s`, and one shape: `--ramp 1000/60s`, `--stairs 100/30s`,
//! `--wave period=60s,min=0.2,max=1.0`, `--bursts every=10s,size=50,hold=5s[,base=N]`,
//! `--stages 1000:60s,5000:2m,0:30s`. With `--rate` the shape moves the rate; without it,
//! the number of active devices (arrival). `--arrival KIND:SPEC` (`--arrival ramp:1000/60s`)
//! shapes the arrival explicitly, so that one command can shape both.

use std::time::Duration;

use pluribus_common::load::{LoadSpec, RateSpec, Shape, Stage, DEFAULT_MAX_DEVICE_RATE};
use pluribus_common::SpecError;

/// Load flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LoadFlags {
    /// Fleet-wide message rate shared by the active devices (open model), e.g. 20000/s.
    #[arg(long, value_name = "N/s", value_parser = parse_rate, help_heading = "Load shape")]
    pub rate: Option<f64>,
    /// Linear ramp to N over T, e.g. 1000/60s (devices, or msg/s with --rate).
    #[arg(long, value_name = "N/T", value_parser = parse_ramp, help_heading = "Load shape")]
    pub ramp: Option<Shape>,
    /// Stairs: STEP more every T, e.g. 100/30s.
    #[arg(long, value_name = "STEP/T", value_parser = parse_stairs, help_heading = "Load shape")]
    pub stairs: Option<Shape>,
    /// Sinusoidal wave between fractions of the maximum, e.g. period=60s,min=0.2,max=1.0.
    #[arg(long, value_name = "period=T,min=F,max=F", value_parser = parse_wave, help_heading = "Load shape")]
    pub wave: Option<Shape>,
    /// Poisson-timed bursts, e.g. every=10s,size=50,hold=5s[,base=N].
    #[arg(long, value_name = "every=T,size=N,hold=T", value_parser = parse_bursts, help_heading = "Load shape")]
    pub bursts: Option<Shape>,
    /// k6-style stages TARGET:DURATION,..., e.g. 1000:60s,5000:2m,0:30s.
    #[arg(long, value_name = "N:T,...", value_parser = parse_stages, help_heading = "Load shape")]
    pub stages: Option<Shape>,
    /// How devices come online when the shape flags move the rate: ramp:N/T,
    /// stairs:STEP/T, wave:period=T,min=F,max=F, bursts:every=T,size=N,hold=T or
    /// stages:N:T,... (e.g. --rate 20000/s --wave period=60s,min=0.2,max=1 --arrival
    /// ramp:5000/60s).
    #[arg(long, value_name = "KIND:SPEC", value_parser = parse_arrival, help_heading = "Load shape")]
    pub arrival: Option<Shape>,
    /// Most msg/s one device may send [default: 1000].
    #[arg(long, value_name = "N", help_heading = "Load shape")]
    pub max_device_rate: Option<f64>,
}

impl LoadFlags {
    fn shape(&self) -> Result<Option<Shape>, SpecError> {
        let given: Vec<&Shape> = [
            &self.ramp,
            &self.stairs,
            &self.wave,
            &self.bursts,
            &self.stages,
        ]
        .into_iter()
        .flatten()
        .collect();
        match given.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some((*one).clone())),
            _ => Err(SpecError::new("load", "give one shape (--ramp, --stairs, --wave, --bursts or --stages); to shape the arrival as well as the rate, add --arrival KIND:SPEC")),
        }
    }

    /// True when any load flag is set.
    pub fn is_set(&self) -> bool {
        self.rate.is_some()
            || self.arrival.is_some()
            || self.max_device_rate.is_some()
            || self.shape().map(|s| s.is_some()).unwrap_or(true)
    }

    /// The load the flags describe (None when no flag is set).
    pub fn spec(&self) -> Result<Option<LoadSpec>, SpecError> {
        if !self.is_set() {
            return Ok(None);
        }
        let shape = self.shape()?;
        let (arrival, rate) = match (self.rate, &self.arrival) {
            (Some(target), arrival) => (arrival.clone(), Some(RateSpec { target, shape })),
            (None, Some(_)) if shape.is_some() => {
                return Err(SpecError::new(
                    "load",
                    "without --rate, a shape flag and --arrival both shape the arrival: give one (or add --rate N/s for the shape flag to move the rate)",
                ))
            }
            (None, arrival) => (shape.or_else(|| arrival.clone()), None),
        };
        Ok(Some(LoadSpec {
            arrival,
            rate,
            max_device_rate: self.max_device_rate.unwrap_or(DEFAULT_MAX_DEVICE_RATE),
        }))
    }
}

/// A running fleet's new load: what the flags name replaces the old load's part, the rest
/// is kept (`notes` says which, in words).
#[derive(Debug, PartialEq)]
pub struct Merged {
    /// The load to record.
    pub load: Option<LoadSpec>,
    /// One sentence per part of the old load that was kept or replaced.
    pub notes: Vec<String>,
}

impl LoadFlags {
    /// Changes only what the flags name in `old`, the load running for `t` seconds on a fleet
    /// of `count`. The schedule restarts with the new load, so a kept shape starts again;
    /// a kept shape that had settled (a finished ramp) holds its value instead, and an
    /// arrival that had brought every device online is dropped.
    pub fn merge(
        &self,
        old: Option<&LoadSpec>,
        t: f64,
        count: u64,
        seed: u64,
    ) -> Result<Merged, SpecError> {
        let Some(new) = self.spec()? else {
            return Ok(Merged {
                load: old.cloned(),
                notes: Vec::new(),
            });
        };
        let mut notes = Vec::new();
        let shape_only = self.rate.is_none() && self.arrival.is_none() && new.arrival.is_some();
        let arrival = if self.arrival.is_some() || shape_only {
            if old.and_then(|o| o.arrival.as_ref()).is_some() {
                notes.push("arrival replaced".into());
            }
            new.arrival
        } else {
            match old.and_then(|o| o.arrival.as_ref()) {
                None => None,
                Some(a) => match a.settled(t, count as f64, seed) {
                    Some(v) if v >= count as f64 => {
                        notes.push(format!("arrival kept: done, all {count} devices online"));
                        None
                    }
                    Some(v) => {
                        notes.push(format!("arrival kept: done, holding {v:.0} devices"));
                        Some(Shape::constant(v))
                    }
                    None => {
                        notes.push(format!(
                            "arrival kept ({}): it restarts from now; give --arrival to change it",
                            a.phase(t)
                        ));
                        Some(a.clone())
                    }
                },
            }
        };
        let rate = if self.rate.is_some() {
            if old.and_then(|o| o.rate.as_ref()).is_some() {
                notes.push("rate replaced".into());
            }
            new.rate
        } else {
            old.and_then(|o| o.rate.clone()).map(|mut r| {
                match r
                    .shape
                    .as_ref()
                    .map(|s| (s.settled(t, r.target, seed), s.phase(t)))
                {
                    Some((Some(v), _)) => {
                        notes.push(format!("rate kept: {v:.0} msg/s (its shape is done)"));
                        r.shape = (v < r.target).then(|| Shape::constant(v));
                    }
                    Some((None, phase)) => notes.push(format!(
                        "rate kept ({phase}): its shape restarts from now; give --rate to change it"
                    )),
                    None => notes.push(format!("rate kept: {:.0} msg/s", r.target)),
                }
                r
            })
        };
        let max_device_rate = match (self.max_device_rate, old) {
            (None, Some(o)) => o.max_device_rate,
            _ => new.max_device_rate,
        };
        let load = (arrival.is_some() || rate.is_some()).then_some(LoadSpec {
            arrival,
            rate,
            max_device_rate,
        });
        Ok(Merged { load, notes })
    }
}

fn number(s: &str, what: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .map_err(|_| format!("'{s}' is not a number ({what})"))
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("'{s}' is not a duration ({e}), e.g. 30s"))
}

fn parse_rate(s: &str) -> Result<f64, String> {
    number(s.trim().trim_end_matches("/s"), "msg/s, e.g. 20000/s")
}

fn split_slash<'a>(s: &'a str, example: &str) -> Result<(&'a str, &'a str), String> {
    s.split_once('/')
        .ok_or_else(|| format!("'{s}' is not N/T: write e.g. {example}"))
}

fn parse_ramp(s: &str) -> Result<Shape, String> {
    let (n, t) = split_slash(s, "1000/60s")?;
    Ok(Shape::Ramp {
        to: Some(number(n, "ramp target")?),
        over: duration(t)?,
        from: 0.0,
    })
}

fn parse_stairs(s: &str) -> Result<Shape, String> {
    let (n, t) = split_slash(s, "100/30s")?;
    Ok(Shape::Stairs {
        step: number(n, "step size")?,
        every: duration(t)?,
    })
}

fn pairs(s: &str, keys: &[&str], example: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("'{part}' is not key=value: write e.g. {example}"))?;
        if !keys.contains(&k) {
            return Err(format!(
                "unknown key '{k}': use {} (e.g. {example})",
                keys.join(", ")
            ));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

fn get<'a>(p: &'a [(String, String)], k: &str, example: &str) -> Result<&'a str, String> {
    p.iter()
        .find(|(x, _)| x == k)
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| format!("missing {k}=…: write e.g. {example}"))
}

fn parse_wave(s: &str) -> Result<Shape, String> {
    const EX: &str = "period=60s,min=0.2,max=1.0";
    let p = pairs(s, &["period", "min", "max"], EX)?;
    Ok(Shape::Wave {
        period: duration(get(&p, "period", EX)?)?,
        min: number(get(&p, "min", EX)?, "min fraction")?,
        max: number(get(&p, "max", EX)?, "max fraction")?,
    })
}

fn parse_bursts(s: &str) -> Result<Shape, String> {
    const EX: &str = "every=10s,size=50,hold=5s";
    let p = pairs(s, &["every", "size", "hold", "base"], EX)?;
    Ok(Shape::Bursts {
        every: duration(get(&p, "every", EX)?)?,
        size: number(get(&p, "size", EX)?, "burst size")?,
        hold: duration(get(&p, "hold", EX)?)?,
        base: p
            .iter()
            .find(|(k, _)| k == "base")
            .map(|(_, v)| number(v, "base"))
            .transpose()?
            .unwrap_or(0.0),
    })
}

fn parse_arrival(s: &str) -> Result<Shape, String> {
    let (kind, spec) = s.split_once(':').ok_or_else(|| {
        format!("'{s}' is not KIND:SPEC: write e.g. ramp:1000/60s (ramp, stairs, wave, bursts or stages)")
    })?;
    match kind.trim() {
        "ramp" => parse_ramp(spec),
        "stairs" => parse_stairs(spec),
        "wave" => parse_wave(spec),
        "bursts" => parse_bursts(spec),
        "stages" => parse_stages(spec),
        other => Err(format!(
            "unknown arrival shape '{other}': use ramp, stairs, wave, bursts or stages (e.g. ramp:1000/60s)"
        )),
    }
}

fn parse_stages(s: &str) -> Result<Shape, String> {
    let mut stages = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (n, t) = part
            .split_once(':')
            .ok_or_else(|| format!("'{part}' is not TARGET:DURATION: write e.g. 1000:60s"))?;
        stages.push(Stage {
            target: number(n, "stage target")?,
            duration: duration(t)?,
        });
    }
    Ok(Shape::Stages(stages))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `set-load --rate` used to drop the fleet's --ramp arrival silently.
    #[test]
    fn set_load_changes_only_what_it_names() {
        let ramp = |to: f64, secs: u64| Shape::Ramp {
            to: Some(to),
            over: Duration::from_secs(secs),
            from: 0.0,
        };
        let old = LoadSpec {
            arrival: Some(ramp(100.0, 60)),
            rate: None,
            max_device_rate: 50.0,
        };
        let rate = LoadFlags {
            rate: Some(5000.0),
            ..Default::default()
        };
        // Mid-ramp: the arrival is kept (and said to restart).
        let m = rate.merge(Some(&old), 10.0, 100, 0).expect("valid");
        let load = m.load.expect("a load");
        assert_eq!(load.arrival, old.arrival);
        assert_eq!(load.rate.map(|r| r.target), Some(5000.0));
        assert_eq!(load.max_device_rate, 50.0);
        assert!(
            m.notes.iter().any(|n| n.contains("arrival kept")),
            "{:?}",
            m.notes
        );
        // Past the ramp every device is online: the arrival is done, not restarted.
        let m = rate.merge(Some(&old), 120.0, 100, 0).expect("valid");
        assert_eq!(m.load.expect("a load").arrival, None);
        // A ramp to half the fleet that is done holds its value.
        let half = LoadSpec {
            arrival: Some(ramp(50.0, 60)),
            ..old.clone()
        };
        let m = rate.merge(Some(&half), 120.0, 100, 0).expect("valid");
        let a = m.load.expect("a load").arrival.expect("kept");
        assert_eq!(a.value(0.0, 100.0, 0), 50.0);
        // A new arrival replaces the old one and keeps the old rate.
        let with_rate = LoadSpec {
            rate: Some(RateSpec {
                target: 900.0,
                shape: None,
            }),
            ..old.clone()
        };
        let arrival = LoadFlags {
            ramp: Some(ramp(80.0, 30)),
            ..Default::default()
        };
        let m = arrival.merge(Some(&with_rate), 5.0, 100, 0).expect("valid");
        let load = m.load.expect("a load");
        assert_eq!(load.arrival, Some(ramp(80.0, 30)));
        assert_eq!(load.rate.map(|r| r.target), Some(900.0));
        assert!(
            m.notes.iter().any(|n| n.contains("arrival replaced")),
            "{:?}",
            m.notes
        );
        assert!(
            m.notes.iter().any(|n| n.contains("rate kept")),
            "{:?}",
            m.notes
        );
    }

    #[test]
    fn flags_parse_into_shapes() {
        assert_eq!(parse_rate("20000/s"), Ok(20000.0));
        assert!(
            matches!(parse_ramp("1000/60s"), Ok(Shape::Ramp { to: Some(t), .. }) if t == 1000.0)
        );
        assert!(
            matches!(parse_wave("period=60s,min=0.2,max=1.0"), Ok(Shape::Wave { min, .. }) if min == 0.2)
        );
        assert!(parse_wave("period=60s,min=0.2")
            .expect_err("max")
            .contains("max="));
        assert!(parse_bursts("every=10s,size=5,hold=1s,colour=red")
            .expect_err("key")
            .contains("unknown key"));
        assert!(matches!(parse_stages("1000:60s,0:30s"), Ok(Shape::Stages(s)) if s.len() == 2));
        assert!(parse_ramp("1000").expect_err("form").contains("1000/60s"));
    }

    #[test]
    fn a_shape_moves_the_rate_when_a_rate_is_given() {
        let f = LoadFlags {
            rate: Some(500.0),
            wave: parse_wave("period=10s,min=0.5,max=1").ok(),
            ..Default::default()
        };
        let l = f.spec().expect("ok").expect("set");
        assert!(l.arrival.is_none() && l.rate.is_some_and(|r| r.shape.is_some()));
        let f = LoadFlags {
            ramp: parse_ramp("10/5s").ok(),
            ..Default::default()
        };
        assert!(f.spec().expect("ok").expect("set").arrival.is_some());
        assert_eq!(LoadFlags::default().spec(), Ok(None));
        let two = LoadFlags {
            ramp: parse_ramp("10/5s").ok(),
            stairs: parse_stairs("1/1s").ok(),
            ..Default::default()
        };
        assert_eq!(two.spec().expect_err("two").field, "load");
    }

    #[test]
    fn arrival_shapes_the_devices_while_the_flags_shape_the_rate() {
        let f = LoadFlags {
            rate: Some(2000.0),
            wave: parse_wave("period=10s,min=0.5,max=1").ok(),
            arrival: parse_arrival("ramp:100/30s").ok(),
            ..Default::default()
        };
        let l = f.spec().expect("ok").expect("set");
        assert!(matches!(l.arrival, Some(Shape::Ramp { .. })));
        assert!(matches!(
            l.rate,
            Some(RateSpec {
                shape: Some(Shape::Wave { .. }),
                ..
            })
        ));
        let alone = LoadFlags {
            arrival: parse_arrival("stages:10:5s,0:5s").ok(),
            ..Default::default()
        };
        assert!(matches!(
            alone.spec(),
            Ok(Some(LoadSpec {
                arrival: Some(Shape::Stages(_)),
                rate: None,
                ..
            }))
        ));
        let both = LoadFlags {
            ramp: parse_ramp("10/5s").ok(),
            arrival: parse_arrival("ramp:10/5s").ok(),
            ..Default::default()
        };
        assert!(both
            .spec()
            .expect_err("two arrivals")
            .message
            .contains("--arrival"));
        for bad in ["ramp", "spiral:1/1s", "ramp:10"] {
            assert!(parse_arrival(bad).is_err(), "{bad}");
        }
        assert!(parse_arrival("spiral:1/1s")
            .expect_err("kind")
            .contains("ramp, stairs"));
    }
}
