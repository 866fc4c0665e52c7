//! A device's reconnect backoff (`sink.reconnect`): how long it waits before each
//! connect attempt after losing its connection or failing to connect. It decides how bad
//! a reconnect storm is when many devices come back at once.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::SpecError;

/// How the wait is spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JitterMode {
    /// Between half and all of the exponential wait (the default).
    #[default]
    Equal,
    /// Anywhere from 0 to the exponential wait.
    Full,
    /// Exactly the exponential wait: devices cut off together retry together.
    None,
}

/// `reconnect: {min: 500ms, max: 30s, jitter: equal}`: the wait before attempt n is
/// `min × 2^(n-1)`, at most `max`, spread by `jitter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconnectSpec {
    /// First wait.
    #[serde(default = "default_min", with = "humantime_serde")]
    pub min: Duration,
    /// Longest wait.
    #[serde(default = "default_max", with = "humantime_serde")]
    pub max: Duration,
    /// How the wait is spread.
    #[serde(default)]
    pub jitter: JitterMode,
}

fn default_min() -> Duration {
    Duration::from_millis(500)
}
fn default_max() -> Duration {
    Duration::from_secs(30)
}

impl Default for ReconnectSpec {
    fn default() -> Self {
        Self {
            min: default_min(),
            max: default_max(),
            jitter: JitterMode::Equal,
        }
    }
}

impl ReconnectSpec {
    /// True for the defaults (left out when serialized).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Checks the bounds; errors name `sink.reconnect.*`.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.min < Duration::from_millis(1) {
            return Err(SpecError::new(
                "sink.reconnect.min",
                "must be at least 1ms (a device that retries at once hammers the broker)",
            ));
        }
        if self.max < self.min {
            return Err(SpecError::new(
                "sink.reconnect.max",
                format!(
                    "{:?} is below min ({:?}): use a max at least as long",
                    self.max, self.min
                ),
            ));
        }
        if self.max > Duration::from_secs(3600) {
            return Err(SpecError::new("sink.reconnect.max", "must be at most 1h"));
        }
        Ok(())
    }
}
