//! The shape of a message's `data`: objects and arrays whose leaves are generators.
//!
//! How a value in `fields` is read:
//! - a map with exactly one key that names a generator is that generator:
//!   `{normal: {mean: 230, stddev: 2}}`;
//! - `{object: {...}}` is a nested object taken literally (for an object whose only key is a
//!   generator name);
//! - any other map is a nested object, a list is an array;
//! - the strings `sequence`, `uuid` and `timestamp` are those generators;
//! - any other string, number, boolean or null is a constant.
//!
//! JSON objects are unordered: keys are sent in alphabetical order.

use serde::{Deserialize, Serialize};

use super::generator::{Generator, GENERATOR_NAMES, UNIT_GENERATORS};
use crate::SpecError;

/// The key that forces a literal nested object.
const OBJECT: &str = "object";

/// A node of a message's `data`.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// A JSON object, keys in the order they are sent.
    Object(Vec<(String, Field)>),
    /// A JSON array.
    Array(Vec<Field>),
    /// A generated value.
    Gen(Generator),
}

impl Default for Field {
    fn default() -> Self {
        Self::Object(Vec::new())
    }
}

impl Field {
    /// Reads a field tree from JSON; `path` (e.g. `fields`) prefixes the field in errors.
    pub fn parse(v: &serde_json::Value, path: &str) -> Result<Self, SpecError> {
        use serde_json::Value;
        Ok(match v {
            Value::String(s) if UNIT_GENERATORS.contains(&s.as_str()) => {
                Self::Gen(generator(v, path, s)?)
            }
            Value::Array(items) => Self::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, x)| Self::parse(x, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(m) if m.len() == 1 => match m.iter().next() {
                Some((k, inner)) if k == OBJECT => match inner {
                    Value::Object(_) => object(inner, &format!("{path}.{OBJECT}"))?,
                    _ => {
                        return Err(SpecError::new(
                            format!("{path}.{OBJECT}"),
                            "must be a map of field names to values",
                        ))
                    }
                },
                Some((k, _)) if GENERATOR_NAMES.contains(&k.as_str()) => {
                    Self::Gen(generator(v, &format!("{path}.{k}"), k)?)
                }
                _ => object(v, path)?,
            },
            Value::Object(_) => object(v, path)?,
            other => Self::Gen(Generator::Constant(other.clone())),
        })
    }

    /// Reads the root of `fields`, which must be an object (or absent: null).
    pub fn parse_root(v: &serde_json::Value, path: &str) -> Result<Self, SpecError> {
        match v {
            serde_json::Value::Null => Ok(Self::default()),
            serde_json::Value::Object(_) => match Self::parse(v, path)? {
                f @ Self::Object(_) => Ok(f),
                _ => Err(SpecError::new(
                    path,
                    "must be a map of field names (data is a JSON object); wrap a single generator in a name, e.g. value: {uniform: {min: 0, max: 1}}",
                )),
            },
            _ => Err(SpecError::new(path, "must be a map of field names to values")),
        }
    }

    /// True for an object without keys.
    pub fn is_empty_object(&self) -> bool {
        matches!(self, Self::Object(v) if v.is_empty())
    }

    /// Calls `f` with every generator and the path of the field that holds it.
    pub fn visit(
        &self,
        path: &str,
        f: &mut dyn FnMut(&str, &Generator) -> Result<(), SpecError>,
    ) -> Result<(), SpecError> {
        match self {
            Self::Object(kv) => kv
                .iter()
                .try_for_each(|(k, v)| v.visit(&format!("{path}.{k}"), f)),
            Self::Array(items) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, v)| v.visit(&format!("{path}[{i}]"), f)),
            Self::Gen(g) => f(path, g),
        }
    }

    /// The node at a dotted path of object keys (`location.lat`), if any.
    pub fn lookup(&self, dotted: &str) -> Option<&Field> {
        dotted.split('.').try_fold(self, |node, key| match node {
            Self::Object(kv) => kv.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        })
    }
}

fn generator(v: &serde_json::Value, path: &str, name: &str) -> Result<Generator, SpecError> {
    serde_json::from_value(v.clone())
        .map_err(|e| SpecError::new(path, format!("{e} (in the {name} generator)")))
}

fn object(v: &serde_json::Value, path: &str) -> Result<Field, SpecError> {
    let mut kv = Vec::new();
    if let serde_json::Value::Object(m) = v {
        for (k, x) in m {
            if k.is_empty() {
                return Err(SpecError::new(path, "a field name must not be empty"));
            }
            if k.contains('.') {
                return Err(SpecError::new(
                    format!("{path}.{k}"),
                    "a field name must not contain '.' (commands use dotted paths): nest an object instead",
                ));
            }
            kv.push((k.clone(), Field::parse(x, &format!("{path}.{k}"))?));
        }
    }
    Ok(Field::Object(kv))
}

impl Serialize for Field {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Self::Object(kv) => {
                let needs_wrap = kv.len() == 1
                    && kv
                        .iter()
                        .all(|(k, _)| GENERATOR_NAMES.contains(&k.as_str()) || k == OBJECT);
                let mut m = s.serialize_map(Some(1))?;
                if needs_wrap {
                    m.serialize_entry(OBJECT, &Entries(kv))?;
                } else {
                    for (k, v) in kv {
                        m.serialize_entry(k, v)?;
                    }
                }
                m.end()
            }
            Self::Array(items) => items.serialize(s),
            Self::Gen(g) => g.serialize(s),
        }
    }
}

struct Entries<'a>(&'a [(String, Field)]);

impl Serialize for Entries<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        // The path is relative here: the caller's position (the YAML line) locates it.
        Field::parse_root(&v, "fields").map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_generators_objects_arrays_and_constants() {
        let v = json!({
            "power": {"normal": {"mean": 230, "stddev": 2}},
            "id": "uuid",
            "unit": "kWh",
            "pos": {"lat": 1.5, "lon": {"constant": 2}},
            "list": [1, "sequence"],
            "literal": {"object": {"counter": 5}},
        });
        let f = Field::parse_root(&v, "fields").expect("parses");
        assert!(matches!(
            f.lookup("power"),
            Some(Field::Gen(Generator::Normal(_)))
        ));
        assert!(matches!(f.lookup("id"), Some(Field::Gen(Generator::Uuid))));
        assert!(matches!(
            f.lookup("unit"),
            Some(Field::Gen(Generator::Constant(_)))
        ));
        assert!(matches!(
            f.lookup("pos.lon"),
            Some(Field::Gen(Generator::Constant(_)))
        ));
        assert!(matches!(f.lookup("list"), Some(Field::Array(_))));
        assert!(matches!(
            f.lookup("literal.counter"),
            Some(Field::Gen(Generator::Constant(_)))
        ));
        // Round trip through JSON keeps the meaning.
        let back = serde_json::to_value(&f).expect("ser");
        assert_eq!(Field::parse_root(&back, "fields").expect("again"), f);
    }

    #[test]
    fn errors_name_the_path() {
        let v = json!({"a": {"b": {"normal": {"mean": 1}}}});
        let e = Field::parse_root(&v, "fields").expect_err("missing stddev");
        assert_eq!(e.field, "fields.a.b.normal");
        assert!(e.message.contains("stddev"), "{e}");
        let e = Field::parse_root(&json!([1]), "fields").expect_err("root");
        assert_eq!(e.field, "fields");
    }
}
