//! Fleet files: YAML, TOML or JSON, one schema ([`FleetSpec`]). Errors name the file, the
//! line where the format reports one, and the field.

use std::path::Path;

use super::FleetSpec;
use crate::SpecError;

/// The formats a fleet file may be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// `.yaml` / `.yml`
    Yaml,
    /// `.toml`
    Toml,
    /// `.json`
    Json,
}

impl FileFormat {
    /// The format of a file, from its extension.
    pub fn from_path(path: &Path) -> Result<Self, SpecError> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("yaml" | "yml") => Ok(Self::Yaml),
            Some("toml") => Ok(Self::Toml),
            Some("json") => Ok(Self::Json),
            _ => Err(SpecError::new(
                "file",
                format!(
                    "{}: unknown extension: name the file .yaml, .yml, .toml or .json",
                    path.display()
                ),
            )),
        }
    }
}

/// Parses a fleet spec from text. `origin` (the file name) prefixes the field in errors.
/// `name` fills in the fleet name when the file has none (the CLI's NAME argument).
pub fn parse_fleet_text(
    origin: &str,
    text: &str,
    format: FileFormat,
    name: Option<&str>,
) -> Result<FleetSpec, SpecError> {
    let mut spec: FleetSpec = match format {
        FileFormat::Yaml => serde_yaml_ng::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}", l.line()))
                .unwrap_or_default();
            SpecError::new(format!("{origin}{at}"), e.to_string())
        })?,
        FileFormat::Toml => toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            let at = line.map(|l| format!(":{l}")).unwrap_or_default();
            SpecError::new(format!("{origin}{at}"), e.message().to_string())
        })?,
        FileFormat::Json => serde_json::from_str(text)
            .map_err(|e| SpecError::new(format!("{origin}:{}", e.line()), e.to_string()))?,
    };
    if let Some(n) = name {
        if !spec.name.is_empty() && spec.name != n {
            return Err(SpecError::new(
                format!("{origin}: name"),
                format!("the file names the fleet '{}' but the command line says '{n}': drop one of them", spec.name),
            ));
        }
        spec.name = n.to_string();
    }
    spec.validate()
        .map_err(|e| SpecError::new(format!("{origin}: {}", e.field), e.message))?;
    Ok(spec)
}

/// Reads and validates a fleet file.
pub fn load_fleet_file(path: &Path, name: Option<&str>) -> Result<FleetSpec, SpecError> {
    let format = FileFormat::from_path(path)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| SpecError::new("file", format!("cannot read {}: {e}", path.display())))?;
    parse_fleet_text(&path.display().to_string(), &text, format, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_formats_agree() {
        let yaml = "name: f\ncount: 10\ndevice:\n  interval: 2s\nsink:\n  type: nats\n  subject: t.{device_id}\n";
        let toml = "name = \"f\"\ncount = 10\n[device]\ninterval = \"2s\"\n[sink]\ntype = \"nats\"\nsubject = \"t.{device_id}\"\n";
        let json = r#"{"name":"f","count":10,"device":{"interval":"2s"},"sink":{"type":"nats","subject":"t.{device_id}"}}"#;
        let a = parse_fleet_text("a.yaml", yaml, FileFormat::Yaml, None).expect("yaml");
        let b = parse_fleet_text("b.toml", toml, FileFormat::Toml, None).expect("toml");
        let c = parse_fleet_text("c.json", json, FileFormat::Json, None).expect("json");
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert_eq!(a.device.interval, std::time::Duration::from_secs(2));
    }

    #[test]
    fn yaml_errors_carry_the_line() {
        let yaml = "name: f\ncount: 10\ndevice:\n  interval: [\n";
        let e = parse_fleet_text("f.yaml", yaml, FileFormat::Yaml, None).expect_err("bad");
        assert!(e.field.starts_with("f.yaml:"), "{e}");
        let e = parse_fleet_text(
            "f.yaml",
            "name: f\ncount: 1\nbogus: 1\n",
            FileFormat::Yaml,
            None,
        )
        .expect_err("unknown field");
        assert!(e.message.contains("bogus"), "{e}");
        let e = parse_fleet_text(
            "f.yaml",
            "name: f\ncount: 1\nshard_size: 0\n",
            FileFormat::Yaml,
            None,
        )
        .expect_err("invalid");
        assert_eq!(e.field, "f.yaml: shard_size");
    }

    #[test]
    fn mqtt_options_may_be_written_as_the_flags_are() {
        let yaml = "name: f\ncount: 2\nsink:\n  type: mqtt\n  broker: mqtt://a:1883, mqtt://b:1883\n  connect_rate: 500/s\n  source_ip: 127.0.0.2,127.0.0.3\n  username: u\n  password: env:PW\n";
        let spec = parse_fleet_text("f.yaml", yaml, FileFormat::Yaml, None).expect("valid");
        let m = spec.sink.mqtt_config().expect("mqtt");
        assert_eq!(m.brokers, ["mqtt://a:1883", "mqtt://b:1883"]);
        assert_eq!(m.connect_rate, Some(500.0));
        assert_eq!(m.source_ips.len(), 2);
        let bad = yaml.replace("500/s", "fast");
        let e = parse_fleet_text("f.yaml", &bad, FileFormat::Yaml, None).expect_err("bad rate");
        assert!(
            e.to_string().contains("connect_rate") || e.to_string().contains("2000/s"),
            "{e}"
        );
    }
}
