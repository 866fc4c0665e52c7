use std::sync::atomic::AtomicU64;
use std::time::Duration;

use pluribus_common::spec::HttpMethod;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use super::*;
use crate::metrics::FleetMetrics;

/// A server that reads requests and never answers; counts the connections it accepted.
async fn silent_server() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicU64::new(0));
    let n = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            n.fetch_add(1, Relaxed);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    (format!("http://{addr}/in/{{device_id}}"), accepted)
}

fn sink(url: &str, concurrency: u32, retries: u32) -> (HttpSink, Arc<FleetMetrics>) {
    let metrics = Arc::new(FleetMetrics::default());
    let request = Request {
        client: Arc::new(client::build().expect("client")),
        method: HttpMethod::Post,
        headers: Vec::new(),
        timeout: Duration::from_millis(100),
        retries,
        metrics: metrics.clone(),
        log: LogLimit::default(),
    };
    let sink = HttpSink {
        request: Arc::new(request),
        url: Template::parse("sink.url", url, true).expect("template"),
        permits: Arc::new(Semaphore::new(concurrency as usize)),
        concurrency,
        scratch: String::new(),
        drops: LogLimit::default(),
        in_flight_tasks: tokio_util::task::TaskTracker::new(),
        links: None,
    };
    (sink, metrics)
}

/// Waits until every request of `s` has ended (all its permits are back).
async fn idle(s: &HttpSink) {
    let all = s.permits.acquire_many(s.concurrency);
    let _permits = tokio::time::timeout(Duration::from_secs(5), all)
        .await
        .expect("requests end")
        .expect("semaphore open");
}

const DEV: SinkDevice<'static> = SinkDevice {
    device_id: "d-1",
    fleet: "f",
    index: 1,
};

#[tokio::test]
async fn a_full_limit_drops_the_message_at_once() {
    let (url, _) = silent_server().await;
    let (mut s, metrics) = sink(&url, 1, 0);
    s.send(&DEV, Bytes::from_static(b"{}"))
        .await
        .expect("first is sent");
    assert_eq!(s.in_flight(), 1);
    let e = s
        .send(&DEV, Bytes::from_static(b"{}"))
        .await
        .expect_err("no slot");
    assert!(e.0.contains("in flight"), "{e}");
    assert_eq!(metrics.publish_failed.load(Relaxed), 1);
}

#[tokio::test]
async fn timeouts_are_retried_then_counted_once() {
    let (url, accepted) = silent_server().await;
    let (mut s, metrics) = sink(&url, 4, 1);
    s.send(&DEV, Bytes::from_static(b"{}")).await.expect("sent");
    // Two attempts of 100 ms and a backoff of 100 ms between them.
    idle(&s).await;
    assert_eq!(metrics.publish_failed.load(Relaxed), 1);
    assert_eq!(metrics.errors.load(Relaxed), 1);
    // A timed-out connection is not reused: each attempt opened one.
    assert_eq!(accepted.load(Relaxed), 2);
}

#[tokio::test]
async fn a_connection_refused_is_a_failure_not_a_panic() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let (mut s, metrics) = sink(&format!("http://127.0.0.1:{port}/x"), 4, 0);
    s.send(&DEV, Bytes::from_static(b"{}")).await.expect("sent");
    idle(&s).await;
    assert_eq!(metrics.publish_failed.load(Relaxed), 1);
    assert_eq!(metrics.errors.load(Relaxed), 1);
}

/// A self-signed CA certificate (P-256, valid until 2126), only ever used as a trust anchor.
const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBlzCCAT2gAwIBAgIUOMkFNa6tX53FM4BsGIeuPiwFd1MwCgYIKoZIzj0EAwIw
IDEeMBwGA1UEAwwVcGx1cmlidXMgdW5pdCB0ZXN0IENBMCAXDTI2MTEzMDA5MDYz
N1oYDzIxMjYxMTA2MDkwNjM3WjAgMR4wHAYDVQQDDBVwbHVyaWJ1cyB1bml0IHRl
c3QgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASz/VqKadUVVUBTMJDB/ICb
ZNFMYRt0lidinOFn2OVO766wwCxoeUUZeD2zHM8wBWoz7iozcDI+qYbMYZxqVQk3
o1MwUTAdBgNVHQ4EFgQU6L4aeh9bThnPjbJjo2aVhGbVdWQwHwYDVR0jBBgwFoAU
6L4aeh9bThnPjbJjo2aVhGbVdWQwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQD
AgNIADBFAiEA48UZ1BYkcR+cKXgXelhHyImdbayxv03yLXDkXRhkHoQCIH6g2U62
wpVnBch6gvO/PCF9hgRR8vHquJRDbGL7zZlA
-----END CERTIFICATE-----
";

/// A secrets directory of this test (TLS files are read from the agent's --secrets-dir)
/// and the agent's view of it.
fn secrets_dir(test: &str) -> (std::path::PathBuf, crate::secrets::Secrets) {
    let dir = std::env::temp_dir().join(format!("pluribus-http-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("secrets dir");
    let s = crate::secrets::Secrets::new(crate::secrets::SecretPolicy {
        dir: Some(dir.clone()),
        ..Default::default()
    })
    .expect("secrets");
    (dir, s)
}

/// Writes `text` to `name` under `dir` and lets `secrets` see it; returns its path.
fn temp_file(
    dir: &std::path::Path,
    secrets: &crate::secrets::Secrets,
    name: &str,
    text: &str,
) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write temp file");
    secrets.refresh();
    path.to_str().expect("utf-8 path").to_string()
}

fn https_config(ca: &str) -> HttpSinkConfig {
    let options = serde_json::json!({"url": "https://127.0.0.1:9/x", "ca": ca});
    let serde_json::Value::Object(options) = options else {
        unreachable!("options are a map")
    };
    HttpSinkConfig::from_options(&options).expect("valid")
}

#[tokio::test]
async fn sinks_with_the_same_ca_share_a_client_of_their_own() {
    let (dir, secrets) = secrets_dir("share");
    let ca = temp_file(&dir, &secrets, "ca.pem", TEST_CA);
    let other = temp_file(&dir, &secrets, "other.pem", TEST_CA);
    let f = HttpFactory::default();
    let a = f.client(&https_config(&ca), &secrets).expect("client");
    let b = f.client(&https_config(&ca), &secrets).expect("client");
    assert!(Arc::ptr_eq(&a, &b), "one client per CA file");
    let c = f.client(&https_config(&other), &secrets).expect("client");
    assert!(!Arc::ptr_eq(&a, &c), "another CA file, another client");
    // The shared client is not one of them.
    let options = serde_json::json!({"url": "https://127.0.0.1:9/x"});
    let serde_json::Value::Object(options) = options else {
        unreachable!("options are a map")
    };
    let plain = f
        .client(
            &HttpSinkConfig::from_options(&options).expect("valid"),
            &secrets,
        )
        .expect("client");
    assert!(!Arc::ptr_eq(&a, &plain) && !Arc::ptr_eq(&c, &plain));
    // Once no sink holds it, the client goes and the files are read again.
    drop((a, b, c));
    let _again = f.client(&https_config(&ca), &secrets).expect("client");
    assert_eq!(f.tls_clients.lock().expect("lock").len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_missing_or_bad_ca_file_is_an_error_that_names_the_field() {
    let (dir, secrets) = secrets_dir("bad");
    let f = HttpFactory::default();
    let e = f
        .client(&https_config("/nonexistent/ca.pem"), &secrets)
        .expect_err("missing");
    assert!(e.0.starts_with("sink.ca: /nonexistent/ca.pem"), "{e}");
    assert!(e.0.contains("--secrets-dir"), "{e}");
    let not_pem = temp_file(&dir, &secrets, "not.pem", "hello\n");
    let e = f
        .client(&https_config(&not_pem), &secrets)
        .expect_err("not PEM");
    assert!(e.0.contains("sink.ca") && e.0.contains("no PEM"), "{e}");
    // Failures are not cached: the file is read again next time.
    temp_file(&dir, &secrets, "not.pem", TEST_CA);
    f.client(&https_config(&not_pem), &secrets)
        .expect("now valid");
    let _ = std::fs::remove_dir_all(&dir);
}
