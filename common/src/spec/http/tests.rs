use serde_json::json;

use super::*;
use crate::spec::SinkSpec;

fn spec(options: serde_json::Value) -> SinkSpec {
    let serde_json::Value::Object(options) = options else {
        unreachable!("options are a map")
    };
    SinkSpec {
        kind: "http".into(),
        options,
    }
}

fn err(options: serde_json::Value) -> SpecError {
    spec(options).validate().expect_err("invalid")
}

#[test]
fn defaults_fill_in() {
    let s = spec(json!({"url": "http://127.0.0.1:8080/ingest/{device_id}"}));
    s.validate().expect("valid");
    let c = HttpSinkConfig::from_options(&s.options).expect("valid");
    assert_eq!(c.method, HttpMethod::Post);
    assert_eq!(c.timeout, DEFAULT_HTTP_TIMEOUT);
    assert_eq!(c.retries, DEFAULT_HTTP_RETRIES);
    assert_eq!(c.concurrency, DEFAULT_HTTP_CONCURRENCY);
    assert!(c.headers.is_empty());
}

#[test]
fn every_option_is_read() {
    let c = HttpSinkConfig::from_options(
        &spec(json!({
            "url": "https://collector/{fleet}/{index:05}",
            "method": "put",
            "headers": {"X-Token": "abc", "Authorization": "env:TOKEN", "X-Key": "file:/run/key"},
            "timeout": "750ms",
            "retries": 0,
            "concurrency": 8,
        }))
        .options,
    )
    .expect("valid");
    assert_eq!(c.method, HttpMethod::Put);
    assert_eq!(c.timeout, Duration::from_millis(750));
    assert_eq!(c.retries, 0);
    assert_eq!(c.concurrency, 8);
    assert_eq!(c.headers.len(), 3);
}

#[test]
fn the_url_is_checked() {
    assert_eq!(err(json!({})).field, "sink.url");
    for url in [
        "ftp://h/x",
        "collector:8080/x",
        "http:///x",
        "http://user:pw@h/x",
        "http://h/a b",
        "http://h/{nope}",
    ] {
        let e = err(json!({ "url": url }));
        assert_eq!(e.field, "sink.url", "{url}: {e}");
    }
    let e = err(json!({"url": "http://h/a b"}));
    assert!(e.message.contains("percent-encode"), "{e}");
    assert_eq!(err(json!({"url": 3})).field, "sink.url");
}

#[test]
fn bad_options_name_the_option() {
    let url = "http://h/x";
    let cases = [
        (json!({"url": url, "method": "GET"}), "sink.method"),
        (json!({"url": url, "method": 1}), "sink.method"),
        (json!({"url": url, "timeout": "soon"}), "sink.timeout"),
        (json!({"url": url, "timeout": "0s"}), "sink.timeout"),
        (json!({"url": url, "timeout": "1h"}), "sink.timeout"),
        (json!({"url": url, "retries": -1}), "sink.retries"),
        (json!({"url": url, "retries": 11}), "sink.retries"),
        (json!({"url": url, "concurrency": 0}), "sink.concurrency"),
        (
            json!({"url": url, "concurrency": "many"}),
            "sink.concurrency",
        ),
        (json!({"url": url, "subject": "x"}), "sink.subject"),
        (
            json!({"url": url, "headers": "X-Token:abc"}),
            "sink.headers",
        ),
        (
            json!({"url": url, "headers": {"X-N": 1}}),
            "sink.headers.X-N",
        ),
    ];
    for (options, field) in cases {
        let e = err(options.clone());
        assert_eq!(e.field, field, "{options}: {e}");
    }
    let e = err(json!({"url": url, "method": "GET"}));
    assert!(e.message.contains("POST or PUT"), "{e}");
}

#[test]
fn headers_are_checked() {
    let h = |name: &str, value: &str| {
        let mut headers = serde_json::Map::new();
        headers.insert(name.into(), value.into());
        spec(json!({"url": "http://h/x", "headers": headers})).validate()
    };
    assert!(h("X-Token", "abc").is_ok());
    assert!(h("Authorization", "env:API_TOKEN").is_ok());
    assert!(h("X-Key", "file:/etc/pluribus/key").is_ok());
    for (name, value) in [
        ("X Token", "abc"),
        ("", "abc"),
        ("X-Token", "a\nb"),
        ("X-Token", "env:"),
        ("X-Key", "file:../key.txt"),
        ("Content-Length", "3"),
    ] {
        let e = h(name, value).expect_err("invalid");
        assert_eq!(e.field, format!("sink.headers.{name}"), "{name}: {e}");
    }
    let e = spec(json!({"url": "http://h/x", "headers": {"X-A": "1", "x-a": "2"}}))
        .validate()
        .expect_err("duplicate");
    assert!(e.message.contains("case-insensitive"), "{e}");
}

#[test]
fn header_sources() {
    assert_eq!(HeaderSource::parse("abc"), HeaderSource::Literal("abc"));
    assert_eq!(HeaderSource::parse("env:T"), HeaderSource::Env("T"));
    assert_eq!(HeaderSource::parse("file:/k"), HeaderSource::File("/k"));
    assert_eq!(
        HeaderSource::parse("Bearer env:T"),
        HeaderSource::Literal("Bearer env:T")
    );
}

#[test]
fn methods_parse_in_any_case() {
    assert_eq!("put".parse::<HttpMethod>(), Ok(HttpMethod::Put));
    assert_eq!("POST".parse::<HttpMethod>(), Ok(HttpMethod::Post));
    let m: HttpMethod = serde_json::from_value(json!("Put")).expect("any case");
    assert_eq!(m, HttpMethod::Put);
    assert_eq!(serde_json::to_value(m).expect("encodes"), json!("PUT"));
    assert!("GET".parse::<HttpMethod>().is_err());
    assert_eq!(HttpMethod::Put.to_string(), "PUT");
}

#[test]
fn tls_files_go_with_an_https_url() {
    let url = "https://collector:8443/ingest/{device_id}";
    let c = HttpSinkConfig::from_options(
        &spec(json!({"url": url, "ca": "/etc/ca.pem", "cert": "/etc/c.pem", "key": "/etc/c.key"}))
            .options,
    )
    .expect("valid");
    assert_eq!(c.ca.as_deref(), Some("/etc/ca.pem"));
    assert_eq!(c.cert.as_deref(), Some("/etc/c.pem"));
    assert_eq!(c.key.as_deref(), Some("/etc/c.key"));
    assert!(c.has_tls_files());
    let plain = HttpSinkConfig::from_options(&spec(json!({ "url": url })).options).expect("valid");
    assert!(!plain.has_tls_files());
    // Unset files are not recorded.
    let v = serde_json::to_value(&plain).expect("encodes");
    assert!(v.get("ca").is_none(), "{v}");
    assert!(spec(json!({"url": "HTTPS://h/x", "ca": "/ca.pem"}))
        .validate()
        .is_ok());

    let cases = [
        (json!({"url": "http://h/x", "ca": "/ca.pem"}), "sink.ca"),
        (
            json!({"url": "http://h/x", "cert": "/c", "key": "/k"}),
            "sink.cert",
        ),
        (json!({"url": url, "ca": ""}), "sink.ca"),
        (json!({"url": url, "ca": 1}), "sink.ca"),
        (json!({"url": url, "cert": "/c"}), "sink.key"),
        (json!({"url": url, "key": "/k"}), "sink.cert"),
    ];
    for (options, field) in cases {
        let e = err(options.clone());
        assert_eq!(e.field, field, "{options}: {e}");
    }
    let e = err(json!({"url": "http://h/x", "ca": "/ca.pem"}));
    assert!(e.message.contains("https://"), "{e}");
    let e = err(json!({"url": url, "cert": "/c"}));
    assert!(e.message.contains("--http-key"), "{e}");
}
