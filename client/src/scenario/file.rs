//! Scenario files: YAML, TOML or JSON (as fleet files), variables replaced first, fleets
//! inline or from files next to the scenario. Errors name the file, the line and the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pluribus_common::spec::{load_fleet_file, FileFormat, FleetSpec};
use pluribus_common::SpecError;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::steps::Step;
use super::vars::{substitute, Vars};

/// A scenario, read and validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    /// Its name (default: the file's stem).
    pub name: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The fleets it may deploy, by name.
    #[serde(default)]
    pub fleets: BTreeMap<String, FleetSpec>,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// What is undone at the end.
    #[serde(default)]
    pub cleanup: Cleanup,
    /// The variables' values as used.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Where it was read from (for errors and reports).
    #[serde(default)]
    pub origin: String,
    /// The line of each top-level step (YAML only; 0 when unknown).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub step_lines: Vec<usize>,
}

/// What the end of a run undoes (unless `--keep`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cleanup {
    /// Delete the fleets the run deployed (default true), at the end, on failure and on
    /// Ctrl-C; agents the run drained take work again.
    #[serde(default = "yes")]
    pub delete: bool,
}

impl Default for Cleanup {
    fn default() -> Self {
        Self { delete: true }
    }
}

fn yes() -> bool {
    true
}

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    variables: BTreeMap<String, Scalar>,
    #[serde(default)]
    fleets: BTreeMap<String, FleetEntry>,
    steps: Vec<Step>,
    #[serde(default)]
    cleanup: Cleanup,
}

/// Only the variables (read before the rest, whose `${...}` they fill in).
#[derive(Deserialize)]
struct VarsOnly {
    #[serde(default)]
    variables: BTreeMap<String, Scalar>,
}

/// A variable's default: a string, number or bool, kept as text.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    S(String),
    I(i64),
    F(f64),
    B(bool),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Self::S(s) => s.clone(),
            Self::I(i) => i.to_string(),
            Self::F(f) => f.to_string(),
            Self::B(b) => b.to_string(),
        }
    }
}

/// A fleet of `fleets:`: a spec, or `{file: PATH}` (relative to the scenario's file).
enum FleetEntry {
    Inline(Box<FleetSpec>),
    File(String),
}

impl<'de> Deserialize<'de> for FleetEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FleetEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a fleet spec, or {file: PATH}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<FleetEntry, A::Error> {
                let Some(first) = m.next_key::<String>()? else {
                    return FleetSpec::deserialize(de::value::MapDeserializer::<
                        std::iter::Empty<(String, String)>,
                        A::Error,
                    >::new(std::iter::empty()))
                    .map(|s| FleetEntry::Inline(Box::new(s)));
                };
                if first == "file" {
                    let path: String = m.next_value()?;
                    if let Some(k) = m.next_key::<String>()? {
                        return Err(de::Error::custom(format!(
                            "unknown field `{k}` next to `file`: a fleet from a file takes only `file` (edit the file, or write the fleet inline)"
                        )));
                    }
                    return Ok(FleetEntry::File(path));
                }
                FleetSpec::deserialize(de::value::MapAccessDeserializer::new(Replay {
                    first: Some(first),
                    inner: m,
                }))
                .map(|s| FleetEntry::Inline(Box::new(s)))
            }
        }
        d.deserialize_map(V)
    }
}

/// A map whose first key was read already: gives it again, then the rest.
struct Replay<A> {
    first: Option<String>,
    inner: A,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Replay<A> {
    type Error = A::Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        match self.first.take() {
            Some(k) => seed.deserialize(k.into_deserializer()).map(Some),
            None => self.inner.next_key_seed(seed),
        }
    }
    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.next_value_seed(seed)
    }
}

/// Parses `text` as `format`; errors carry `origin` and the line.
fn parse_as<T: for<'de> Deserialize<'de>>(
    origin: &str,
    text: &str,
    format: FileFormat,
) -> Result<T, SpecError> {
    match format {
        FileFormat::Yaml => serde_yaml_ng::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}", l.line()))
                .unwrap_or_default();
            SpecError::new(format!("{origin}{at}"), strip_location(&e.to_string()))
        }),
        FileFormat::Toml => toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            let at = line.map(|l| format!(":{l}")).unwrap_or_default();
            SpecError::new(format!("{origin}{at}"), e.message().to_string())
        }),
        FileFormat::Json => serde_json::from_str(text)
            .map_err(|e| SpecError::new(format!("{origin}:{}", e.line()), e.to_string())),
    }
}

/// serde_yaml's message ends with "at line L column C", which the field already says.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn from_file(path: &Path, vars: &Vars) -> Result<Self, SpecError> {
        let format = FileFormat::from_path(path)?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| SpecError::new("file", format!("cannot read {}: {e}", path.display())))?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("scenario");
        Self::parse(&path.display().to_string(), &text, format, vars, &dir, stem)
    }

    /// Parses and validates scenario text; fleet files are looked for in `dir`; `stem` names
    /// a scenario that has no `name`.
    pub fn parse(
        origin: &str,
        text: &str,
        format: FileFormat,
        vars: &Vars,
        dir: &Path,
        stem: &str,
    ) -> Result<Self, SpecError> {
        // The variables section first (if the raw text parses; the full parse below reports
        // any error in it).
        let defaults: BTreeMap<String, String> = parse_as::<VarsOnly>(origin, text, format)
            .map(|v| {
                v.variables
                    .iter()
                    .map(|(k, s)| (k.clone(), s.text()))
                    .collect()
            })
            .unwrap_or_default();
        let (text, mut used) = substitute(origin, text, vars, &defaults)?;
        for (k, v) in &defaults {
            used.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let raw: Raw = parse_as(origin, &text, format)?;
        let mut fleets = BTreeMap::new();
        for (key, entry) in raw.fleets {
            let spec = match entry {
                FleetEntry::Inline(spec) => {
                    let mut spec = *spec;
                    if spec.name.is_empty() {
                        spec.name = key.clone();
                    } else if spec.name != key {
                        return Err(SpecError::new(
                            format!("{origin}: fleets.{key}.name"),
                            format!("the fleet is listed as '{key}' but named '{}': drop its name or make them the same", spec.name),
                        ));
                    }
                    spec.validate().map_err(|e| {
                        SpecError::new(format!("{origin}: fleets.{key}.{}", e.field), e.message)
                    })?;
                    spec
                }
                FleetEntry::File(p) => {
                    let path: PathBuf = dir.join(&p);
                    load_fleet_file(&path, Some(&key)).map_err(|e| {
                        SpecError::new(
                            format!("{origin}: fleets.{key}.file ({})", e.field),
                            e.message,
                        )
                    })?
                }
            };
            fleets.insert(key, spec);
        }
        let scenario = Self {
            name: raw.name.unwrap_or_else(|| stem.to_string()),
            description: raw.description,
            fleets,
            steps: raw.steps,
            cleanup: raw.cleanup,
            variables: used,
            origin: origin.to_string(),
            step_lines: if format == FileFormat::Yaml {
                step_lines(&text)
            } else {
                Vec::new()
            },
        };
        scenario.validate()?;
        Ok(scenario)
    }

    /// The `file:line` of top-level step `i`, for errors.
    pub fn at(&self, i: usize) -> String {
        match self.step_lines.get(i) {
            Some(&l) if l > 0 => format!("{}:{l}", self.origin),
            _ => self.origin.clone(),
        }
    }
}

/// The line of each item of the top-level `steps:` list (block style).
fn step_lines(text: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    let mut in_steps = false;
    let mut indent: Option<usize> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let lead = line.len() - trimmed.len();
        if lead == 0 && !trimmed.starts_with('-') {
            in_steps = trimmed.starts_with("steps:");
            indent = None;
            continue;
        }
        if !in_steps || !trimmed.starts_with('-') {
            continue;
        }
        match indent {
            None => {
                indent = Some(lead);
                lines.push(n + 1);
            }
            Some(i) if i == lead => lines.push(n + 1),
            _ => {}
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn parse(text: &str) -> Result<Scenario, SpecError> {
        Scenario::parse(
            "s.yaml",
            text,
            FileFormat::Yaml,
            &Vars::default(),
            Path::new("."),
            "s",
        )
    }

    #[test]
    fn a_scenario_reads_with_its_variables() {
        let s = parse(
            "variables:\n  N: 20\nfleets:\n  meters:\n    count: ${N}\n    sink: {type: nats}\nsteps:\n  - deploy: meters\n  - wait: ${HOLD:-2s}\n  - expect:\n      checks: [\"active >= 100%\", {check: \"no shard_fenced\", abort_on_fail: true}]\n  - delete: meters\n",
        )
        .expect("valid");
        assert_eq!(s.fleets["meters"].count, Some(20));
        assert_eq!(s.fleets["meters"].name, "meters");
        assert_eq!(s.steps.len(), 4);
        assert_eq!(s.steps[1], Step::Wait(std::time::Duration::from_secs(2)));
        assert_eq!(s.step_lines, vec![8, 9, 10, 12]);
        assert_eq!(s.variables["N"], "20");
        assert!(s.cleanup.delete);
    }

    #[test]
    fn errors_name_the_line_and_the_field() {
        let e = parse("fleets:\n  m:\n    count: 5\n    bogus: 1\nsteps: []\n")
            .expect_err("unknown field");
        assert!(e.field.starts_with("s.yaml:4"), "{e}");
        assert!(e.message.contains("bogus"), "{e}");
        let e = parse("fleets: {}\nsteps:\n  - expect:\n      checks:\n        - p99 < fast\n")
            .expect_err("bad check");
        assert!(e.field.starts_with("s.yaml:5"), "{e}");
        assert!(e.message.contains("not a duration"), "{e}");
        let e =
            parse("fleets: {}\nsteps:\n  - wait_for: {condition: active >= 1, timeout: soon}\n")
                .expect_err("bad timeout");
        assert!(e.field.starts_with("s.yaml:3"), "{e}");
        assert!(e.message.contains("timeout"), "{e}");
        let e = parse("fleets: {}\nsteps:\n  - jump: 3\n").expect_err("unknown step");
        assert!(e.message.contains("jump"), "{e}");
        let e =
            parse("fleets:\n  m: {count: 5, shard_size: 0}\nsteps: []\n").expect_err("bad spec");
        assert_eq!(e.field, "s.yaml: fleets.m.shard_size", "{e}");
    }

    #[test]
    fn fleets_come_from_files_next_to_the_scenario() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("m.yaml"), "count: 7\n").expect("write");
        let text = "fleets:\n  m: {file: m.yaml}\nsteps:\n  - deploy: m\n";
        let s = Scenario::parse(
            "s.yaml",
            text,
            FileFormat::Yaml,
            &Vars::default(),
            dir.path(),
            "s",
        )
        .expect("valid");
        assert_eq!(
            (s.fleets["m"].name.as_str(), s.fleets["m"].count),
            ("m", Some(7))
        );
        let bad = "fleets:\n  m: {file: m.yaml, count: 3}\nsteps: []\n";
        let e = Scenario::parse(
            "s.yaml",
            bad,
            FileFormat::Yaml,
            &Vars::default(),
            dir.path(),
            "s",
        )
        .expect_err("extra key");
        assert!(e.message.contains("only `file`"), "{e}");
    }

    #[test]
    fn toml_and_json_read_the_same() {
        let toml =
            "[fleets.m]\ncount = 5\n\n[[steps]]\ndeploy = \"m\"\n\n[[steps]]\nwait = \"1s\"\n";
        let json = r#"{"fleets":{"m":{"count":5}},"steps":[{"deploy":"m"},{"wait":"1s"}]}"#;
        let a = Scenario::parse(
            "s.toml",
            toml,
            FileFormat::Toml,
            &Vars::default(),
            Path::new("."),
            "s",
        )
        .expect("toml");
        let b = Scenario::parse(
            "s.json",
            json,
            FileFormat::Json,
            &Vars::default(),
            Path::new("."),
            "s",
        )
        .expect("json");
        assert_eq!((a.fleets.clone(), a.steps.clone()), (b.fleets, b.steps));
    }
}
