//! Options of the `http` sink: each message is one HTTP request to a URL rendered per
//! device. Checked here, before deploy; the agent resolves `env:`/`file:` header values
//! and reads the TLS files (`ca`, `cert`, `key`), and refuses the shard if it cannot.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::template::{Template, TemplateVars};
use super::tls::TlsFiles;
use crate::SpecError;

/// The default request timeout (one attempt, until the response is read).
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// The default number of retries after a failed attempt.
pub const DEFAULT_HTTP_RETRIES: u32 = 2;
/// The default number of requests in flight per agent.
pub const DEFAULT_HTTP_CONCURRENCY: u32 = 256;
/// The first retry waits this long; each further retry twice as long as the one before.
pub const HTTP_BACKOFF_BASE: Duration = Duration::from_millis(100);
/// The longest timeout allowed.
pub const MAX_HTTP_TIMEOUT: Duration = Duration::from_secs(300);
/// The most retries allowed.
pub const MAX_HTTP_RETRIES: u32 = 10;
/// The most requests in flight per agent allowed.
pub const MAX_HTTP_CONCURRENCY: u32 = 100_000;

const KEYS: &[&str] = &[
    "url",
    "method",
    "headers",
    "timeout",
    "retries",
    "concurrency",
    "ca",
    "cert",
    "key",
];

/// The HTTP method of the `http` sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub enum HttpMethod {
    /// `POST` (the default).
    #[default]
    #[serde(rename = "POST")]
    Post,
    /// `PUT`.
    #[serde(rename = "PUT")]
    Put,
}

impl TryFrom<String> for HttpMethod {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl HttpMethod {
    /// The method's name, as sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Post => "POST",
            Self::Put => "PUT",
        }
    }
}

impl std::str::FromStr for HttpMethod {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "POST" => Ok(Self::Post),
            "PUT" => Ok(Self::Put),
            _ => Err(format!("'{s}' is not a supported method: use POST or PUT")),
        }
    }
}

impl std::fmt::Display for HttpMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Options of the `http` sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// URL template, `http://` or `https://`; `{fleet}`, `{device_id}` and `{index}` are
    /// filled in per device.
    pub url: String,
    /// `POST` (default) or `PUT`.
    #[serde(default)]
    pub method: HttpMethod,
    /// Extra request headers. A value `env:VAR` or `file:/path` is read on the agent, so a
    /// secret is not stored in the fleet record in clear.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Time allowed for one attempt, from sending to the end of the response.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts after a failed one (5xx, timeout, connection error), with exponential
    /// backoff from [`HTTP_BACKOFF_BASE`].
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Requests in flight per agent; a message beyond it fails at once (publish_failed).
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// CA certificate (PEM) on the agent, for an `https://` URL signed by a private CA:
    /// only its certificates are trusted then; the system's roots otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// Client certificate (PEM) on the agent, with `key`, for an `https://` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// Client private key (PEM) on the agent, with `cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

fn default_timeout() -> Duration {
    DEFAULT_HTTP_TIMEOUT
}
fn default_retries() -> u32 {
    DEFAULT_HTTP_RETRIES
}
fn default_concurrency() -> u32 {
    DEFAULT_HTTP_CONCURRENCY
}

/// Where a header's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderSource<'a> {
    /// The value as written.
    Literal(&'a str),
    /// `env:VAR`: the agent's environment variable `VAR`.
    Env(&'a str),
    /// `file:/path`: the contents of a file on the agent, without the trailing newline.
    File(&'a str),
}

impl<'a> HeaderSource<'a> {
    /// Reads `env:VAR`, `file:/path` or a literal value.
    pub fn parse(raw: &'a str) -> Self {
        if let Some(var) = raw.strip_prefix("env:") {
            Self::Env(var)
        } else if let Some(path) = raw.strip_prefix("file:") {
            Self::File(path)
        } else {
            Self::Literal(raw)
        }
    }
}

impl HttpSinkConfig {
    /// Parses and checks the options of an `http` sink. Errors name the option
    /// (`sink.url`, `sink.method`, ...).
    pub fn from_options(
        options: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, SpecError> {
        // Each option alone first, so that an error names it; serde then builds the whole.
        for (k, v) in options {
            probe(k, v)?;
        }
        if !options.contains_key("url") {
            return Err(SpecError::new(
                "sink.url",
                "missing: give the URL to send to, e.g. http://collector:8080/ingest/{device_id}",
            ));
        }
        let cfg: Self = serde_json::from_value(serde_json::Value::Object(options.clone()))
            .map_err(|e| SpecError::new("sink", format!("bad options for the http sink: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// True if the sink has TLS files of its own (`ca`, `cert`/`key`), so the agent
    /// builds a client for them rather than use its shared one.
    pub fn has_tls_files(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }

    /// Checks the values: the URL, the headers, the limits and the TLS files.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.url_template()?;
        self.check_tls_files()?;
        let mut seen = BTreeMap::new();
        for (name, value) in &self.headers {
            check_header(name, value)?;
            if let Some(first) = seen.insert(name.to_ascii_lowercase(), name) {
                return Err(SpecError::new(
                    format!("sink.headers.{name}"),
                    format!("repeats header '{first}' (names are case-insensitive): keep one"),
                ));
            }
        }
        if self.timeout.is_zero() || self.timeout > MAX_HTTP_TIMEOUT {
            return Err(SpecError::new(
                "sink.timeout",
                format!(
                    "{:?} is out of range: give a timeout above 0 and at most {:?}, e.g. 5s",
                    self.timeout, MAX_HTTP_TIMEOUT
                ),
            ));
        }
        if self.retries > MAX_HTTP_RETRIES {
            return Err(SpecError::new(
                "sink.retries",
                format!(
                    "{} is above the limit of {MAX_HTTP_RETRIES}: lower it",
                    self.retries
                ),
            ));
        }
        if self.concurrency == 0 || self.concurrency > MAX_HTTP_CONCURRENCY {
            return Err(SpecError::new(
                "sink.concurrency",
                format!(
                    "{} is out of range: give 1 to {MAX_HTTP_CONCURRENCY} requests in flight per agent",
                    self.concurrency
                ),
            ));
        }
        Ok(())
    }

    /// `ca`, `cert` and `key`: paths, only with an `https://` URL, `cert` with `key`.
    fn check_tls_files(&self) -> Result<(), SpecError> {
        let https = self
            .url
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
        let not_https = format!(
            "TLS files need an https:// URL, and '{}' is not one: write it as https://host/...",
            self.url
        );
        TlsFiles {
            ca: &self.ca,
            cert: &self.cert,
            key: &self.key,
        }
        .check(
            https,
            &not_https,
            "--http-cert and --http-key (cert and key in a fleet file)",
        )
    }

    /// The parsed URL template, checked on a sample device.
    pub fn url_template(&self) -> Result<Template, SpecError> {
        let t = Template::parse("sink.url", &self.url, true)?;
        check_url(
            &self.url,
            &t.render(&TemplateVars {
                fleet: "f",
                device_id: Some("d"),
                index: 0,
            }),
        )?;
        Ok(t)
    }
}

/// Checks one option on its own, so that the error names it.
fn probe(key: &str, v: &serde_json::Value) -> Result<(), SpecError> {
    let field = format!("sink.{key}");
    let bad = |what: &str| SpecError::new(field.clone(), what.to_string());
    match key {
        "url" if !v.is_string() => Err(bad(
            "must be a string, e.g. http://collector:8080/ingest/{device_id}",
        )),
        "method" => match v.as_str().map(str::parse::<HttpMethod>) {
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(bad(&e)),
            None => Err(bad("must be POST or PUT")),
        },
        "headers" => match v.as_object() {
            Some(m) => match m.iter().find(|(_, v)| !v.is_string()) {
                Some((k, _)) => Err(SpecError::new(
                    format!("sink.headers.{k}"),
                    "must be a string (a value, env:VAR or file:/path)",
                )),
                None => Ok(()),
            },
            None => Err(bad("must be a map of header names to values")),
        },
        "timeout" => match v.as_str().map(humantime::parse_duration) {
            Some(Ok(_)) => Ok(()),
            _ => Err(bad(&format!(
                "{v} is not a duration: write e.g. 5s or 500ms"
            ))),
        },
        "ca" | "cert" | "key" if !v.is_string() => Err(bad(
            "must be the path of a PEM file on the agent, e.g. /etc/pluribus/ca.pem",
        )),
        "retries" | "concurrency" if v.as_u64().is_none_or(|n| n > u64::from(u32::MAX)) => Err(
            bad(&format!("{v} is not a count: give a whole number, e.g. 2")),
        ),
        k if !KEYS.contains(&k) => Err(bad(&format!(
            "the http sink has no option '{k}': use {}",
            KEYS.join(", ")
        ))),
        _ => Ok(()),
    }
}

fn check_url(template: &str, sample: &str) -> Result<(), SpecError> {
    let bad = |what: &str| SpecError::new("sink.url", format!("'{template}' {what}"));
    let lower = sample.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
    else {
        return Err(bad(
            "must start with http:// or https://, e.g. http://collector:8080/ingest/{device_id}",
        ));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err(bad("has no host: write e.g. http://collector:8080/ingest"));
    }
    if authority.contains('@') {
        return Err(bad(
            "has credentials in it: send them in a header instead, e.g. --header Authorization:env:TOKEN",
        ));
    }
    if let Some(c) = sample
        .chars()
        .find(|c| !c.is_ascii_graphic() || "<>\"\\^`|{}".contains(*c))
    {
        return Err(bad(&format!(
            "has the character {c:?}, which a URL cannot hold: percent-encode it"
        )));
    }
    Ok(())
}

/// Header names are RFC 9110 tokens.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn check_header(name: &str, value: &str) -> Result<(), SpecError> {
    let field = format!("sink.headers.{name}");
    if !is_token(name) {
        return Err(SpecError::new(
            field,
            "is not a header name: use letters, digits and -, e.g. X-Token",
        ));
    }
    let lower = name.to_ascii_lowercase();
    if lower == "content-length" || lower == "transfer-encoding" {
        return Err(SpecError::new(
            field,
            "is set by the sink from the message: remove it",
        ));
    }
    match HeaderSource::parse(value) {
        HeaderSource::Env(var) if var.is_empty() || var.contains(['=', '\0']) => Err(
            SpecError::new(field, "env: needs a variable name, e.g. env:API_TOKEN"),
        ),
        HeaderSource::File(path) if path.is_empty() || path.split('/').any(|c| c == "..") => {
            Err(SpecError::new(
                field,
                format!("file:{path} must name a file under the agent's --secrets-dir, e.g. file:api-token (no '..')"),
            ))
        }
        HeaderSource::Literal(v) if !is_header_value(v) => Err(SpecError::new(
            field,
            "has a control character (a newline?): remove it, or read the value with env:VAR or file:/path",
        )),
        _ => Ok(()),
    }
}

/// Visible characters, spaces and tabs (RFC 9110 field-value, with obs-text).
pub fn is_header_value(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

#[cfg(test)]
mod tests;
