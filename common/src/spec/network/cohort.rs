//! Cohorts: which devices of a fleet a rule applies to.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A set of a fleet's devices: `10%` (chosen by a hash of the fleet's seed and the device
/// id, so the same devices on every agent and every run with that seed; a 10% cohort is
/// inside the 20% one), `100..200` (device indices, end excluded), or `zone=eu` (a label
/// defined under `network.labels` in the fleet file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Cohort {
    /// This share of the devices, in per cent (0 to 100).
    Percent(f64),
    /// Devices whose index is in `start..end`.
    Range(u64, u64),
    /// Devices with this label (`key=value`), as `network.labels` defines it.
    Label(String),
}

impl Cohort {
    /// True if device `index` (id `device_id`) of a fleet with `seed` is in the cohort. A
    /// label is looked up in the plan's labels ([`super::plan::NetPlan`]); here it matches
    /// nothing.
    pub fn contains(&self, seed: u64, index: u64, device_id: &str) -> bool {
        match self {
            Self::Percent(p) => {
                let h = member_hash(seed, device_id) % 1_000_000;
                (h as f64) < p * 10_000.0
            }
            Self::Range(a, b) => (*a..*b).contains(&index),
            Self::Label(_) => false,
        }
    }

    /// The label, if the cohort is one.
    pub fn label(&self) -> Option<&str> {
        match self {
            Self::Label(l) => Some(l),
            _ => None,
        }
    }
}

/// A stable hash (FNV-1a, then SplitMix64's finaliser) of the seed and the device id.
fn member_hash(seed: u64, device_id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed
        .to_le_bytes()
        .iter()
        .chain(b"cohort")
        .chain(device_id.as_bytes())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl std::str::FromStr for Cohort {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            return match p.trim().parse::<f64>() {
                Ok(v) if (0.0..=100.0).contains(&v) => Ok(Self::Percent(v)),
                Ok(v) => Err(format!("{v}% is not a share of the fleet: use 0% to 100%")),
                Err(_) => Err(format!("'{s}' is not a percentage: write e.g. 10%")),
            };
        }
        if let Some((a, b)) = t.split_once("..") {
            let (a, b) = (a.trim().parse::<u64>(), b.trim().parse::<u64>());
            return match (a, b) {
                (Ok(a), Ok(b)) if a < b => Ok(Self::Range(a, b)),
                (Ok(_), Ok(_)) => Err(format!(
                    "'{s}' is an empty range: the start must be below the end (end excluded)"
                )),
                _ => Err(format!("'{s}' is not an index range: write e.g. 0..100")),
            };
        }
        if let Some((k, v)) = t.strip_prefix("label:").unwrap_or(t).split_once('=') {
            let (k, v) = (k.trim(), v.trim());
            let ok = |x: &str| {
                !x.is_empty()
                    && x.len() <= 64
                    && x.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            };
            if ok(k) && ok(v) {
                return Ok(Self::Label(format!("{k}={v}")));
            }
            return Err(format!(
                "'{s}' is not a label: write key=value, each 1 to 64 letters, digits, '-', '_' or '.' (e.g. zone=eu)"
            ));
        }
        Err(format!(
            "'{s}' is not a cohort: write a share (10%), an index range (0..100) or a label (zone=eu)"
        ))
    }
}

impl TryFrom<String> for Cohort {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Cohort> for String {
    fn from(c: Cohort) -> String {
        c.to_string()
    }
}

impl fmt::Display for Cohort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Percent(p) => write!(f, "{p}%"),
            Self::Range(a, b) => write!(f, "{a}..{b}"),
            Self::Label(l) => f.write_str(l),
        }
    }
}
