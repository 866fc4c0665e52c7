//! Errors in user input: specs, names, files.

/// A spec or name that cannot be used. The message names the field and says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// Dotted path of the offending field, e.g. `sink.subject` or `devices[3].device_id`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl SpecError {
    /// An error on `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error, nested under `prefix` (e.g. `devices[2]`).
    pub fn within(self, prefix: &str) -> Self {
        Self {
            field: format!("{prefix}.{}", self.field),
            message: self.message,
        }
    }
}
