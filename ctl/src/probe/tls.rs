//! TLS for the probe's `mqtts://` and `wss://` brokers: a rustls client config on the ring
//! provider the rest of the workspace uses, with `--ca` (or the system's roots) and an
//! optional client certificate (`--cert`, `--key`). The same choices as the agent's mqtt
//! sink (agent/src/sink/mqtt/tls.rs), with errors that name the probe's flags.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

fn err(flag: &str, path: &Path, what: impl std::fmt::Display) -> String {
    format!("{flag} {}: {what}", path.display())
}

fn certs(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let v = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(flag, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(flag, path, e))?;
    if v.is_empty() {
        return Err(err(flag, path, "no PEM certificate in it"));
    }
    Ok(v)
}

/// A client config trusting `ca` (PEM; the system's roots without it), presenting
/// `cert` and `key` (PEM) when both are given. Errors name `--ca`, `--cert` or `--key`.
pub fn client_config(
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            for c in certs("--ca", path)? {
                roots.add(c).map_err(|e| err("--ca", path, e))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(
                    "no system CA certificates found for the TLS broker: give --ca FILE (PEM)"
                        .into(),
                );
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
            let chain = certs("--cert", cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| err("--key", key, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("--cert/--key: {e}"))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("--cert and --key go together: give both or neither".into()),
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_files_are_named_by_their_flag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        let e = client_config(Some(&missing), None, None).err();
        assert!(
            e.as_deref()
                .is_some_and(|e| e.starts_with("--ca ") && e.contains("missing.pem")),
            "{e:?}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let e = client_config(Some(&empty), None, None).err();
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("no PEM certificate")),
            "{e:?}"
        );
        let e = client_config(None, Some(&missing), None).err();
        assert!(e.as_deref().is_some_and(|e| e.contains("--key")), "{e:?}");
    }
}
