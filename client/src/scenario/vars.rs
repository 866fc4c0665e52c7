//! Variables of a scenario file: `${VAR}` and `${VAR:-default}`, replaced in the text before
//! it is parsed. A value comes from `--set VAR=...` first, then the environment, then the
//! file's `variables:` section, then the default written at the place of use.

use std::collections::BTreeMap;

use pluribus_common::SpecError;

/// Where variable values come from, strongest first.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    /// `--set VAR=VALUE` (or values given in code).
    pub set: BTreeMap<String, String>,
    /// Read the environment (the command line does; code may turn it off).
    pub env: bool,
}

impl Vars {
    /// Values from `--set`, and the environment.
    pub fn with_env(set: BTreeMap<String, String>) -> Self {
        Self { set, env: true }
    }

    /// Parses one `--set VAR=VALUE`.
    pub fn parse_set(s: &str) -> Result<(String, String), String> {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| format!("--set '{s}': write VAR=VALUE, e.g. --set DEVICES=50"))?;
        let k = k.trim();
        if !valid_name(k) {
            return Err(format!(
                "--set '{s}': '{k}' is not a variable name (letters, digits and _, not starting with a digit)"
            ));
        }
        Ok((k.to_string(), v.to_string()))
    }

    /// The value of `name`: `--set`, the environment, then the file's section.
    fn lookup(&self, name: &str, file: &BTreeMap<String, String>) -> Option<String> {
        if let Some(v) = self.set.get(name) {
            return Some(v.clone());
        }
        if self.env {
            if let Ok(v) = std::env::var(name) {
                return Some(v);
            }
        }
        file.get(name).cloned()
    }
}

fn valid_name(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Replaces every `${VAR}` / `${VAR:-default}` in `text`; `$$` is a literal `$`. Errors
/// name `origin`, the line and the variable. Returns the text and the values used.
pub fn substitute(
    origin: &str,
    text: &str,
    vars: &Vars,
    file: &BTreeMap<String, String>,
) -> Result<(String, BTreeMap<String, String>), SpecError> {
    let mut out = String::with_capacity(text.len());
    let mut used = BTreeMap::new();
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let at = |msg: String| SpecError::new(format!("{origin}:{}", n + 1), msg);
        let mut rest = line;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
                continue;
            }
            let Some(body) = after.strip_prefix('{') else {
                out.push('$');
                rest = after;
                continue;
            };
            let end = body.find('}').ok_or_else(|| {
                at("a '${' without its '}': write ${VAR} or ${VAR:-default} (and $$ for a literal $)".into())
            })?;
            let inner = &body[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n.trim(), Some(d)),
                None => (inner.trim(), None),
            };
            if !valid_name(name) {
                return Err(at(format!(
                    "'${{{inner}}}': '{name}' is not a variable name (letters, digits and _)"
                )));
            }
            let value = vars
                .lookup(name, file)
                .or_else(|| default.map(str::to_string))
                .ok_or_else(|| {
                    at(format!(
                        "variable {name} has no value: give it with --set {name}=..., in the environment, in the file's `variables:` section, or write ${{{name}:-default}}"
                    ))
                })?;
            if value.contains('\n') {
                return Err(at(format!(
                    "variable {name}: its value spans several lines: give one line"
                )));
            }
            out.push_str(&value);
            used.insert(name.to_string(), value);
            rest = &body[end + 1..];
        }
        out.push_str(rest);
    }
    Ok((out, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(set: &[(&str, &str)]) -> Vars {
        Vars {
            set: set
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            env: false,
        }
    }

    #[test]
    fn set_wins_over_the_file_and_defaults_fill_in() {
        let file: BTreeMap<String, String> = [("N".to_string(), "5000".to_string())].into();
        let text = "count: ${N}\nhold: ${HOLD:-5m}\ncost: $$5\n";
        let (out, used) = substitute("s.yaml", text, &vars(&[]), &file).expect("ok");
        assert_eq!(out, "count: 5000\nhold: 5m\ncost: $5\n");
        assert_eq!(used["HOLD"], "5m");
        let (out, _) = substitute("s.yaml", text, &vars(&[("N", "50")]), &file).expect("ok");
        assert!(out.starts_with("count: 50\n"));
    }

    #[test]
    fn a_missing_variable_names_the_line() {
        let e = substitute("s.yaml", "a: 1\nb: ${NOPE}\n", &vars(&[]), &BTreeMap::new())
            .expect_err("missing");
        assert_eq!(e.field, "s.yaml:2");
        assert!(e.message.contains("--set NOPE="), "{e}");
        let e = substitute("s.yaml", "b: ${X\n", &vars(&[]), &BTreeMap::new()).expect_err("open");
        assert!(e.message.contains("'}'"), "{e}");
        assert!(Vars::parse_set("A=1").is_ok());
        assert!(Vars::parse_set("A").is_err());
        assert!(Vars::parse_set("1A=2").is_err());
    }
}
