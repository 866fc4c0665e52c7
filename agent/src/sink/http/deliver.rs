//! One message's request, in a task of its own: attempts, backoff, metrics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Method, StatusCode, Uri};
use pluribus_common::spec::{HttpMethod, HTTP_BACKOFF_BASE};
use tokio::sync::OwnedSemaphorePermit;

use super::client::HttpClient;
use crate::metrics::FleetMetrics;

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What every request of one sink shares.
pub struct Request {
    /// The client: the agent's shared one, or the one for the sink's TLS files (shared
    /// by the sinks with the same files; it lives while one of them does).
    pub client: Arc<HttpClient>,
    /// `POST` or `PUT`.
    pub method: HttpMethod,
    /// Extra headers, resolved on this agent.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Time allowed for one attempt.
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
    /// The fleet's metrics.
    pub metrics: Arc<FleetMetrics>,
    /// Keeps failure warnings to one every few seconds.
    pub log: LogLimit,
}

/// How one attempt ended, when it got no success.
#[derive(Debug)]
enum Failure {
    /// A status the server will answer the same way again (3xx, 4xx): not retried.
    Refused(StatusCode),
    /// A 5xx, a timeout, or a connection that failed: tried again.
    Transient(String),
}

/// Sends `body` to `uri` through `client` (the sink's, or the device's own), retrying
/// transient failures with exponential backoff. Holds `_permit` (one request slot of the
/// agent's limit) until done, backoff included.
pub async fn deliver(
    req: Arc<Request>,
    client: Arc<HttpClient>,
    uri: Uri,
    body: Bytes,
    _permit: OwnedSemaphorePermit,
) {
    let mut retry = 0;
    let failure = loop {
        match req.attempt(&client, &uri, body.clone()).await {
            Ok(()) => return,
            Err(Failure::Transient(_)) if retry < req.retries => {
                tokio::time::sleep(backoff(retry)).await;
                retry += 1;
            }
            Err(f) => break f,
        }
    };
    req.metrics.publish_failed.fetch_add(1, Relaxed);
    req.metrics.errors.fetch_add(1, Relaxed);
    if req.log.allow() {
        let reason = match &failure {
            Failure::Refused(s) => format!("the server answered {s}"),
            Failure::Transient(e) => e.clone(),
        };
        tracing::warn!(url = %uri, attempts = retry + 1, %reason, "http sink: a message could not be delivered (further failures in the next seconds are only counted)");
    }
}

/// The wait before retry `n` (0-based): 100 ms, 200 ms, 400 ms, ... up to [`MAX_BACKOFF`].
pub fn backoff(n: u32) -> Duration {
    HTTP_BACKOFF_BASE
        .saturating_mul(1u32.checked_shl(n).unwrap_or(u32::MAX))
        .min(MAX_BACKOFF)
}

/// The class a status is counted under: "2xx", "5xx", ...
pub fn class(s: StatusCode) -> &'static str {
    match s.as_u16() / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

impl Request {
    /// One attempt: the request, and the whole response read within the timeout. A
    /// response is counted by class, with its latency, whatever its status.
    async fn attempt(&self, client: &HttpClient, uri: &Uri, body: Bytes) -> Result<(), Failure> {
        let mut r = hyper::Request::new(Full::new(body));
        *r.method_mut() = match self.method {
            HttpMethod::Post => Method::POST,
            HttpMethod::Put => Method::PUT,
        };
        *r.uri_mut() = uri.clone();
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (k, v) in &self.headers {
            h.insert(k.clone(), v.clone());
        }
        let start = Instant::now();
        let exchange = async {
            let resp = client.request(r).await.map_err(|e| {
                let what = if e.is_connect() { "connect" } else { "request" };
                Failure::Transient(format!("{what}: {}", chain(&e)))
            })?;
            let status = resp.status();
            // Read the body to its end so the connection goes back to the pool.
            let mut body = resp.into_body();
            while let Some(frame) = body.frame().await {
                frame.map_err(|e| Failure::Transient(format!("response body: {}", chain(&e))))?;
            }
            Ok(status)
        };
        let status = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| Failure::Transient(format!("no response within {:?}", self.timeout)))??;
        self.metrics
            .ack_latency(u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX));
        self.metrics.response(class(status));
        if status.is_success() {
            Ok(())
        } else if status.is_server_error() {
            Err(Failure::Transient(format!("the server answered {status}")))
        } else {
            Err(Failure::Refused(status))
        }
    }
}

/// An error and its causes, `a: b: c` (hyper's own message alone says little).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Lets a message through at most once per [`LogLimit::EVERY`], from any task.
#[derive(Debug, Default)]
pub struct LogLimit {
    next_ms: AtomicU64,
}

impl LogLimit {
    /// The shortest time between two messages.
    pub const EVERY: Duration = Duration::from_secs(10);

    /// True when a message may be logged now.
    pub fn allow(&self) -> bool {
        let now = pluribus_common::time::now_ms();
        let next = self.next_ms.load(Relaxed);
        now >= next
            && self
                .next_ms
                .compare_exchange(next, now + Self::EVERY.as_millis() as u64, Relaxed, Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_100ms_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(3), Duration::from_millis(800));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }

    #[test]
    fn statuses_are_counted_by_class() {
        assert_eq!(class(StatusCode::OK), "2xx");
        assert_eq!(class(StatusCode::NO_CONTENT), "2xx");
        assert_eq!(class(StatusCode::NOT_FOUND), "4xx");
        assert_eq!(class(StatusCode::SERVICE_UNAVAILABLE), "5xx");
    }

    #[test]
    fn log_limit_lets_one_through() {
        let l = LogLimit::default();
        assert!(l.allow());
        assert!(!l.allow());
    }
}
