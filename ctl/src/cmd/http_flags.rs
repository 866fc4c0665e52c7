//! The flags of the `http` sink (`--sink http --url ...`), flattened into the deploy flags.

use std::time::Duration;

use pluribus_common::spec::HttpMethod;
use pluribus_common::SpecError;
use serde_json::Value;

use super::sink_flags::{duration, text, FlagOption, SinkFlags};

/// Options of the http sink; they go with `--sink http` only.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "HTTP sink (--sink http)")]
pub struct HttpFlags {
    /// URL template, with {fleet}, {device_id}, {index}, e.g.
    /// http://collector:8080/ingest/{device_id}.
    #[arg(long, value_name = "TEMPLATE")]
    pub url: Option<String>,
    /// HTTP method [default: POST].
    #[arg(long, value_name = "POST|PUT")]
    pub method: Option<HttpMethod>,
    /// A request header, K:V (repeatable). The value may be env:VAR or file:NAME, read on
    /// the agent (within its --secrets-env-prefix and --secrets-dir) so the secret is not
    /// stored in NATS, e.g. Authorization:env:PLURIBUS_SECRET_API_TOKEN.
    #[arg(long = "header", value_name = "K:V", value_parser = parse_header)]
    pub header: Vec<(String, String)>,
    /// Time allowed for one attempt, e.g. 2s [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub http_timeout: Option<Duration>,
    /// Retries after a 5xx, a timeout or a connection error, with backoff from 100ms
    /// [default: 2].
    #[arg(long, value_name = "N")]
    pub http_retries: Option<u32>,
    /// Requests in flight per agent; messages beyond it are dropped and counted as
    /// publish_failed [default: 256].
    #[arg(long, value_name = "N")]
    pub http_concurrency: Option<u32>,
    /// CA certificate (PEM) on the agents, for an https:// URL signed by a private CA;
    /// only it is trusted then [default: the system's roots]. Fleet files: `ca`.
    #[arg(long, value_name = "FILE")]
    pub http_ca: Option<String>,
    /// Client certificate (PEM) on the agents, with --http-key. Fleet files: `cert`.
    #[arg(long, value_name = "FILE")]
    pub http_cert: Option<String>,
    /// Client private key (PEM) on the agents, with --http-cert. Fleet files: `key`.
    #[arg(long, value_name = "FILE")]
    pub http_key: Option<String>,
}

/// `K:V`, split at the first colon.
fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!(
            "'{s}' is not a header: write name:value, e.g. X-Token:abc or Authorization:env:API_TOKEN"
        )),
    }
}

impl SinkFlags for HttpFlags {
    const SINK: &'static str = "http";
    const SENDS: &'static str = "sends to --url";

    fn options(&self) -> Vec<FlagOption> {
        let headers = (!self.header.is_empty()).then(|| {
            let map: serde_json::Map<String, Value> = self
                .header
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                .collect();
            Value::Object(map)
        });
        vec![
            ("--url", "url", text(&self.url)),
            ("--method", "method", self.method.map(|m| m.as_str().into())),
            ("--header", "headers", headers),
            ("--http-timeout", "timeout", duration(self.http_timeout)),
            (
                "--http-retries",
                "retries",
                self.http_retries.map(Value::from),
            ),
            (
                "--http-concurrency",
                "concurrency",
                self.http_concurrency.map(Value::from),
            ),
            ("--http-ca", "ca", text(&self.http_ca)),
            ("--http-cert", "cert", text(&self.http_cert)),
            ("--http-key", "key", text(&self.http_key)),
        ]
    }

    fn check_required(&self) -> Result<(), SpecError> {
        if self.url.is_none() {
            return Err(SpecError::new(
                "--url",
                "--sink http needs a URL: add e.g. --url 'http://collector:8080/ingest/{device_id}'",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (k, _) in &self.header {
            if !seen.insert(k) {
                return Err(SpecError::new(
                    "--header",
                    format!("{k} is given twice: keep one"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::cmd::sink_flags::test_support::sink;
    use crate::cmd::Cli;
    use clap::Parser;

    #[test]
    fn flags_build_the_http_sink() {
        let s = sink(&[
            "--sink",
            "http",
            "--url",
            "http://127.0.0.1:9/ingest/{device_id}",
            "--method",
            "put",
            "--header",
            "X-Token: abc",
            "--header",
            "Authorization:env:API_TOKEN",
            "--http-timeout",
            "1500ms",
            "--http-retries",
            "0",
            "--http-concurrency",
            "16",
        ])
        .expect("valid");
        assert_eq!(s.kind, "http");
        let o = serde_json::Value::Object(s.options);
        assert_eq!(o["url"], "http://127.0.0.1:9/ingest/{device_id}");
        assert_eq!(o["method"], "PUT");
        assert_eq!(o["headers"]["X-Token"], "abc");
        assert_eq!(o["headers"]["Authorization"], "env:API_TOKEN");
        assert_eq!(o["timeout"], "1s 500ms");
        assert_eq!(o["retries"], 0);
        assert_eq!(o["concurrency"], 16);
        let s = sink(&[
            "--sink",
            "http",
            "--url",
            "https://c/x",
            "--http-ca",
            "/etc/ca.pem",
            "--http-cert",
            "/etc/c.pem",
            "--http-key",
            "/etc/c.key",
        ])
        .expect("valid");
        let o = serde_json::Value::Object(s.options);
        assert_eq!(o["ca"], "/etc/ca.pem");
        assert_eq!(o["cert"], "/etc/c.pem");
        assert_eq!(o["key"], "/etc/c.key");
        // Only what was given is recorded; the rest are the sink's defaults.
        let s = sink(&["--sink", "http", "--url", "https://c/x"]).expect("valid");
        assert_eq!(s.options.len(), 1);
    }

    #[test]
    fn http_flags_need_the_http_sink() {
        let e = sink(&["--url", "http://c/x"]).expect_err("console");
        assert_eq!(e.field, "--url");
        assert!(e.message.contains("--sink http"), "{e}");
        let e = sink(&["--sink", "nats", "--http-retries", "3"]).expect_err("nats");
        assert_eq!(e.field, "--http-retries");
        let e = sink(&["--sink", "mqtt", "--http-ca", "/ca.pem"]).expect_err("mqtt");
        assert_eq!(e.field, "--http-ca");
        let e = sink(&["--sink", "http"]).expect_err("no url");
        assert_eq!(e.field, "--url");
        let e = sink(&["--sink", "http", "--url", "http://c/x", "--subject", "a.b"])
            .expect_err("subject");
        assert_eq!(e.field, "--subject");
    }

    #[test]
    fn bad_values_are_refused() {
        let e = sink(&["--sink", "http", "--url", "ftp://c/x"]).expect_err("scheme");
        assert_eq!(e.field, "sink.url");
        let e = sink(&[
            "--sink",
            "http",
            "--url",
            "http://c/x",
            "--http-concurrency",
            "0",
        ])
        .expect_err("zero");
        assert_eq!(e.field, "sink.concurrency");
        let e = sink(&[
            "--sink",
            "http",
            "--url",
            "http://c/x",
            "--http-ca",
            "/ca.pem",
        ])
        .expect_err("http://");
        assert_eq!(e.field, "sink.ca");
        let e = sink(&[
            "--sink",
            "http",
            "--url",
            "https://c/x",
            "--http-cert",
            "/c.pem",
        ])
        .expect_err("no key");
        assert_eq!(e.field, "sink.key");
        let e =
            Cli::try_parse_from(["pluribusctl", "deploy", "--method", "GET"]).expect_err("method");
        assert!(e.to_string().contains("POST or PUT"), "{e}");
        let e = Cli::try_parse_from(["pluribusctl", "deploy", "--header", "X-Token"])
            .expect_err("header");
        assert!(e.to_string().contains("name:value"), "{e}");
    }
}
