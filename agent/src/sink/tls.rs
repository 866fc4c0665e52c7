//! TLS for `mqtts://` brokers: rustls (ring) through tokio-rustls, with the spec's CA (or
//! the system's roots) and an optional client certificate. Built once per sink.

use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
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

/// A connector for the spec's TLS settings.
pub fn connector(
    ca: Option<&str>,
    cert: Option<&str>,
    key: Option<&str>,
) -> Result<TlsConnector, SinkError> {
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
                    "sink.ca: no system CA certificates found on the agent: give --ca FILE".into(),
                ));
            }
        }
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SinkError(format!("TLS setup: {e}")))?
        .with_root_certificates(roots);
    let config = match (cert, key) {
        (Some(cert), Some(key)) => {
            let chain = certs("cert", cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| err("key", key, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| SinkError(format!("sink.cert/sink.key: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(TlsConnector::from(Arc::new(config)))
}
