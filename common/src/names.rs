//! Names that end up inside NATS subjects and MQTT topics: fleet names, device ids,
//! agent names, namespaces.

use crate::SpecError;

/// The allowed form, shown in every name error.
pub const NAME_FORM: &str =
    "use 1-128 characters from letters, digits, '-' and '_' (no '.', '*', '>', '+', '#', '/', ':' or spaces)";

/// Checks that `value` is safe as a single NATS subject token and MQTT topic level.
pub fn validate_name(field: &str, value: &str) -> Result<(), SpecError> {
    if value.is_empty() {
        return Err(SpecError::new(
            field,
            format!("must not be empty: {NAME_FORM}"),
        ));
    }
    if value.len() > 128 {
        return Err(SpecError::new(
            field,
            format!("'{value}' is {} characters long: {NAME_FORM}", value.len()),
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
    {
        return Err(SpecError::new(
            field,
            format!("'{value}' contains {bad:?}: {NAME_FORM}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_safe_names() {
        for ok in ["fleet-1", "dev_00001", "X"] {
            assert!(validate_name("name", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_subject_and_topic_metacharacters() {
        for bad in [
            "a.b", "a*", "a>", "a+b", "a#", "a/b", "a b", "", "tab\t", "a:b",
        ] {
            let err = validate_name("fleet", bad).expect_err(bad);
            assert_eq!(err.field, "fleet");
            assert!(err.message.contains("letters, digits"), "{err}");
        }
    }
}
