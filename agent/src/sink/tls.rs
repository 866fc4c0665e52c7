//! TLS client settings shared by the sinks that take `ca`, `cert` and `key` (`mqtt` for
//! `mqtts://` and `wss://`, `http` for `https://`): rustls on the ring provider, with the
//! spec's CA (or the system's roots) and an optional client certificate. The files are
//! read on the agent when a shard is prepared; an error names the field, so the shard is
//! refused with a reason the user can act on.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::sink::SinkError;

fn err(field: &str, path: &str, what: impl std::fmt::Display) -> SinkError {
    SinkError(format!(
        "sink.{field}: {path}: {what} (the file must be readable on the agent)"
    ))
}

fn certs(field: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, SinkError> {
    let v = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(field, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(field, path, e))?;
    if v.is_empty() {
        return Err(err(field, path, "no PEM certificate in it"));
    }
    Ok(v)
}

/// A rustls client configuration for the spec's TLS files: only the `ca` file's
/// certificates are trusted when it is given, the system's roots otherwise; `cert` and
/// `key` (both or neither, checked at deploy) are the client certificate. No ALPN.
pub fn client_config(
    ca: Option<&str>,
    cert: Option<&str>,
    key: Option<&str>,
) -> Result<ClientConfig, SinkError> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            for c in certs("ca", path)? {
                roots.add(c).map_err(|e| err("ca", path, e))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(SinkError(
                    "sink.ca: no system CA certificates found on the agent: give the sink a CA file (--ca for mqtt, --http-ca for http, `ca:` in a fleet file)".into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SinkError(format!("TLS setup: {e}")))?
        .with_root_certificates(roots);
    match (cert, key) {
        (Some(cert), Some(key)) => {
            let chain = certs("cert", cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| err("key", key, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| SinkError(format!("sink.cert/sink.key: {e}")))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// A tokio-rustls connector for the spec's TLS files (see [`client_config`]).
pub fn connector(
    ca: Option<&str>,
    cert: Option<&str>,
    key: Option<&str>,
) -> Result<TlsConnector, SinkError> {
    client_config(ca, cert, key).map(|c| TlsConnector::from(Arc::new(c)))
}
