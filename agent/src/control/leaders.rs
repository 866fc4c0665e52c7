//! Keeping the two live buckets' stream leaders on different NATS nodes.
//!
//! An agent's two liveness keys (`live_pair.rs`) ride through the death of a NATS node
//! only if that node did not lead both streams: while JetStream elects a new leader for a
//! stream, nothing can be written to it. Nothing in JetStream's placement keeps two
//! streams' leaders apart, so the reconcile leader checks at each sweep and, when both
//! streams have the same leader, asks the second one's to step down: JetStream then elects
//! another of its replicas, necessarily on another node. On a single server (or with
//! `--kv-replicas 1`) there is nothing to do.

use std::time::Duration;

use async_nats::jetstream::{self, kv::Store};

/// How long each request may take (the sweep runs on the control loop).
const ASK: Duration = Duration::from_secs(2);

/// The leader of `store`'s stream, fresh from the server (`None`: unknown, not
/// replicated, or no leader right now).
async fn leader(store: &Store) -> Option<String> {
    let mut stream = store.stream.clone();
    let info = tokio::time::timeout(ASK, stream.info()).await.ok()?.ok()?;
    if info.config.num_replicas < 2 {
        return None;
    }
    info.cluster.as_ref()?.leader.clone()
}

/// When both live buckets' streams have the same leader, asks the second one's leader to
/// step down. Returns the node it moved away from, if it asked and was answered yes.
pub(super) async fn keep_apart(js: &jetstream::Context, live: &[Store; 2]) -> Option<String> {
    let (a, b) = futures::future::join(leader(&live[0]), leader(&live[1])).await;
    let node = a.filter(|a| b.as_ref() == Some(a))?;
    let subject = format!("STREAM.LEADER.STEPDOWN.{}", live[1].stream_name);
    let body = serde_json::json!({});
    let ask = js.request::<_, _, serde_json::Value>(subject, &body);
    match tokio::time::timeout(ASK, ask).await {
        Ok(Ok(reply)) if reply["success"] == true => {
            tracing::info!(node = %node, "both liveness streams were led by one NATS node: moved the second one's leader");
            Some(node)
        }
        Ok(Ok(reply)) => {
            tracing::warn!(node = %node, %reply, "both liveness streams are led by one NATS node, and its leader would not step down (does this agent's NATS user allow $JS.API.STREAM.LEADER.STEPDOWN on it? see deploy/nats/roles.conf)");
            None
        }
        Ok(Err(e)) => {
            tracing::warn!(node = %node, error = %e, "both liveness streams are led by one NATS node; asking the second one's leader to step down failed");
            None
        }
        Err(_) => None,
    }
}
