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
        client: client::build().expect("client"),
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
