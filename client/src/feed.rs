//! Following the keys of a KV bucket: the latest value of every matching key, then every
//! change. It is the consumer `kv::Store::watch_with_history` creates (an ordered push
//! consumer, last value per key), with one thing the library's `Watch` keeps private: whether
//! the initial values have all arrived, which tells an empty key range from a slow one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use async_nats::jetstream::consumer::{push, DeliverPolicy, ReplayPolicy};
use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::StreamExt;
use pluribus_common::kv::is_put;

/// How long without a message before the initial values count as delivered anyway (values
/// can expire between the consumer's creation and their delivery, and then the last one
/// never arrives).
const IDLE_CAUGHT_UP: Duration = Duration::from_secs(2);

/// One change of one key.
#[derive(Debug, Clone)]
pub struct Change {
    /// The key, without the bucket prefix.
    pub key: String,
    /// The value (empty for deletes).
    pub value: Bytes,
    /// True for a put; false for a delete, purge or expiry.
    pub live: bool,
    /// When the value expires (Unix ms, on this machine's clock), for a put with a per-key
    /// TTL (`Nats-TTL`).
    pub expires_ms: Option<u64>,
    /// When the server stored it (Unix ms, on this machine's clock: the server's stamp
    /// moved by the offset between the two clocks), if known.
    pub stored_ms: Option<u64>,
}

/// The current value of a key, and when it expires if it has a TTL.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The value.
    pub value: Bytes,
    /// When it expires (Unix ms, on this machine's clock), if it has a per-key TTL.
    pub expires_ms: Option<u64>,
    /// When the server stored it (Unix ms, on this machine's clock), if known.
    pub stored_ms: Option<u64>,
}

/// A follower of the keys matching a filter in one bucket.
pub struct KvFeed {
    messages: push::Ordered,
    prefix: String,
    caught_up: bool,
    last_message: Instant,
    /// The server's clock minus this machine's (ms), learned when the consumer was created.
    clock_offset_ms: i64,
}

/// What a feed that cannot start says: on a cluster, most often a stream without a
/// leader yet.
fn unreadable(bucket: &str) -> String {
    format!(
        "cannot read KV bucket {bucket} (JetStream may be electing a leader after losing a \
         server: try again in a few seconds)"
    )
}

impl KvFeed {
    /// Starts following `filter` (a key, or a pattern like `fleet.*` or `>`) in `store`.
    pub async fn open(
        client: &async_nats::Client,
        store: &kv::Store,
        filter: &str,
    ) -> Result<Self> {
        let before_ms = pluribus_common::time::now_ms();
        let consumer = store
            .stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: client.new_inbox(),
                description: Some("pluribusctl kv follower".into()),
                filter_subject: format!("{}{filter}", store.prefix),
                replay_policy: ReplayPolicy::Instant,
                deliver_policy: DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .with_context(|| unreadable(&store.name))?;
        let after_ms = pluribus_common::time::now_ms();
        let info = consumer.cached_info();
        let caught_up = info.num_pending == 0;
        // The server stamped the consumer's creation between our request and its reply.
        let clock_offset_ms = unix_ms(info.created.unix_timestamp_nanos()).map_or(0, |server| {
            server as i64 - (before_ms / 2 + after_ms / 2) as i64
        });
        let messages = consumer
            .messages()
            .await
            .with_context(|| unreadable(&store.name))?;
        Ok(Self {
            messages,
            prefix: store.prefix.clone(),
            caught_up,
            last_message: Instant::now(),
            clock_offset_ms,
        })
    }

    /// True once every key's value at the start has been delivered.
    pub fn caught_up(&self) -> bool {
        self.caught_up
    }

    /// Counts the initial values as delivered after a quiet spell; call it now and then.
    pub fn check_idle(&mut self) {
        if !self.caught_up && self.last_message.elapsed() >= IDLE_CAUGHT_UP {
            tracing::debug!(
                "kv follower: no message for {IDLE_CAUGHT_UP:?}, taking it as caught up"
            );
            self.caught_up = true;
        }
    }

    /// The next change; `None` when the feed ended (the connection closed). Cancel-safe.
    pub async fn next(&mut self) -> Result<Option<Change>> {
        let Some(message) = self.messages.next().await else {
            return Ok(None);
        };
        let message = message.context("lost the KV watch")?;
        self.last_message = Instant::now();
        let mut published_ms = None;
        if let Ok(info) = message.info() {
            if info.pending == 0 {
                self.caught_up = true;
            }
            published_ms = unix_ms(info.published.unix_timestamp_nanos())
                .map(|at| at.saturating_add_signed(-self.clock_offset_ms));
        }
        let key = message
            .subject
            .as_str()
            .strip_prefix(&self.prefix)
            .unwrap_or(message.subject.as_str())
            .to_string();
        let ttl_ms = message.headers.as_ref().and_then(ttl_ms);
        Ok(Some(Change {
            key,
            value: message.payload.clone(),
            live: is_put(message.headers.as_ref()),
            expires_ms: published_ms.zip(ttl_ms).map(|(at, ttl)| at + ttl),
            stored_ms: published_ms,
        }))
    }

    /// Reads the current value of every matching key, then stops.
    pub async fn snapshot(
        client: &async_nats::Client,
        store: &kv::Store,
        filter: &str,
    ) -> Result<BTreeMap<String, Bytes>> {
        let entries = Self::snapshot_entries(client, store, filter).await?;
        Ok(entries.into_iter().map(|(k, e)| (k, e.value)).collect())
    }

    /// Reads the current value of every matching key with its expiry, then stops.
    pub async fn snapshot_entries(
        client: &async_nats::Client,
        store: &kv::Store,
        filter: &str,
    ) -> Result<BTreeMap<String, Entry>> {
        let mut feed = Self::open(client, store, filter).await?;
        let mut out = BTreeMap::new();
        while !feed.caught_up() {
            match tokio::time::timeout(IDLE_CAUGHT_UP, feed.next()).await {
                Ok(Ok(Some(c))) => {
                    if c.live {
                        let e = Entry {
                            value: c.value,
                            expires_ms: c.expires_ms,
                            stored_ms: c.stored_ms,
                        };
                        out.insert(c.key, e);
                    } else {
                        out.remove(&c.key);
                    }
                }
                Ok(Ok(None)) | Err(_) => break,
                Ok(Err(e)) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// A server timestamp (Unix ns) in Unix ms (None before 1970).
fn unix_ms(unix_ns: i128) -> Option<u64> {
    u64::try_from(unix_ns / 1_000_000).ok()
}

/// A message's per-key TTL (`Nats-TTL`: `10s`, `1m`, or seconds), in ms; None without one
/// (or `never`).
fn ttl_ms(headers: &async_nats::HeaderMap) -> Option<u64> {
    let v = headers.get("Nats-TTL")?.as_str().trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs.saturating_mul(1000));
    }
    humantime::parse_duration(v)
        .ok()
        .map(|d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::header::NATS_MARKER_REASON;

    #[test]
    fn ttls_from_headers() {
        let mut h = async_nats::HeaderMap::new();
        assert_eq!(ttl_ms(&h), None);
        h.insert("Nats-TTL", "10s");
        assert_eq!(ttl_ms(&h), Some(10_000));
        h.insert("Nats-TTL", "7");
        assert_eq!(ttl_ms(&h), Some(7_000));
        h.insert("Nats-TTL", "never");
        assert_eq!(ttl_ms(&h), None);
    }

    #[test]
    fn operations_from_headers() {
        assert!(is_put(None));
        let mut h = async_nats::HeaderMap::new();
        assert!(is_put(Some(&h)));
        h.insert("KV-Operation", "DEL");
        assert!(!is_put(Some(&h)));
        let mut h = async_nats::HeaderMap::new();
        h.insert("KV-Operation", "PURGE");
        assert!(!is_put(Some(&h)));
        let mut h = async_nats::HeaderMap::new();
        h.insert(NATS_MARKER_REASON, "MaxAge");
        assert!(!is_put(Some(&h)));
    }
}
