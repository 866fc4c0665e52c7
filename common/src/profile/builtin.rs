//! The profiles that ship with Pluribus, embedded from `common/profiles/*.yaml`.

use super::file::parse_profile_text;
use super::Profile;
use crate::spec::FileFormat;

const BUILTIN: &[(&str, &str)] = &[
    (
        "temperature-humidity",
        include_str!("../../profiles/temperature-humidity.yaml"),
    ),
    (
        "smart-meter",
        include_str!("../../profiles/smart-meter.yaml"),
    ),
    (
        "gps-tracker",
        include_str!("../../profiles/gps-tracker.yaml"),
    ),
    (
        "door-motion",
        include_str!("../../profiles/door-motion.yaml"),
    ),
    (
        "industrial-machine",
        include_str!("../../profiles/industrial-machine.yaml"),
    ),
];

/// The built-in profiles: (name, YAML text).
pub fn builtin() -> &'static [(&'static str, &'static str)] {
    BUILTIN
}

/// A built-in profile, parsed and validated (a unit test checks that every one is valid).
pub fn builtin_profile(name: &str) -> Option<Profile> {
    let (n, text) = BUILTIN.iter().find(|(n, _)| *n == name)?;
    parse_profile_text(&format!("{n}.yaml"), text, FileFormat::Yaml).ok()
}
