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

/// A PEM file's contents, read by the caller, and the path it was read from (for errors).
#[derive(Debug, Clone, Copy)]
pub struct PemText<'a> {
    /// Where it was read from.
    pub path: &'a str,
    /// The PEM text.
    pub text: &'a str,
}

impl TlsNames {
    fn certs_text(&self, i: usize, f: PemText<'_>) -> Result<Vec<CertificateDer<'static>>, String> {
        let path = Path::new(f.path);
        let v = CertificateDer::pem_slice_iter(f.text.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(i, path, e))?;
        if v.is_empty() {
            return Err(self.err(i, path, "no PEM certificate in it"));
        }
        Ok(v)
    }
}

/// Like [`client_config`], from PEM texts the caller read (the agent reads TLS files from
/// its secrets directory only, off its control loop).
pub fn client_config_from_pem(
    ca: Option<PemText<'_>>,
    cert: Option<PemText<'_>>,
    key: Option<PemText<'_>>,
    names: TlsNames,
) -> Result<Arc<ClientConfig>, String> {
    let [_, cert_name, key_name] = names.files;
    let roots = match ca {
        Some(f) => Some(names.certs_text(0, f)?),
        None => None,
    };
    let client = match (cert, key) {
        (Some(c), Some(k)) => {
            let chain = names.certs_text(1, c)?;
            let key = PrivateKeyDer::from_pem_slice(k.text.as_bytes())
                .map_err(|e| names.err(2, Path::new(k.path), e))?;
            Some((chain, key))
        }
        (None, None) => None,
        _ => {
            return Err(format!(
                "{cert_name} and {key_name} go together: give both or neither"
            ))
        }
    };
    build(roots, client, names)
}

/// A client configuration trusting `roots` (the system's without them), presenting
/// `client` if given.
fn build(
    roots: Option<Vec<CertificateDer<'static>>>,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    names: TlsNames,
) -> Result<Arc<ClientConfig>, String> {
    let [ca_name, cert_name, key_name] = names.files;
    let mut store = RootCertStore::empty();
    match roots {
        Some(certs) => {
            for c in certs {
                store.add(c).map_err(|e| format!("{ca_name}: {e}"))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = store.add(c);
            }
            if store.is_empty() {
                return Err(names.no_roots.to_string());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(store);
    let config = match client {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("{cert_name}/{key_name}: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
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
