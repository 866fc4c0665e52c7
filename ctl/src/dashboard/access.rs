//! Whether the dashboard's NATS credential may change the cluster (the operator role) or
//! only read it (a viewer): controls are shown only for the first.
//!
//! The check writes nothing: it asks JetStream to update a key of the fleets bucket only
//! if the key's last revision is u64::MAX, which no key has. An operator gets "wrong last
//! sequence" back; a viewer's publish is refused by the server with a permissions
//! violation, which async-nats reports as a server error event.

use std::time::Duration;

use async_nats::jetstream::kv::UpdateErrorKind;
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::cmd::Ctx;

/// The key the check names (never written).
const PROBE_KEY: &str = "pluribus-dashboard-permission-check";

/// How long the check waits for either answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the page may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Access {
    /// Controls are hidden and refused.
    pub read_only: bool,
    /// Why, for the page's banner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

impl Access {
    /// Controls allowed.
    pub fn operator() -> Self {
        Self {
            read_only: false,
            why: None,
        }
    }

    /// Read-only, saying why.
    pub fn read_only(why: impl Into<String>) -> Self {
        Self {
            read_only: true,
            why: Some(why.into()),
        }
    }
}

/// Permission violations the server reported on this connection.
pub type Violations = broadcast::Sender<String>;

/// True when a server error is a permissions violation.
pub fn is_violation(message: &str) -> bool {
    message
        .to_ascii_lowercase()
        .contains("permissions violation")
}

/// Connection options that forward the server's permission violations to `tx`.
pub fn tune(
    tx: Violations,
) -> impl FnOnce(async_nats::ConnectOptions) -> async_nats::ConnectOptions {
    move |o| {
        o.event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(async_nats::ServerError::Other(m)) = event {
                    if is_violation(&m) {
                        tracing::warn!(error = %m, "NATS refused an operation");
                        let _ = tx.send(m);
                    }
                }
            }
        })
    }
}

/// Checks whether the credential may write the fleets bucket.
pub async fn probe(ctx: &Ctx, violations: &Violations) -> Access {
    let mut seen = violations.subscribe();
    let fleets = ctx.buckets.fleets.name.clone();
    let update = ctx.buckets.fleets.update(PROBE_KEY, Bytes::new(), u64::MAX);
    let refused = async {
        loop {
            match seen.recv().await {
                Ok(m) if m.contains(&fleets) || m.contains("$KV") => return m,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    };
    let outcome = tokio::time::timeout(PROBE_TIMEOUT, async {
        tokio::select! {
            r = update => Ok(r),
            m = refused => Err(m),
        }
    })
    .await;
    match outcome {
        Ok(Ok(Err(e))) if e.kind() == UpdateErrorKind::WrongLastRevision => Access::operator(),
        Ok(Ok(Ok(_))) => {
            // Not expected (no key has that revision); undo it and allow.
            let _ = ctx.buckets.fleets.purge(PROBE_KEY).await;
            Access::operator()
        }
        Ok(Err(m)) => Access::read_only(format!(
            "read-only: this dashboard's NATS credential may not change the cluster ({m}); connect with an operator credential for controls"
        )),
        Ok(Ok(Err(e))) => Access::read_only(format!(
            "read-only: cannot tell whether this dashboard's NATS credential may change the cluster ({e})"
        )),
        Err(_) => Access::read_only(format!(
            "read-only: NATS did not answer a permission check within {}s; restart the dashboard to check again",
            PROBE_TIMEOUT.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_are_told_from_other_server_errors() {
        assert!(is_violation(
            "Permissions Violation for Publish to \"$KV.pluribus_fleets.x\""
        ));
        assert!(is_violation("permissions violation for subscription"));
        assert!(!is_violation("maximum connections exceeded"));
    }
}
