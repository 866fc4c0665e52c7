//! KV watchers feeding the control loop. Each bucket is watched by a task of its own that
//! first sends a full snapshot, then every change. When the watch breaks (NATS restarted)
//! it starts again and sends a fresh snapshot, so the control loop never works from a view
//! with holes in it.

use std::time::Duration;

use async_nats::jetstream::kv::{Entry, Store};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Which bucket an event is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// Desired state.
    Fleets,
    /// Shard leases.
    Leases,
    /// Agents' heartbeats.
    Agents,
}

impl std::fmt::Display for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Fleets => "fleets",
            Self::Leases => "leases",
            Self::Agents => "agents",
        })
    }
}

/// What a watcher reports.
#[derive(Debug)]
pub enum WatchEvent {
    /// Every key's latest entry (deleted keys may appear with a delete operation).
    Snapshot(Vec<Entry>),
    /// One change after the snapshot.
    Update(Entry),
}

/// How long a replay may stay silent before the snapshot is taken as complete.
const REPLAY_IDLE: Duration = Duration::from_secs(2);

/// Starts a watcher of `store`.
pub fn spawn(
    bucket: Bucket,
    store: Store,
    tx: mpsc::Sender<(Bucket, WatchEvent)>,
    token: CancellationToken,
    tracker: &TaskTracker,
) {
    tracker.spawn(async move {
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                r = watch_once(bucket, &store, &tx) => {
                    if let Err(e) = r {
                        tracing::warn!(bucket = %bucket, error = %e, "KV watch broke; restarting");
                    }
                    if tx.is_closed() {
                        return;
                    }
                }
            }
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
}

async fn watch_once(
    bucket: Bucket,
    store: &Store,
    tx: &mpsc::Sender<(Bucket, WatchEvent)>,
) -> Result<(), String> {
    let values = tokio::time::timeout(Duration::from_secs(5), store.status())
        .await
        .map_err(|_| "status timed out".to_string())?
        .map_err(|e| e.to_string())?
        .values();
    let mut watch = tokio::time::timeout(Duration::from_secs(5), store.watch_with_history(">"))
        .await
        .map_err(|_| "watch timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let mut snapshot = Vec::new();
    if values > 0 {
        loop {
            match tokio::time::timeout(REPLAY_IDLE, watch.next()).await {
                Err(_) => break,
                Ok(None) => return Err("watch ended during replay".into()),
                Ok(Some(Err(e))) => return Err(e.to_string()),
                Ok(Some(Ok(entry))) => {
                    let last = entry.delta == 0;
                    snapshot.push(entry);
                    if last {
                        break;
                    }
                }
            }
        }
    }
    if tx
        .send((bucket, WatchEvent::Snapshot(snapshot)))
        .await
        .is_err()
    {
        return Ok(());
    }
    while let Some(item) = watch.next().await {
        let entry = item.map_err(|e| e.to_string())?;
        if tx.send((bucket, WatchEvent::Update(entry))).await.is_err() {
            return Ok(());
        }
    }
    Err("watch ended".into())
}
