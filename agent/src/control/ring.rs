//! Following a few agents' liveness keys, not everyone's (issue 9, section 8).
//!
//! Each agent renews its liveness keys (`<agent id>` in each of the two live buckets,
//! per-key TTL) about once a second. Nobody follows all of them: every agent watches its
//! own key (the server's timestamps on it give the agent the server's clock) and those of
//! the [`WATCHED`] agents before it in the ring of live agents ordered by id, in both
//! buckets, so each key has that many watchers and each agent receives a constant number
//! of renewals whatever the cluster's size. What everybody follows instead is each agent's
//! epoch record (`_live.<id>` in the leases bucket), written once per epoch. When a watched
//! key expires, its watchers check both of that agent's keys on their streams' leaders and,
//! once both are gone, delete its epoch record (with a revision check, see
//! `Control::on_ring`); every agent then treats that agent's leases as void, from its lease
//! watch, as before.
//!
//! One watch per bucket, each in a task of its own: while one bucket's stream elects a
//! leader, the other's watch goes on. A watch starts again (with the keys' last values)
//! whenever the set of watched agents changes, NATS restarts, or the buckets were made
//! again.

use std::time::Duration;

use async_nats::jetstream::kv::{Entry, Store};
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How many agents before it in the ring each agent watches (so how many watchers each
/// liveness key has).
pub(super) const WATCHED: usize = 2;

/// What the ring watch follows: this agent's key and its predecessors'.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Watched {
    /// Changes with every new set.
    pub generation: u64,
    /// Agent ids (this agent's first).
    pub ids: Vec<String>,
}

/// One liveness entry (a renewal, or the server's marker when a key expired or was
/// deleted), from the watch of `generation` of live bucket `bucket` (0 or 1).
#[derive(Debug)]
pub(super) struct RingEntry {
    pub generation: u64,
    pub bucket: usize,
    pub entry: Entry,
}

/// The agents before `me` in the ring of `ids` (sorted, cyclic), at most [`WATCHED`].
pub(super) fn predecessors<'a>(me: &str, ids: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut all: Vec<&String> = ids.filter(|id| id.as_str() != me).collect();
    all.sort();
    all.dedup();
    let n = all.len();
    if n == 0 {
        return Vec::new();
    }
    // The first id after `me` in sorted order; those before it, going backwards, are the
    // predecessors.
    let after = all.partition_point(|id| id.as_str() < me);
    (1..=WATCHED.min(n))
        .map(|i| all[(after + n - i) % n].clone())
        .collect()
}

/// Starts the ring watch on `store`, live bucket number `bucket`.
pub(super) fn spawn(
    bucket: usize,
    store: Store,
    mut set: watch::Receiver<Watched>,
    reopen: super::watch::Reopen,
    tx: mpsc::Sender<RingEntry>,
    token: CancellationToken,
    tracker: &TaskTracker,
) {
    tracker.spawn(async move {
        loop {
            let current = set.borrow_and_update().clone();
            if current.ids.is_empty() {
                tokio::select! {
                    _ = token.cancelled() => return,
                    r = set.changed() => {
                        if r.is_err() {
                            return;
                        }
                    }
                }
                continue;
            }
            tokio::select! {
                _ = token.cancelled() => return,
                r = set.changed() => {
                    if r.is_err() {
                        return;
                    }
                    continue;
                }
                _ = reopen.rewatch.notified() => continue,
                r = watch_once(bucket, &store, &current, &tx) => {
                    if let Err(e) = r {
                        tracing::warn!(bucket = %store.name, error = %e, "liveness watch broke; restarting");
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

async fn watch_once(
    bucket: usize,
    store: &Store,
    current: &Watched,
    tx: &mpsc::Sender<RingEntry>,
) -> Result<(), String> {
    let watch = store.watch_many_with_history(current.ids.iter().map(String::as_str));
    let mut watch = tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .map_err(|_| "watch timed out".to_string())?
        .map_err(|e| e.to_string())?;
    while let Some(item) = watch.next().await {
        let entry = item.map_err(|e| e.to_string())?;
        let e = RingEntry {
            generation: current.generation,
            bucket,
            entry,
        };
        if tx.send(e).await.is_err() {
            return Ok(());
        }
    }
    Err("watch ended".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn each_agent_watches_the_two_before_it_and_each_is_watched_twice() {
        let all = ids(&["a", "b", "c", "d", "e"]);
        assert_eq!(predecessors("c", all.iter()), ids(&["b", "a"]));
        assert_eq!(predecessors("a", all.iter()), ids(&["e", "d"]));
        assert_eq!(predecessors("b", all.iter()), ids(&["a", "e"]));
        let mut watchers = std::collections::BTreeMap::<String, u32>::new();
        for me in &all {
            for p in predecessors(me, all.iter()) {
                *watchers.entry(p).or_default() += 1;
            }
        }
        assert!(watchers.values().all(|n| *n == 2), "{watchers:?}");
    }

    #[test]
    fn small_rings_and_unknown_selves() {
        assert!(predecessors("a", ids(&["a"]).iter()).is_empty());
        assert_eq!(predecessors("a", ids(&["a", "b"]).iter()), ids(&["b"]));
        // An agent not (yet) in the ring watches the two before its place.
        assert_eq!(
            predecessors("bb", ids(&["a", "b", "c"]).iter()),
            ids(&["b", "a"])
        );
    }
}
