//! TLS client settings shared by the sinks that take `ca`, `cert` and `key` (`mqtt` for
//! `mqtts://` and `wss://`, `http` for `https://`, `fix` for `tls://`): rustls on the ring
//! provider, with the spec's CA (or the system's roots) and an optional client
//! certificate. A spec's author chooses these paths, so the files are read like `file:`
//! secrets: regular files under the agent's `--secrets-dir` only, size-capped, read off
//! the control loop ([`Secrets::tls_file`]). An error names the field and the agent flag,
//! so the shard is refused with a reason the user can act on.

use std::sync::Arc;

use pluribus_common::tls::{self, PemText, TlsNames};
use rustls::ClientConfig;
use tokio_rustls::TlsConnector;

use crate::secrets::Secrets;
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
    secrets: &Secrets,
) -> Result<ClientConfig, SinkError> {
    let read = |field: &str, path: Option<&str>| -> Result<Option<(String, String)>, SinkError> {
        path.map(|p| {
            secrets
                .tls_file(field, p)
                .map(|text| (p.to_string(), text))
                .map_err(SinkError)
        })
        .transpose()
    };
    let (ca, cert, key) = (
        read("sink.ca", ca)?,
        read("sink.cert", cert)?,
        read("sink.key", key)?,
    );
    fn pem(f: &Option<(String, String)>) -> Option<PemText<'_>> {
        f.as_ref().map(|(path, text)| PemText { path, text })
    }
    tls::client_config_from_pem(pem(&ca), pem(&cert), pem(&key), NAMES)
        .map(Arc::unwrap_or_clone)
        .map_err(|e| SinkError(format!("{e}: fix the file under the agent's --secrets-dir")))
}

/// A tokio-rustls connector for the spec's TLS files (see [`client_config`]).
pub fn connector(
    ca: Option<&str>,
    cert: Option<&str>,
    key: Option<&str>,
    secrets: &Secrets,
) -> Result<TlsConnector, SinkError> {
    client_config(ca, cert, key, secrets).map(|c| TlsConnector::from(Arc::new(c)))
}
