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
    /// Agents' peer records (what they decide on about each other).
    Peers,
}

impl std::fmt::Display for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Fleets => "fleets",
            Self::Leases => "leases",
            Self::Peers => "peers",
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

/// How long a replay may stay silent before it counts as broken (the watch starts again).
const REPLAY_IDLE: Duration = Duration::from_secs(2);

/// What a watcher needs to create its namespace's buckets again, when JetStream comes
/// back without them (a server restarted on a wiped store).
#[derive(Debug, Clone)]
pub struct Reopen {
    /// JetStream on the agent's connection.
    pub js: async_nats::jetstream::Context,
    /// The namespace.
    pub ns: pluribus_common::subjects::Namespace,
    /// `--kv-replicas`.
    pub replicas: usize,
    /// Notified when the buckets were created again: every watcher starts over (a watch
    /// of a stream that vanished waits forever without an error).
    pub rewatch: std::sync::Arc<tokio::sync::Notify>,
}

impl Reopen {
    /// The namespace's buckets that JetStream says do not exist (a bucket that cannot be
    /// read for another reason, a timeout or no leader, is not counted as missing).
    async fn missing(&self) -> Vec<String> {
        let mut out = Vec::new();
        for name in super::stores::Stores::names(&self.ns) {
            let get = self.js.get_key_value(name.clone());
            if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(5), get).await {
                if pluribus_common::kv::is_not_found(&e) {
                    out.push(name);
                }
            }
        }
        out
    }

    /// Creates the namespace's buckets that are gone (only those: one that cannot be read
    /// for another reason is left alone), then makes every watcher start over.
    pub async fn recreate(&self) {
        // Only a bucket that is really gone makes the watchers start over: a watch that broke
        // because a NATS node died (the stream is still there, electing a leader) must not
        // restart every watch, whose new snapshot could come back empty mid-election and
        // stop every shard as if its fleet were deleted.
        let missing = self.missing().await;
        if missing.is_empty() {
            return;
        }
        let open = super::stores::Stores::open(&self.js, &self.ns, self.replicas);
        match tokio::time::timeout(Duration::from_secs(10), open).await {
            Ok(Ok(_)) => {
                tracing::warn!(
                    buckets = %missing.join(","),
                    "KV buckets were gone (JetStream lost its state?): created them again; desired state starts empty"
                );
                self.rewatch.notify_waiters();
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "buckets not reopened"),
            Err(_) => tracing::debug!("reopening buckets timed out"),
        }
    }
}

/// Starts a watcher of `store`.
pub fn spawn(
    bucket: Bucket,
    store: Store,
    reopen: Reopen,
    tx: mpsc::Sender<(Bucket, WatchEvent)>,
    token: CancellationToken,
    tracker: &TaskTracker,
) {
    tracker.spawn(async move {
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = reopen.rewatch.notified() => {
                    tracing::info!(bucket = %bucket, "buckets created again; watching from the start");
                    continue;
                }
                r = watch_once(bucket, &store, &tx) => {
                    if let Err(e) = r {
                        tracing::warn!(bucket = %bucket, error = %e, "KV watch broke; restarting");
                        reopen.recreate().await;
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

/// How many values the bucket holds now, asked of the server. `Store::status` will not do:
/// it answers from the stream info read when the bucket was opened, so an agent that
/// started on an empty bucket would take every later snapshot for an empty one. A stream
/// without a leader (a cluster node just died) is answered from its config alone, with no
/// state: that is an error too, not an empty bucket.
async fn values_now(store: &Store) -> Result<u64, String> {
    let mut stream = store.stream.clone();
    let info = tokio::time::timeout(Duration::from_secs(5), stream.info())
        .await
        .map_err(|_| "stream info timed out".to_string())?
        .map_err(|e| e.to_string())?;
    if info
        .cluster
        .as_ref()
        .is_some_and(|c| c.raft_group.is_some() && c.leader.is_none())
    {
        return Err("the bucket's stream has no leader yet".into());
    }
    Ok(info.state.messages)
}

async fn watch_once(
    bucket: Bucket,
    store: &Store,
    tx: &mpsc::Sender<(Bucket, WatchEvent)>,
) -> Result<(), String> {
    let values = values_now(store).await?;
    let mut watch = tokio::time::timeout(Duration::from_secs(5), store.watch_with_history(">"))
        .await
        .map_err(|_| "watch timed out".to_string())?
        .map_err(|e| e.to_string())?;
    // The snapshot is complete when the entry with nothing pending after it arrives. A
    // replay that goes quiet before that is not taken for the whole bucket (a snapshot with
    // holes would stop the shards of every fleet missing from it): the watch starts again.
    let mut snapshot = Vec::new();
    if values > 0 {
        loop {
            match tokio::time::timeout(REPLAY_IDLE, watch.next()).await {
                Err(_) => {
                    return Err(format!(
                        "the replay stopped after {} of the bucket's values",
                        snapshot.len()
                    ))
                }
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
