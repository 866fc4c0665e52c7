//! TLS client settings from PEM files (feature `tls`): rustls on the ring provider the
//! workspace uses, trusting a CA file (or the system's roots without one), with an optional
//! client certificate. The agent's sinks (`ca`, `cert`, `key`) and pluribusctl's probe
//! (`--ca`, `--cert`, `--key`) use it; errors name the option as the caller calls it.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

/// How errors name the three files, e.g. `["sink.ca", "sink.cert", "sink.key"]` or
/// `["--ca", "--cert", "--key"]`, and what to say when there is no CA at all.
#[derive(Debug, Clone, Copy)]
pub struct TlsNames {
    /// The CA file, the certificate, the key.
    pub files: [&'static str; 3],
    /// Between a name and a file's path in errors: `": "` (`sink.ca: /x.pem: ...`) or
    /// `" "` (`--ca /x.pem: ...`).
    pub sep: &'static str,
    /// The advice when neither a CA file nor system roots exist.
    pub no_roots: &'static str,
}

impl TlsNames {
    fn err(&self, i: usize, path: &Path, what: impl std::fmt::Display) -> String {
        format!("{}{}{}: {what}", self.files[i], self.sep, path.display())
    }

    fn certs(&self, i: usize, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
        let v = CertificateDer::pem_file_iter(path)
            .map_err(|e| self.err(i, path, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(i, path, e))?;
        if v.is_empty() {
            return Err(self.err(i, path, "no PEM certificate in it"));
        }
        Ok(v)
    }
}

/// A client configuration trusting `ca` (the system's roots without it) and presenting
/// `cert` and `key` when both are given (one without the other is an error).
pub fn client_config(
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
    names: TlsNames,
) -> Result<Arc<ClientConfig>, String> {
    let [_, cert_name, key_name] = names.files;
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            for c in names.certs(0, path)? {
                roots.add(c).map_err(|e| names.err(0, path, e))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(names.no_roots.to_string());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots);
    let config = match (cert, key) {
        (Some(cert), Some(key)) => {
            let chain = names.certs(1, cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| names.err(2, key, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("{cert_name}/{key_name}: {e}"))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(format!(
                "{cert_name} and {key_name} go together: give both or neither"
            ))
        }
    };
    Ok(Arc::new(config))
}
