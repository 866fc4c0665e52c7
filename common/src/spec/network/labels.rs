//! Labels: named sets of a fleet's devices that cohorts can refer to (`cohort: zone=eu`).
//! Devices carry no labels of their own, so a fleet file defines each label in cohort
//! terms under `network.labels`: a share (`30%`), an index range (`0..500`) or a list of
//! device ids.
//!
//! ```yaml
//! network:
//!   labels:
//!     zone=eu: 0..500
//!     link=cellular: 30%
//!     site=lab: [lab-01, lab-02]
//!   cohorts:
//!     - {cohort: link=cellular, preset: 3g}
//! ```

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Deserializer, Serialize};

use super::Cohort;
use crate::SpecError;

/// Most labels a fleet defines.
pub const MAX_LABELS: usize = 64;
/// Most device ids all labels list together.
pub const MAX_LABEL_IDS: usize = 100_000;

/// How a label picks its devices.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum LabelDef {
    /// A share (`30%`) or an index range (`0..500`).
    Cohort(Cohort),
    /// These device ids.
    Devices(Vec<String>),
}

impl<'de> Deserialize<'de> for LabelDef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Ids(Vec<String>),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "a label is a share (30%), an index range (0..500) or a list of device ids",
            )
        })? {
            Raw::Text(t) => t
                .parse()
                .map(Self::Cohort)
                .map_err(serde::de::Error::custom),
            Raw::Ids(ids) => Ok(Self::Devices(ids)),
        }
    }
}

/// Checks the labels; errors name `prefix.labels.<label>`.
pub fn validate(prefix: &str, labels: &BTreeMap<String, LabelDef>) -> Result<(), SpecError> {
    if labels.len() > MAX_LABELS {
        return Err(SpecError::new(
            format!("{prefix}.labels"),
            format!(
                "{} labels is more than the limit of {MAX_LABELS}",
                labels.len()
            ),
        ));
    }
    let mut ids = 0;
    for (name, def) in labels {
        let field = format!("{prefix}.labels.{name}");
        match name.parse::<Cohort>() {
            Ok(Cohort::Label(l)) if &l == name => {}
            _ => {
                return Err(SpecError::new(
                    field,
                    "is not a label name: write key=value (letters, digits, '-', '_', '.'), e.g. zone=eu",
                ))
            }
        }
        match def {
            LabelDef::Cohort(Cohort::Label(_)) => return Err(SpecError::new(
                field,
                "a label is defined by a share, an index range or device ids, not another label",
            )),
            LabelDef::Cohort(_) => {}
            LabelDef::Devices(list) => {
                ids += list.len();
                if list.iter().any(|i| i.is_empty() || i.len() > 256) {
                    return Err(SpecError::new(
                        field,
                        "device ids must be 1 to 256 characters",
                    ));
                }
            }
        }
    }
    if ids > MAX_LABEL_IDS {
        return Err(SpecError::new(
            format!("{prefix}.labels"),
            format!("{ids} device ids is more than the limit of {MAX_LABEL_IDS}: define large labels as a share or an index range"),
        ));
    }
    Ok(())
}

/// The labels resolved for membership tests.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabelSets(BTreeMap<String, Set>);

#[derive(Debug, Clone, PartialEq)]
enum Set {
    Cohort(Cohort),
    Ids(HashSet<String>),
}

impl LabelSets {
    /// From a fleet file's `network.labels`.
    pub fn new(labels: &BTreeMap<String, LabelDef>) -> Self {
        Self(
            labels
                .iter()
                .map(|(k, d)| {
                    let s = match d {
                        LabelDef::Cohort(c) => Set::Cohort(c.clone()),
                        LabelDef::Devices(ids) => Set::Ids(ids.iter().cloned().collect()),
                    };
                    (k.clone(), s)
                })
                .collect(),
        )
    }

    /// True if `label` is defined.
    pub fn defines(&self, label: &str) -> bool {
        self.0.contains_key(label)
    }

    /// True if device `index` (`device_id`) is in `cohort` (labels looked up here).
    pub fn contains(&self, cohort: &Cohort, seed: u64, index: u64, device_id: &str) -> bool {
        match cohort {
            Cohort::Label(l) => match self.0.get(l) {
                Some(Set::Cohort(c)) => c.contains(seed, index, device_id),
                Some(Set::Ids(ids)) => ids.contains(device_id),
                None => false,
            },
            c => c.contains(seed, index, device_id),
        }
    }
}
