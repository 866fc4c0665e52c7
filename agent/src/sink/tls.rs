//! TLS client settings shared by the sinks that take `ca`, `cert` and `key` (`mqtt` for
//! `mqtts://` and `wss://`, `http` for `https://`): rustls on the ring provider, with the
//! spec's CA (or the system's roots) and an optional client certificate. The files are
//! read on the agent when a shard is prepared; an error names the field, so the shard is
//! refused with a reason the user can act on.

use std::path::Path;
use std::sync::Arc;

use pluribus_common::tls::{self, TlsNames};
use rustls::ClientConfig;
use tokio_rustls::TlsConnector;

use crate::sink::SinkError;

const NAMES: TlsNames = TlsNames {
    files: ["sink.ca", "sink.cert", "sink.key"],
    sep: ": ",
    no_roots: "sink.ca: no system CA certificates found on the agent: give the sink a CA file (--ca for mqtt, --http-ca for http, `ca:` in a fleet file)",
};

/// A rustls client configuration for the spec's TLS files: only the `ca` file's
/// certificates are trusted when it is given, the system's roots otherwise; `cert` and
/// `key` (both or neither, checked at deploy) are the client certificate. No ALPN.
pub fn client_config(
    ca: Option<&str>,
    cert: Option<&str>,
    key: Option<&str>,
) -> Result<ClientConfig, SinkError> {
    tls::client_config(
        ca.map(Path::new),
        cert.map(Path::new),
        key.map(Path::new),
        NAMES,
    )
    .map(Arc::unwrap_or_clone)
    .map_err(|e| {
        SinkError(format!(
            "{e}: TLS files are read on the agent: put the file at that path on every agent, \
             or fix the path in the fleet"
        ))
    })
}

/// A tokio-rustls connector for the spec's TLS files (see [`client_config`]).
pub fn connector(
    ca: Option<&str>,
    cert: Option<&str>,
    key: Option<&str>,
) -> Result<TlsConnector, SinkError> {
    client_config(ca, cert, key).map(|c| TlsConnector::from(Arc::new(c)))
}
