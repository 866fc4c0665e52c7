//! String templates used for device ids, subjects and topics: `{fleet}`, `{device_id}`,
//! `{index}` and `{index:05}` (zero-padded to 5 digits).

use crate::SpecError;

/// Values a template may refer to.
#[derive(Debug, Clone, Copy)]
pub struct TemplateVars<'a> {
    /// The fleet name.
    pub fleet: &'a str,
    /// The device id (not available while rendering the id itself).
    pub device_id: Option<&'a str>,
    /// The device's index in its fleet.
    pub index: u64,
}

/// A parsed template, rendered many times (once per device) without re-parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Fleet,
    DeviceId,
    Index { width: usize },
}

const KNOWN: &str = "{fleet}, {device_id}, {index} or {index:0N}";

impl Template {
    /// Parses `text`; `field` names it in errors. `allow_device_id` is false for the id template.
    pub fn parse(field: &str, text: &str, allow_device_id: bool) -> Result<Self, SpecError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Lit(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or_else(|| {
                SpecError::new(
                    field,
                    format!("'{text}' has a '{{' without '}}': use {KNOWN}"),
                )
            })?;
            let name = &after[..close];
            let part = match name {
                "fleet" => Part::Fleet,
                "device_id" if allow_device_id => Part::DeviceId,
                "index" => Part::Index { width: 0 },
                _ => match name.strip_prefix("index:") {
                    Some(w) if w.starts_with('0') && w.len() > 1 => Part::Index {
                        width: w.parse().map_err(|_| {
                            SpecError::new(
                                field,
                                format!("'{{{name}}}' has a bad width: write e.g. {{index:05}}"),
                            )
                        })?,
                    },
                    _ => {
                        return Err(SpecError::new(
                            field,
                            format!(
                                "'{{{name}}}' is not a known placeholder: use {KNOWN}{}",
                                if allow_device_id {
                                    ""
                                } else {
                                    " ({device_id} is not allowed here)"
                                }
                            ),
                        ))
                    }
                },
            };
            parts.push(part);
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Ok(Self { parts })
    }

    /// True when the template refers to `{index}` (needed for unique device ids).
    pub fn uses_index(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Index { .. }))
    }

    /// Renders the template into `out` (cleared first).
    pub fn render_into(&self, vars: &TemplateVars<'_>, out: &mut String) {
        use std::fmt::Write;
        out.clear();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Fleet => out.push_str(vars.fleet),
                Part::DeviceId => out.push_str(vars.device_id.unwrap_or("")),
                Part::Index { width } => {
                    let _ = write!(out, "{:0width$}", vars.index, width = *width);
                }
            }
        }
    }

    /// Renders the template as a pattern for [`crate::subjects::reserved_subject`]: `{fleet}`
    /// and `{device_id}` filled in (the id may itself be a pattern), `{index}` as
    /// [`crate::subjects::DIGITS`].
    pub fn pattern(&self, fleet: &str, device_id: &str) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Fleet => out.push_str(fleet),
                Part::DeviceId => out.push_str(device_id),
                Part::Index { .. } => out.push(crate::subjects::DIGITS),
            }
        }
        out
    }

    /// Renders the template into a new string.
    pub fn render(&self, vars: &TemplateVars<'_>) -> String {
        let mut s = String::new();
        self.render_into(vars, &mut s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_placeholders() {
        let t = Template::parse("t", "{fleet}-{index:05}", false).expect("parse");
        let v = TemplateVars {
            fleet: "f",
            device_id: None,
            index: 42,
        };
        assert_eq!(t.render(&v), "f-00042");
        assert!(t.uses_index());
        let t = Template::parse("t", "a.{fleet}.{device_id}", true).expect("parse");
        let v = TemplateVars {
            fleet: "f",
            device_id: Some("d"),
            index: 0,
        };
        assert_eq!(t.render(&v), "a.f.d");
    }

    #[test]
    fn rejects_unknown_placeholders() {
        let e = Template::parse("sink.subject", "x.{nope}", true).expect_err("bad");
        assert_eq!(e.field, "sink.subject");
        assert!(Template::parse("id_template", "{device_id}", false).is_err());
        assert!(Template::parse("t", "{fleet", false).is_err());
    }
}
