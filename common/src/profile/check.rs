//! Checks of generator parameters. Errors name the parameter, e.g.
//! `fields.power.normal.stddev: must be >= 0`.

use std::time::Duration;

use super::generator::{Generator, Gps, Phase, StateMachine, MAX_DECIMALS};
use super::template::parse_template;
use crate::SpecError;

fn finite(at: &str, name: &str, v: f64) -> Result<(), SpecError> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(SpecError::new(
            format!("{at}.{name}"),
            "must be a finite number",
        ))
    }
}

fn below(at: &str, min: f64, max: f64) -> Result<(), SpecError> {
    if min < max {
        Ok(())
    } else {
        Err(SpecError::new(
            format!("{at}.max"),
            format!("must be greater than min ({min})"),
        ))
    }
}

fn decimals(at: &str, d: Option<u8>) -> Result<(), SpecError> {
    match d {
        Some(d) if d > MAX_DECIMALS => Err(SpecError::new(
            format!("{at}.decimals"),
            format!("{d} is too many: use 0 to {MAX_DECIMALS}"),
        )),
        _ => Ok(()),
    }
}

fn probability(field: String, p: f64) -> Result<(), SpecError> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(SpecError::new(field, format!("{p} must be in [0, 1]")))
    }
}

/// Checks a probability; `field` names it in the error.
pub(crate) fn check_probability(field: String, p: f64) -> Result<(), SpecError> {
    probability(field, p)
}

fn weights(field: String, w: &[f64]) -> Result<(), SpecError> {
    if let Some(bad) = w.iter().find(|x| !(x.is_finite() && **x >= 0.0)) {
        return Err(SpecError::new(
            field,
            format!("{bad} must be a number >= 0"),
        ));
    }
    if w.iter().sum::<f64>() <= 0.0 {
        return Err(SpecError::new(field, "at least one weight must be above 0"));
    }
    Ok(())
}

impl Generator {
    /// The name the generator is written with.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Constant(_) => "constant",
            Self::Uniform(_) => "uniform",
            Self::Normal(_) => "normal",
            Self::RandomWalk(_) => "random_walk",
            Self::Sine(_) => "sine",
            Self::Square(_) => "square",
            Self::Sawtooth(_) => "sawtooth",
            Self::Counter(_) => "counter",
            Self::Sequence => "sequence",
            Self::Choice(_) => "choice",
            Self::Bool(_) => "bool",
            Self::Uuid => "uuid",
            Self::Timestamp => "timestamp",
            Self::Gps(_) => "gps",
            Self::Template(_) => "template",
            Self::StateMachine(_) => "state_machine",
        }
    }

    /// Checks the parameters; `path` is the field holding the generator, e.g. `fields.power`.
    /// Errors name the parameter, e.g. `fields.power.normal.stddev`.
    pub fn validate(&self, path: &str) -> Result<(), SpecError> {
        let at = format!("{path}.{}", self.name());
        match self {
            Self::Constant(_) | Self::Sequence | Self::Uuid | Self::Timestamp => Ok(()),
            Self::Uniform(u) => {
                finite(&at, "min", u.min)?;
                finite(&at, "max", u.max)?;
                below(&at, u.min, u.max)?;
                decimals(&at, u.decimals)
            }
            Self::Normal(n) => {
                finite(&at, "mean", n.mean)?;
                finite(&at, "stddev", n.stddev)?;
                if n.stddev < 0.0 {
                    return Err(SpecError::new(format!("{at}.stddev"), "must be >= 0"));
                }
                if let (Some(min), Some(max)) = (n.min, n.max) {
                    below(&at, min, max)?;
                }
                decimals(&at, n.decimals)
            }
            Self::RandomWalk(w) => {
                for (name, v) in [
                    ("start", w.start),
                    ("step", w.step),
                    ("min", w.min),
                    ("max", w.max),
                ] {
                    finite(&at, name, v)?;
                }
                below(&at, w.min, w.max)?;
                if w.step <= 0.0 {
                    return Err(SpecError::new(format!("{at}.step"), "must be > 0"));
                }
                if !(w.min..=w.max).contains(&w.start) {
                    return Err(SpecError::new(
                        format!("{at}.start"),
                        format!(
                            "{} must be within [min, max] = [{}, {}]",
                            w.start, w.min, w.max
                        ),
                    ));
                }
                decimals(&at, w.decimals)
            }
            Self::Sine(w) | Self::Square(w) | Self::Sawtooth(w) => {
                if w.period < Duration::from_millis(1) {
                    return Err(SpecError::new(
                        format!("{at}.period"),
                        "must be > 0 (at least 1ms), e.g. 24h",
                    ));
                }
                finite(&at, "amplitude", w.amplitude)?;
                finite(&at, "offset", w.offset)?;
                if let Phase::Seconds(s) = w.phase {
                    finite(&at, "phase", s)?;
                }
                decimals(&at, w.decimals)
            }
            Self::Counter(c) => {
                finite(&at, "start", c.start)?;
                finite(&at, "step", c.step)?;
                decimals(&at, c.decimals)
            }
            Self::Choice(c) => {
                if c.values.is_empty() {
                    return Err(SpecError::new(
                        format!("{at}.values"),
                        "must list at least one value",
                    ));
                }
                if let Some(w) = &c.weights {
                    if w.len() != c.values.len() {
                        return Err(SpecError::new(
                            format!("{at}.weights"),
                            format!(
                                "has {} weights for {} values: give one weight per value",
                                w.len(),
                                c.values.len()
                            ),
                        ));
                    }
                    weights(format!("{at}.weights"), w)?;
                }
                Ok(())
            }
            Self::Bool(b) => probability(format!("{at}.probability"), b.probability),
            Self::Gps(g) => validate_gps(&at, g),
            Self::Template(t) => parse_template(&at, t).map(|_| ()),
            Self::StateMachine(m) => validate_state_machine(&at, m),
        }
    }
}

fn validate_gps(at: &str, g: &Gps) -> Result<(), SpecError> {
    decimals(at, g.decimals)?;
    if let Phase::Seconds(s) = g.phase {
        finite(at, "phase", s)?;
    }
    match (&g.walk, &g.waypoints) {
        (Some(w), None) => {
            if g.speed_kmh.is_some() {
                return Err(SpecError::new(
                    format!("{at}.speed_kmh"),
                    "only applies to waypoints: remove it",
                ));
            }
            let w_at = format!("{at}.walk");
            if !(-90.0..=90.0).contains(&w.lat) {
                return Err(SpecError::new(
                    format!("{w_at}.lat"),
                    "must be in [-90, 90]",
                ));
            }
            if !(-180.0..=180.0).contains(&w.lon) {
                return Err(SpecError::new(
                    format!("{w_at}.lon"),
                    "must be in [-180, 180]",
                ));
            }
            if !(w.step_m.is_finite() && w.step_m > 0.0) {
                return Err(SpecError::new(format!("{w_at}.step_m"), "must be > 0"));
            }
            if let Some(r) = w.radius_m {
                if !(r.is_finite() && r > 0.0) {
                    return Err(SpecError::new(format!("{w_at}.radius_m"), "must be > 0"));
                }
            }
            if let Some(s) = w.spread_m {
                if !(s.is_finite() && s >= 0.0) {
                    return Err(SpecError::new(format!("{w_at}.spread_m"), "must be >= 0"));
                }
            }
            Ok(())
        }
        (None, Some(points)) => {
            if points.len() < 2 {
                return Err(SpecError::new(
                    format!("{at}.waypoints"),
                    "give at least two [lat, lon] points",
                ));
            }
            for (i, [lat, lon]) in points.iter().enumerate() {
                if !(-90.0..=90.0).contains(lat) || !(-180.0..=180.0).contains(lon) {
                    return Err(SpecError::new(
                        format!("{at}.waypoints[{i}]"),
                        format!("[{lat}, {lon}] is not a position: write [lat, lon] in degrees"),
                    ));
                }
            }
            if points.windows(2).all(|p| p[0] == p[1]) {
                return Err(SpecError::new(
                    format!("{at}.waypoints"),
                    "all points are the same: the route has no length",
                ));
            }
            match g.speed_kmh {
                Some(s) if s.is_finite() && s > 0.0 => Ok(()),
                Some(_) => Err(SpecError::new(format!("{at}.speed_kmh"), "must be > 0")),
                None => Err(SpecError::new(
                    format!("{at}.speed_kmh"),
                    "missing: give the speed along the route, e.g. 40",
                )),
            }
        }
        (Some(_), Some(_)) => Err(SpecError::new(
            at,
            "give either walk or waypoints, not both",
        )),
        (None, None) => Err(SpecError::new(
            at,
            "give walk: {lat, lon, step_m} or waypoints: [[lat, lon], ...] with speed_kmh",
        )),
    }
}

fn validate_state_machine(at: &str, m: &StateMachine) -> Result<(), SpecError> {
    if m.states.is_empty() {
        return Err(SpecError::new(
            format!("{at}.states"),
            "must list at least one state",
        ));
    }
    if m.restart_every == 0 {
        return Err(SpecError::new(
            format!("{at}.restart_every"),
            "must be at least 1 tick",
        ));
    }
    for (i, s) in m.states.iter().enumerate() {
        let s_at = format!("{at}.states[{i}]");
        if s.name.is_empty() {
            return Err(SpecError::new(format!("{s_at}.name"), "must not be empty"));
        }
        if m.states[..i].iter().any(|o| o.name == s.name) {
            return Err(SpecError::new(
                format!("{s_at}.name"),
                format!("'{}' is listed twice", s.name),
            ));
        }
        if s.dwell.min == 0 || s.dwell.min > s.dwell.max {
            return Err(SpecError::new(
                format!("{s_at}.dwell"),
                format!("[{}, {}]: need 1 <= min <= max", s.dwell.min, s.dwell.max),
            ));
        }
        for target in s.next.keys() {
            if !m.states.iter().any(|o| &o.name == target) {
                return Err(SpecError::new(
                    format!("{s_at}.next.{target}"),
                    format!("'{target}' is not a state: use one of the names in states"),
                ));
            }
        }
        if !s.next.is_empty() {
            let w: Vec<f64> = s.next.values().copied().collect();
            weights(format!("{s_at}.next"), &w)?;
        }
    }
    Ok(())
}
