//! Profile files: YAML, TOML or JSON. Errors name the file, the line where one can be found,
//! and the field: `meter.yaml:7: fields.power.normal.stddev: must be >= 0`.

use std::path::Path;

use super::Profile;
use crate::spec::FileFormat;
use crate::SpecError;

/// Reads and validates a profile file (`.yaml`, `.yml`, `.toml` or `.json`).
pub fn load_profile(path: &Path) -> Result<Profile, SpecError> {
    let format = FileFormat::from_path(path)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| SpecError::new("file", format!("cannot read {}: {e}", path.display())))?;
    parse_profile_text(&path.display().to_string(), &text, format)
}

/// Parses and validates a profile from text; `origin` (the file name) starts the field of
/// every error, followed by the line when it is known.
pub fn parse_profile_text(
    origin: &str,
    text: &str,
    format: FileFormat,
) -> Result<Profile, SpecError> {
    let at = |line: Option<usize>| match line {
        Some(l) => format!("{origin}:{l}"),
        None => origin.to_string(),
    };
    let typed: Result<Profile, SpecError> = match format {
        FileFormat::Yaml => serde_yaml_ng::from_str(text)
            .map_err(|e| SpecError::new(at(e.location().map(|l| l.line())), e.to_string())),
        FileFormat::Toml => toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            SpecError::new(at(line), e.message().to_string())
        }),
        FileFormat::Json => serde_json::from_str(text)
            .map_err(|e| SpecError::new(at(Some(e.line())), e.to_string())),
    };
    let located = |e: SpecError| {
        SpecError::new(
            format!("{}: {}", at(locate(text, &e.field)), e.field),
            e.message,
        )
    };
    let profile = match typed {
        Ok(p) => p,
        Err(parse_error) => {
            // Well-formed but wrong: the JSON form's checks name the full field path.
            let value: Option<serde_json::Value> = match format {
                FileFormat::Yaml => serde_yaml_ng::from_str(text).ok(),
                FileFormat::Toml => toml::from_str(text).ok(),
                FileFormat::Json => serde_json::from_str(text).ok(),
            };
            return Err(match value.map(|v| Profile::from_value(&v)) {
                Some(Err(e)) => located(e),
                _ => parse_error,
            });
        }
    };
    profile.validate().map_err(located)?;
    Ok(profile)
}

/// The line of a field path (`events[1].fields.power.normal.stddev`) in a YAML, TOML or JSON
/// text: each key is looked for after the previous one; `[i]` skips to the i-th match of
/// the next key. A best effort: `None` when a key is not found.
fn locate(text: &str, path: &str) -> Option<usize> {
    let mut pos = 0;
    let mut skip = 0;
    for seg in path.split('.') {
        let (key, index) = match seg.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        if !key.is_empty() {
            for _ in 0..=skip {
                pos = find_key(text, pos, key)? + key.len();
            }
            skip = 0;
        }
        skip += index.unwrap_or(0);
    }
    Some(text[..pos.min(text.len())].lines().count().max(1))
}

/// Where `key` is written as a key at or after `from`: not inside a longer word, and
/// followed (after a closing quote and spaces) by `:`, `=`, `.` or `]`.
fn find_key(text: &str, from: usize, key: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    let mut start = from;
    while let Some(off) = text.get(start..)?.find(key) {
        let at = start + off;
        let end = at + key.len();
        let before_ok = at == 0 || !word(bytes[at - 1]);
        let mut i = end;
        if i < bytes.len() && (bytes[i] == b'"' || bytes[i] == b'\'') {
            i += 1;
        }
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        let after_ok = i < bytes.len() && matches!(bytes[i], b':' | b'=' | b'.' | b']');
        if before_ok && after_ok {
            return Some(at);
        }
        start = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_nested_keys_and_list_items() {
        let yaml = "name: x\nfields:\n  power:\n    normal: {mean: 1, stddev: -1}\nevents:\n  - name: a\n    probability: 0.5\n  - name: b\n    probability: 2\n";
        assert_eq!(locate(yaml, "fields.power.normal.stddev"), Some(4));
        assert_eq!(locate(yaml, "events[1].probability"), Some(9));
        assert_eq!(locate(yaml, "events[0].probability"), Some(7));
        assert_eq!(locate(yaml, "nothing.here"), None);
    }

    #[test]
    fn yaml_errors_carry_the_line() {
        let bad_value = "name: x\nfields:\n  power:\n    normal: {mean: 1, stddev: -1}\n";
        let e = parse_profile_text("p.yaml", bad_value, FileFormat::Yaml).expect_err("stddev");
        assert_eq!(e.field, "p.yaml:4: fields.power.normal.stddev");
        assert_eq!(e.message, "must be >= 0");

        let bad_syntax = "name: x\ninterval: 1s\nfields:\n  a: [1, 2\n";
        let e = parse_profile_text("p.yaml", bad_syntax, FileFormat::Yaml).expect_err("syntax");
        assert!(e.field.starts_with("p.yaml:"), "{e}");

        let unknown = "name: x\nfields: {}\nbogus: 1\n";
        let e = parse_profile_text("p.yaml", unknown, FileFormat::Yaml).expect_err("unknown");
        assert_eq!(e.field, "p.yaml:3: bogus", "{e}");
        assert!(e.message.contains("unknown field"), "{e}");

        let bad_gen = "name: x\nfields:\n  a: 1\n  b:\n    normal: {mean: 1}\n";
        let e = parse_profile_text("p.yaml", bad_gen, FileFormat::Yaml).expect_err("missing");
        assert_eq!(e.field, "p.yaml:5: fields.b.normal", "{e}");
        assert!(e.message.contains("stddev"), "{e}");

        let in_event =
            "name: x\nevents:\n  - name: e\n    probability: 1\n    fields:\n      n: {bool: {}}\n";
        let e = parse_profile_text("p.yaml", in_event, FileFormat::Yaml).expect_err("missing");
        assert_eq!(e.field, "p.yaml:6: events[0].fields.n.bool", "{e}");

        let bad_type = "name: x\ninterval: fast\n";
        let e = parse_profile_text("p.yaml", bad_type, FileFormat::Yaml).expect_err("interval");
        assert_eq!(e.field, "p.yaml:2: interval", "{e}");
    }

    #[test]
    fn the_three_formats_agree() {
        let yaml =
            "name: m\ninterval: 2s\nfields:\n  v: {normal: {mean: 230, stddev: 2}}\n  id: uuid\n";
        let toml = "name = \"m\"\ninterval = \"2s\"\n[fields]\nid = \"uuid\"\n[fields.v.normal]\nmean = 230\nstddev = 2\n";
        let json = r#"{"name":"m","interval":"2s","fields":{"v":{"normal":{"mean":230,"stddev":2}},"id":"uuid"}}"#;
        let a = parse_profile_text("a.yaml", yaml, FileFormat::Yaml).expect("yaml");
        let b = parse_profile_text("b.toml", toml, FileFormat::Toml).expect("toml");
        let c = parse_profile_text("c.json", json, FileFormat::Json).expect("json");
        assert_eq!(a, b);
        assert_eq!(b, c);
        let e = parse_profile_text(
            "b.toml",
            "name = \"m\"\n[fields.v.normal]\nmean = 1\nstddev = -2\n",
            FileFormat::Toml,
        )
        .expect_err("toml stddev");
        assert_eq!(e.field, "b.toml:4: fields.v.normal.stddev");
    }
}
