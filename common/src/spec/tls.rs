//! The `ca`, `cert` and `key` options that the mqtt and http sinks share.

use crate::SpecError;

/// The TLS files of a sink, as given.
pub(super) struct TlsFiles<'a> {
    pub ca: &'a Option<String>,
    pub cert: &'a Option<String>,
    pub key: &'a Option<String>,
}

impl TlsFiles<'_> {
    /// Paths (not empty), only when the sink speaks TLS (`tls`; else `not_tls` says how to
    /// make it), and `cert` with `key` (`pair` names the flags).
    pub(super) fn check(&self, tls: bool, not_tls: &str, pair: &str) -> Result<(), SpecError> {
        for (field, v) in [
            ("sink.ca", self.ca),
            ("sink.cert", self.cert),
            ("sink.key", self.key),
        ] {
            match v {
                Some(p) if p.is_empty() => {
                    return Err(SpecError::new(field, "must be a file path on the agent"))
                }
                Some(_) if !tls => return Err(SpecError::new(field, not_tls)),
                _ => {}
            }
        }
        if self.cert.is_some() != self.key.is_some() {
            let missing = if self.cert.is_some() {
                "sink.key"
            } else {
                "sink.cert"
            };
            return Err(SpecError::new(
                missing,
                format!("a client certificate needs both {pair}"),
            ));
        }
        Ok(())
    }
}
