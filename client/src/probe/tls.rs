//! TLS for the probe's `mqtts://` and `wss://` brokers: a rustls client config on the ring
//! provider the rest of the workspace uses, with `--ca` (or the system's roots) and an
//! optional client certificate (`--cert`, `--key`). The same choices as the agent's mqtt
//! sink (both build it with `pluribus_common::tls`), with errors that name the probe's
//! flags.

use std::path::Path;
use std::sync::Arc;

use pluribus_common::tls::{self, TlsNames};
use rustls::ClientConfig;

const NAMES: TlsNames = TlsNames {
    files: ["--ca", "--cert", "--key"],
    sep: " ",
    no_roots: "no system CA certificates found for the TLS broker: give --ca FILE (PEM)",
};

/// A client config trusting `ca` (PEM; the system's roots without it), presenting
/// `cert` and `key` (PEM) when both are given. Errors name `--ca`, `--cert` or `--key`.
pub fn client_config(
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Arc<ClientConfig>, String> {
    tls::client_config(ca, cert, key, NAMES)
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
