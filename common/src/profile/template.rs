//! The `template` generator's strings: `{device_id}`, `{fleet}`, `{index}` (or `{index:05}`)
//! and `{seq}`.

use crate::SpecError;

/// The placeholders a `template` generator knows.
pub const TEMPLATE_PLACEHOLDERS: &str = "{device_id}, {fleet}, {index}, {index:0N} or {seq}";

/// One piece of a parsed `template` string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    /// Literal text.
    Lit(String),
    /// The device id.
    DeviceId,
    /// The fleet name.
    Fleet,
    /// The device index, zero-padded to `width`.
    Index {
        /// Minimum digits (0: as many as needed).
        width: usize,
    },
    /// The message's seq.
    Seq,
}

/// Parses a `template` string; `field` names it in errors.
pub fn parse_template(field: &str, text: &str) -> Result<Vec<TemplatePart>, SpecError> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(TemplatePart::Lit(rest[..open].to_string()));
        }
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| {
            SpecError::new(
                field,
                format!("'{text}' has a '{{' without '}}': use {TEMPLATE_PLACEHOLDERS}"),
            )
        })?;
        let name = &after[..close];
        parts.push(match name {
            "device_id" => TemplatePart::DeviceId,
            "fleet" => TemplatePart::Fleet,
            "index" => TemplatePart::Index { width: 0 },
            "seq" => TemplatePart::Seq,
            _ => match name.strip_prefix("index:0").map(str::parse::<usize>) {
                Some(Ok(width)) if width <= 20 => TemplatePart::Index { width },
                _ => {
                    return Err(SpecError::new(
                        field,
                        format!(
                            "'{{{name}}}' is not a known placeholder: use {TEMPLATE_PLACEHOLDERS}"
                        ),
                    ))
                }
            },
        });
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Lit(rest.to_string()));
    }
    Ok(parts)
}
