//! The agent's HTTP clients: hyper's pooled client, HTTP/1.1, TLS by rustls on the ring
//! provider (the one async-nats already uses). One client with the system's CA roots is
//! shared by every http sink without TLS files; a sink with `ca`/`cert`/`key` gets a
//! client built from them ([`with_tls`]), which the factory shares among the sinks with
//! the same files.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::builderstates::WantsSchemes;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

type Connector = HttpsConnector<HttpConnector>;

/// An http sink's client: one connection pool, and the connector (TLS set up) that makes
/// clients of the same kind with a pool of their own ([`HttpClient::own`]).
pub struct HttpClient {
    pool: Client<Connector, Full<Bytes>>,
    connector: Connector,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").finish_non_exhaustive()
    }
}

impl HttpClient {
    fn new(connector: Connector, idle_per_host: usize) -> Self {
        let pool = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(idle_per_host)
            .pool_timer(TokioTimer::new())
            .build(connector.clone());
        Self { pool, connector }
    }

    /// Sends one request.
    pub fn request(
        &self,
        r: hyper::Request<Full<Bytes>>,
    ) -> hyper_util::client::legacy::ResponseFuture {
        self.pool.request(r)
    }

    /// A client on the same TLS setup with a pool of its own, keeping at most one idle
    /// connection: one device's connection, which dropping the client closes.
    pub fn own(&self) -> HttpClient {
        Self::new(self.connector.clone(), 1)
    }
}

/// How long an idle connection stays in the pool.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// Builds the shared client, on the system's CA roots. Without system CA certificates it
/// still sends to `http://` URLs and says why `https://` ones fail.
pub fn build() -> Result<HttpClient, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = match HttpsConnectorBuilder::new().with_provider_and_native_roots(provider.clone()) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(
                error = %e,
                "http sink: no system CA certificates found; https URLs will fail to verify (install the ca-certificates package, or give the sink --http-ca)"
            );
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("http sink: cannot set up TLS: {e}"))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            HttpsConnectorBuilder::new().with_tls_config(config)
        }
    };
    Ok(finish(tls))
}

/// Builds a client on `config` (a sink's CA and client certificate, from
/// [`crate::sink::tls::client_config`], which sets no ALPN protocols).
pub fn with_tls(config: rustls::ClientConfig) -> HttpClient {
    finish(HttpsConnectorBuilder::new().with_tls_config(config))
}

fn finish(tls: HttpsConnectorBuilder<WantsSchemes>) -> HttpClient {
    let mut http = HttpConnector::new();
    // The https connector decides the scheme; the inner one must accept https:// too.
    http.enforce_http(false);
    http.set_nodelay(true);
    let connector = tls.https_or_http().enable_http1().wrap_connector(http);
    HttpClient::new(connector, usize::MAX)
}
