//! A small HTTP server for the http sink's tests: records every request, answers 200 (or
//! 500 for the first N requests), on 127.0.0.1 and a port of its own. Stops on drop.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: serde_json::Value,
    /// What the server answered.
    pub status: u16,
}

impl Recorded {
    pub fn ok(&self) -> bool {
        self.status == 200
    }
}

struct State {
    requests: Mutex<Vec<Recorded>>,
    fail_first: AtomicU64,
    /// How long each request waits before it is read and recorded (a slow server).
    delay: Duration,
    count: watch::Sender<usize>,
}

/// The server; it stops when dropped.
pub struct HttpServer {
    pub addr: SocketAddr,
    state: Arc<State>,
    count: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    /// A server on a free port that answers 200.
    pub async fn start() -> Self {
        Self::start_failing(0).await
    }

    /// A server on a free port that answers 500 to the first `n` requests.
    pub async fn start_failing(n: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        Self::serve(listener, n, Duration::ZERO)
    }

    /// A server on a free port that takes `delay` before it reads and records a request.
    /// A request its client gives up on meanwhile is never recorded.
    pub async fn start_slow(delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        Self::serve(listener, 0, delay)
    }

    /// A server on `port` (one that was free a moment ago).
    pub async fn start_on(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("bind 127.0.0.1:{port}: {e}"));
        Self::serve(listener, 0, Duration::ZERO)
    }

    fn serve(listener: TcpListener, fail_first: u64, delay: Duration) -> Self {
        let addr = listener.local_addr().expect("local addr");
        let (tx, count) = watch::channel(0);
        let state = Arc::new(State {
            requests: Mutex::new(Vec::new()),
            fail_first: AtomicU64::new(fail_first),
            delay,
            count: tx,
        });
        let s = state.clone();
        let task = tokio::spawn(async move {
            // Connections live in the set, so they stop with the accept loop.
            let mut conns = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| handle(s.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            state,
            count,
            task,
        }
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().expect("lock").clone()
    }

    /// Waits until `check` holds on the requests so far; panics at `timeout`.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&[Recorded]) -> bool,
    ) -> Vec<Recorded> {
        let mut count = self.count.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let reqs = self.requests();
            if check(&reqs) {
                return reqs;
            }
            if tokio::time::timeout_at(deadline, count.changed())
                .await
                .is_err()
            {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; {} requests, last: {:?}",
                    reqs.len(),
                    reqs.last()
                );
            }
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    s: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    tokio::time::sleep(s.delay).await;
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let fail = s
        .fail_first
        .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let status = if fail {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    s.requests.lock().expect("lock").push(Recorded {
        method,
        path,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        status: status.as_u16(),
    });
    s.count.send_modify(|n| *n += 1);
    let mut resp = Response::new(Full::new(Bytes::from_static(b"{}")));
    *resp.status_mut() = status;
    Ok(resp)
}
