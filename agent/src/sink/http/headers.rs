//! Header values resolved on the agent: `env:VAR` from its environment, `file:/path` from
//! its disk, so a secret never sits in the fleet record in clear.

use std::collections::BTreeMap;

use hyper::header::{HeaderName, HeaderValue};
use pluribus_common::spec::HeaderSource;

use crate::secrets::Secrets;
use crate::sink::SinkError;

/// The headers of a spec, ready to send. Values read from `env:` or `file:` are marked
/// sensitive (kept out of debug output).
pub fn resolve(
    headers: &BTreeMap<String, String>,
    secrets: &Secrets,
) -> Result<Vec<(HeaderName, HeaderValue)>, SinkError> {
    headers
        .iter()
        .map(|(name, raw)| {
            let bad = |what: String| SinkError(format!("http sink header {name}: {what}"));
            let n = HeaderName::try_from(name.as_str())
                .map_err(|_| bad("is not a header name: use letters, digits and -".into()))?;
            let source = HeaderSource::parse(raw);
            let text = match source {
                HeaderSource::Literal(v) => v.to_string(),
                HeaderSource::Env(var) => secrets
                    .env(&format!("sink.headers.{name}"), var)
                    .map_err(SinkError)?,
                HeaderSource::File(path) => secrets
                    .file(&format!("sink.headers.{name}"), path)
                    .map_err(SinkError)?,
            };
            let mut v = HeaderValue::try_from(text).map_err(|_| {
                bad(format!(
                    "the value from {raw} has a control character (a newline inside?): fix it"
                ))
            })?;
            v.set_sensitive(!matches!(source, HeaderSource::Literal(_)));
            Ok((n, v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::SecretPolicy;

    /// Secrets under a directory of the test's own (not the shared temporary directory,
    /// which may hold more files than an agent reads).
    fn secrets(dir: &std::path::Path) -> Secrets {
        Secrets::new(SecretPolicy {
            dir: Some(dir.to_path_buf()),
            ..Default::default()
        })
        .expect("secrets")
    }

    fn one_in(dir: &std::path::Path, name: &str, raw: &str) -> Result<HeaderValue, SinkError> {
        let h = BTreeMap::from([(name.to_string(), raw.to_string())]);
        resolve(&h, &secrets(dir)).map(|mut v| v.remove(0).1)
    }

    fn one(name: &str, raw: &str) -> Result<HeaderValue, SinkError> {
        let dir = tempfile::tempdir().expect("tempdir");
        one_in(dir.path(), name, raw)
    }

    #[test]
    fn literals_are_sent_as_written() {
        let v = one("X-Token", "abc").expect("literal");
        assert_eq!(v, "abc");
        assert!(!v.is_sensitive());
    }

    #[test]
    fn env_values_come_from_the_agent() {
        std::env::set_var("PLURIBUS_SECRET_TEST_HTTP_HEADER_TOKEN", "s3cret");
        let v = one(
            "Authorization",
            "env:PLURIBUS_SECRET_TEST_HTTP_HEADER_TOKEN",
        )
        .expect("env");
        assert_eq!(v, "s3cret");
        assert!(v.is_sensitive());
        let e = one(
            "Authorization",
            "env:PLURIBUS_SECRET_TEST_HTTP_HEADER_UNSET",
        )
        .expect_err("unset");
        assert!(
            e.0.contains("PLURIBUS_SECRET_TEST_HTTP_HEADER_UNSET is not set"),
            "{e}"
        );
        assert!(e.0.contains("sink.headers.Authorization"), "{e}");
        let e = one("Authorization", "env:HOME").expect_err("not allowed");
        assert!(e.0.contains("--secrets-env-prefix"), "{e}");
    }

    #[test]
    fn file_values_lose_their_trailing_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("token"), "Bearer t0ken\n").expect("write");
        let v = one_in(dir.path(), "Authorization", "file:token").expect("file");
        assert_eq!(v, "Bearer t0ken");
        assert!(v.is_sensitive());
        let e = one("X-Key", "file:/nonexistent/pluribus/key").expect_err("outside");
        assert!(e.0.contains("outside"), "{e}");
    }

    #[test]
    fn a_bad_value_is_refused() {
        std::env::set_var("PLURIBUS_SECRET_TEST_HTTP_HEADER_NL", "a\nb");
        let e = one("X-A", "env:PLURIBUS_SECRET_TEST_HTTP_HEADER_NL").expect_err("newline");
        assert!(e.0.contains("control character"), "{e}");
    }
}
