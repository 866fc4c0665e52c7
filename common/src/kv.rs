//! The three KV buckets, and the write the leases rest on: a put that checks the key's
//! revision and sets a per-key TTL in one step (async-nats has `create_with_ttl`, but no
//! update with a TTL, and its create re-creates a deleted key without one).

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, kv};
use async_nats::HeaderMap;
use bytes::Bytes;

use crate::subjects::Namespace;

/// How long a lease delete marker stays (needs to outlive a watcher's reconnect, no more).
const MARKER_TTL: Duration = Duration::from_secs(60);
/// How many times a missing bucket's creation is tried (see `open`).
const CREATE_ATTEMPTS: u32 = 4;
/// The pause between those tries.
const CREATE_RETRY: Duration = Duration::from_millis(750);
/// How long an agent's heartbeat entry stays after its last update.
pub const AGENT_ENTRY_MAX_AGE: Duration = Duration::from_secs(60);

/// The buckets of one namespace.
#[derive(Clone, Debug)]
pub struct Buckets {
    /// Desired state: one key per fleet.
    pub fleets: kv::Store,
    /// Shard leases, with per-key TTL.
    pub leases: kv::Store,
    /// Agents' last heartbeats.
    pub agents: kv::Store,
    /// Names, for the raw lease writes.
    leases_name: String,
    js: jetstream::Context,
}

/// A KV operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The key's revision was not the expected one (someone else wrote it).
    #[error("the key changed under us (revision check failed)")]
    Conflict,
    /// The key exists already.
    #[error("the key exists already")]
    Exists,
    /// The key holds a value (at this revision).
    #[error("the key is held (revision {revision})")]
    Held {
        /// The revision of the value.
        revision: u64,
        /// The value.
        value: Bytes,
    },
    /// Anything else: NATS down, timeouts, permissions.
    #[error("{0}")]
    Other(String),
}

async fn open(js: &jetstream::Context, cfg: kv::Config) -> Result<kv::Store, String> {
    let name = cfg.bucket.clone();
    match js.get_key_value(name.clone()).await {
        Ok(s) => return Ok(s),
        // Anything but "no such bucket" (a timeout, no leader) must not lead to a create.
        Err(e) if !is_not_found(&e) => {
            return Err(format!(
                "cannot read KV bucket {name}: {}: JetStream may be electing a leader after \
                 losing a server (try again in a few seconds)",
                chain(&e)
            ))
        }
        Err(_) => {}
    }
    let replicas = cfg.num_replicas;
    // Processes starting together on a new cluster create the same buckets at once: when
    // a create fails, the bucket may be there now (made by another), or the cluster may
    // still be settling its JetStream leaders. Look again, a few times, before giving up.
    let mut last = None;
    for attempt in 0..CREATE_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(CREATE_RETRY).await;
            if let Ok(s) = js.get_key_value(name.clone()).await {
                return Ok(s);
            }
        }
        match js.create_key_value(cfg.clone()).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    let e = last.map_or_else(|| "no attempt made".to_string(), |e| e.to_string());
    let hint = if replicas > 1 {
        format!(
            " (--kv-replicas {replicas} needs a NATS cluster of at least {replicas} \
             JetStream servers; on a single server use 1)"
        )
    } else {
        ": check that this NATS user may use JetStream and create KV buckets".into()
    };
    Err(format!("cannot open or create KV bucket {name}: {e}{hint}"))
}

/// How much event history the events stream keeps (`--events-max-age`, `--events-max-mb`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventsRetention {
    /// Events older than this are dropped.
    pub max_age: Duration,
    /// Past this many bytes the oldest events are dropped.
    pub max_bytes: u64,
}

/// Parses `--events-max-age`: a duration of at least a minute.
pub fn parse_events_max_age(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d >= Duration::from_secs(60) => Ok(d),
        Ok(_) => Err(format!(
            "'{s}' is too short: keep events for 1m or more, e.g. 24h"
        )),
        Err(e) => Err(format!("'{s}' is not a duration ({e}), e.g. 24h")),
    }
}

/// The largest event the stream takes (a devices_started event of a 500-device shard is
/// ~15 KB).
const MAX_EVENT_BYTES: i32 = 1024 * 1024;

/// Opens the stream that keeps the namespace's events, creating it with `retention` and
/// `replicas` if missing. Publishers do not change: JetStream stores what is published
/// on `evt.>`.
pub async fn open_events(
    js: &jetstream::Context,
    ns: &Namespace,
    replicas: usize,
    retention: EventsRetention,
) -> Result<jetstream::stream::Stream, String> {
    use jetstream::stream;
    let name = ns.events_stream();
    match js.get_stream(&name).await {
        Ok(s) => return Ok(s),
        Err(e) if !is_not_found(&e) => {
            return Err(format!("cannot read stream {name}: {}", chain(&e)))
        }
        Err(_) => {}
    }
    js.get_or_create_stream(stream::Config {
        name: name.clone(),
        description: Some("Pluribus events (pluribusctl events --since)".into()),
        subjects: vec![ns.event_all()],
        max_age: retention.max_age,
        max_bytes: i64::try_from(retention.max_bytes).unwrap_or(i64::MAX),
        max_message_size: MAX_EVENT_BYTES,
        discard: stream::DiscardPolicy::Old,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .map_err(|e| {
        format!("cannot create stream {name}: {e}: check that this NATS user may create JetStream streams")
    })
}

/// True when a JetStream look-up failed because the stream or bucket does not exist (not
/// for a timeout or a cluster without a leader, which must never lead to a create).
pub fn is_not_found(e: &dyn std::error::Error) -> bool {
    chain(e).contains("not found")
}

/// Writes `key` of KV bucket `bucket` only if its last revision is `expected` (0: the key
/// must not exist), with a per-key TTL if `ttl` is given (the bucket must allow them:
/// `limit_markers`). Returns the new revision.
pub async fn ttl_put(
    js: &jetstream::Context,
    bucket: &str,
    key: &str,
    value: Bytes,
    expected: u64,
    ttl: Option<Duration>,
) -> Result<u64, KvError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        "Nats-Expected-Last-Subject-Sequence",
        expected.to_string().as_str(),
    );
    if let Some(ttl) = ttl {
        headers.insert("Nats-TTL", format!("{}s", ttl.as_secs().max(1)).as_str());
    }
    let subject = format!("$KV.{bucket}.{key}");
    let ack = js
        .publish_with_headers(subject, headers, value)
        .await
        .map_err(|e| KvError::Other(e.to_string()))?;
    match ack.await {
        Ok(a) => Ok(a.sequence),
        Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Err(KvError::Conflict),
        Err(e) => Err(KvError::Other(e.to_string())),
    }
}

/// Opens (or creates) the bucket of detached scenario runs. Only the processes that run
/// scenarios open it (a credential whose role does not cover it cannot).
pub async fn open_scenarios(
    js: &jetstream::Context,
    ns: &Namespace,
    replicas: usize,
) -> Result<kv::Store, String> {
    open(
        js,
        kv::Config {
            bucket: ns.scenarios_bucket(),
            description: "Pluribus detached scenario runs and their leases (per-key TTL)".into(),
            history: 1,
            limit_markers: Some(MARKER_TTL),
            num_replicas: replicas,
            ..Default::default()
        },
    )
    .await
}

/// Opens (or creates) the two buckets of the agents' liveness keys (per-key TTL; the
/// server puts a marker when one expires, which its watchers see), the first one first
/// (see [`Namespace::live2_bucket`]). Only agents open them.
pub async fn open_live(
    js: &jetstream::Context,
    ns: &Namespace,
    replicas: usize,
) -> Result<[kv::Store; 2], String> {
    let [a, b] = ns.live_buckets();
    Ok([
        open(js, live_config(a, replicas)).await?,
        open(js, live_config(b, replicas)).await?,
    ])
}

fn live_config(bucket: String, replicas: usize) -> kv::Config {
    kv::Config {
        bucket,
        description: "Pluribus agents' liveness keys (per-key TTL)".into(),
        history: 1,
        limit_markers: Some(MARKER_TTL),
        max_value_size: MAX_PEER_BYTES,
        num_replicas: replicas,
        ..Default::default()
    }
}

/// True when a KV message is a put (not a delete, purge or TTL marker), by its headers
/// (`None`: a message without headers, a put).
pub fn is_put(headers: Option<&HeaderMap>) -> bool {
    let Some(h) = headers else {
        return true;
    };
    if let Some(op) = h.get("KV-Operation") {
        return op.as_str() == "PUT";
    }
    h.get(async_nats::header::NATS_MARKER_REASON).is_none()
}

/// A key's last entry as its stream's leader has it: `Ok(None)` when the key has no entry
/// or its last is a delete, purge or expiry marker, `Ok(Some((value, revision)))` for a
/// put. A plain KV get may be answered by any replica, which can lag behind; a judgement
/// that lets another agent take a shard over must not rest on that. Fails while the
/// stream has no leader.
pub async fn leader_entry(store: &kv::Store, key: &str) -> Result<Option<(Bytes, u64)>, String> {
    use async_nats::jetstream::stream::LastRawMessageErrorKind as Kind;
    let subject = format!("{}{}", store.prefix, key);
    match store.stream.get_last_raw_message_by_subject(&subject).await {
        Ok(m) => Ok(is_put(Some(&m.headers)).then_some((m.payload, m.sequence))),
        Err(e) if matches!(e.kind(), Kind::NoMessageFound) => Ok(None),
        Err(e) => Err(chain(&e)),
    }
}

/// Opens (or creates) the bucket of the agents' peer records (`crate::peer::Peer`, one key
/// per agent, written when it changes, deleted when the agent leaves or is found gone).
/// Only agents open it.
pub async fn open_peers(
    js: &jetstream::Context,
    ns: &Namespace,
    replicas: usize,
) -> Result<kv::Store, String> {
    open(
        js,
        kv::Config {
            bucket: ns.peers_bucket(),
            description: "Pluribus agents' peer records (written on change)".into(),
            history: 1,
            max_value_size: MAX_PEER_BYTES,
            num_replicas: replicas,
            ..Default::default()
        },
    )
    .await
}

/// The largest peer record the bucket takes (labels, types and refusals: a few KB).
const MAX_PEER_BYTES: i32 = 64 * 1024;

/// An error and its sources, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}

impl Buckets {
    /// Opens the buckets of `ns`, creating any that is missing with `replicas` replicas
    /// (1 on a single server; 3 on a cluster, so that they survive losing a server).
    pub async fn open(
        js: &jetstream::Context,
        ns: &Namespace,
        replicas: usize,
    ) -> Result<Self, String> {
        let fleets = open(
            js,
            kv::Config {
                bucket: ns.fleets_bucket(),
                description: "Pluribus desired state: fleets and devices".into(),
                history: 5,
                num_replicas: replicas,
                ..Default::default()
            },
        )
        .await?;
        let leases = open(
            js,
            kv::Config {
                bucket: ns.leases_bucket(),
                description: "Pluribus shard leases (per-key TTL)".into(),
                history: 1,
                limit_markers: Some(MARKER_TTL),
                num_replicas: replicas,
                ..Default::default()
            },
        )
        .await?;
        let agents = open(
            js,
            kv::Config {
                bucket: ns.agents_bucket(),
                description: "Pluribus agents' last heartbeats".into(),
                history: 1,
                max_age: AGENT_ENTRY_MAX_AGE,
                num_replicas: replicas,
                ..Default::default()
            },
        )
        .await?;
        Ok(Self {
            fleets,
            leases,
            agents,
            leases_name: ns.leases_bucket(),
            js: js.clone(),
        })
    }

    /// Writes lease `key` only if its last revision is `expected` (0: the key must not
    /// exist), with a per-key TTL if `ttl` is given (none: it stays until deleted or taken
    /// over). Returns the new revision.
    pub async fn lease_put(
        &self,
        key: &str,
        value: Bytes,
        expected: u64,
        ttl: Option<Duration>,
    ) -> Result<u64, KvError> {
        ttl_put(&self.js, &self.leases_name, key, value, expected, ttl).await
    }

    /// Creates lease `key` (with a TTL if given), also over a delete marker. While the key
    /// holds a value it fails with [`KvError::Held`], which carries that value and its
    /// revision: the caller decides whether the holder is gone and takes it over with
    /// [`Buckets::lease_put`] at that revision.
    pub async fn lease_create(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<u64, KvError> {
        match self.lease_put(key, value.clone(), 0, ttl).await {
            Err(KvError::Conflict) => {}
            other => return other,
        }
        let entry = self
            .leases
            .entry(key)
            .await
            .map_err(|e| KvError::Other(e.to_string()))?;
        let expected = match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                return Err(KvError::Held {
                    revision: e.revision,
                    value: e.value,
                })
            }
            Some(e) => e.revision,
            None => 0,
        };
        self.lease_put(key, value, expected, ttl)
            .await
            .map_err(|err| match err {
                KvError::Conflict => KvError::Exists,
                other => other,
            })
    }

    /// Deletes lease `key` if its revision is still `revision` (ours).
    pub async fn lease_delete(&self, key: &str, revision: u64) -> Result<(), KvError> {
        self.leases
            .delete_expect_revision(key, Some(revision))
            .await
            .map_err(|e| KvError::Other(e.to_string()))
    }
}
