//! A small HTTP server for the http sink's tests: records every request, answers 200 (or
//! 500 for the first N requests), on 127.0.0.1 and a port of its own; over https with
//! [`HttpServer::start_tls`] (rustls on ring, optionally asking for client certificates).
//! Stops on drop.
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
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

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
    /// The connection came with a client certificate (verified against the server's
    /// client CA); never for plain http.
    pub client_cert: bool,
    /// The connection it came on (numbered from 1 in the order they were accepted).
    pub conn: u64,
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
    /// TLS handshakes that failed (the client did not trust the server, say).
    tls_failures: AtomicU64,
    /// Connections accepted so far (the last one's number).
    accepted: AtomicU64,
    /// Connections the client closed (by number).
    closed: Mutex<Vec<u64>>,
}

/// The server; it stops when dropped.
pub struct HttpServer {
    pub addr: SocketAddr,
    tls: bool,
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

    /// An https server on a free port with the certificate chain and key given as PEM
    /// (for 127.0.0.1). With `client_ca` it asks for a client certificate and verifies one
    /// that is sent against that CA, but also serves clients that send none
    /// ([`Recorded::client_cert`] tells them apart).
    pub async fn start_tls(cert_pem: &str, key_pem: &str, client_ca: Option<&str>) -> Self {
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("server certificate PEM");
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("server key PEM");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("TLS versions");
        let builder = match client_ca {
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    roots.add(c.expect("client CA PEM")).expect("client CA");
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .allow_unauthenticated()
                .build()
                .expect("client verifier");
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(chain, key)
            .expect("server certificate and key");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        Self::serve_with(
            listener,
            0,
            Duration::ZERO,
            Some(TlsAcceptor::from(Arc::new(config))),
        )
    }

    fn serve(listener: TcpListener, fail_first: u64, delay: Duration) -> Self {
        Self::serve_with(listener, fail_first, delay, None)
    }

    fn serve_with(
        listener: TcpListener,
        fail_first: u64,
        delay: Duration,
        tls: Option<TlsAcceptor>,
    ) -> Self {
        let addr = listener.local_addr().expect("local addr");
        let (tx, count) = watch::channel(0);
        let state = Arc::new(State {
            requests: Mutex::new(Vec::new()),
            fail_first: AtomicU64::new(fail_first),
            delay,
            count: tx,
            tls_failures: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            closed: Mutex::new(Vec::new()),
        });
        let s = state.clone();
        let is_tls = tls.is_some();
        let task = tokio::spawn(async move {
            // Connections live in the set, so they stop with the accept loop.
            let mut conns = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                let tls = tls.clone();
                let conn = s.accepted.fetch_add(1, SeqCst) + 1;
                conns.spawn(async move {
                    match tls {
                        None => serve_connection(s, stream, false, conn).await,
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(stream) => {
                                let client_cert = stream.get_ref().1.peer_certificates().is_some();
                                serve_connection(s, stream, client_cert, conn).await;
                            }
                            Err(_) => {
                                s.tls_failures.fetch_add(1, SeqCst);
                            }
                        },
                    }
                });
            }
        });
        Self {
            addr,
            tls: is_tls,
            state,
            count,
            task,
        }
    }

    /// `http://127.0.0.1:PORT` (`https://` for a TLS server) followed by `path`.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// TLS handshakes that failed so far.
    pub fn tls_failures(&self) -> u64 {
        self.state.tls_failures.load(SeqCst)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.state.accepted.load(SeqCst)
    }

    /// The numbers of the connections the client closed so far.
    pub fn closed(&self) -> Vec<u64> {
        self.state.closed.lock().expect("lock").clone()
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

/// Serves HTTP/1.1 requests on one connection (plain or TLS) until it closes.
async fn serve_connection<S>(s: Arc<State>, stream: S, client_cert: bool, conn: u64)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = s.clone();
    let svc = service_fn(move |req| handle(s.clone(), req, client_cert, conn));
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .await;
    state.closed.lock().expect("lock").push(conn);
    state.count.send_modify(|_| {});
}

async fn handle(
    s: Arc<State>,
    req: Request<Incoming>,
    client_cert: bool,
    conn: u64,
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
        client_cert,
        conn,
    });
    s.count.send_modify(|n| *n += 1);
    let mut resp = Response::new(Full::new(Bytes::from_static(b"{}")));
    *resp.status_mut() = status;
    Ok(resp)
}
