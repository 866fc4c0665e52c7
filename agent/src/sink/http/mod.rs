//! The `http` sink: each message is one request (`POST` or `PUT`) to a URL rendered per
//! device, with the telemetry JSON as its body.
//!
//! `send` never waits for the server: it takes a permit from the agent-wide limit of
//! requests in flight and spawns the request (`deliver`). When no permit is free the
//! message is dropped and counted in `publish_failed`, rather than queued: a queue would
//! hide that the server cannot keep up, and send the message late, outside its schedule.
//! The spawned request records latency and status classes, retries with backoff, and
//! counts a final failure in `publish_failed` and `errors`.
//!
//! TLS: an `https://` URL is verified against the system's CA roots, through one client
//! (one connection pool) that every http sink of the agent shares. A sink with `ca` (a
//! private CA, e.g. a staging server's) and/or `cert` + `key` (a client certificate)
//! gets a client of its own, built from those files ([`crate::sink::tls`], shared with
//! the mqtt sink) and shared by the sinks with the same files, so the shards of a fleet
//! share one pool. The files are read on the agent when a shard is prepared: one that is
//! missing or not PEM refuses the shard, and `pluribusctl status` shows why.

mod client;
mod deliver;
mod headers;

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use hyper::Uri;
use pluribus_common::spec::{HttpSinkConfig, SinkSpec, Template, TemplateVars};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::{tls, LinkMode, Sink, SinkContext, SinkDevice, SinkError, SinkFactory};
use client::HttpClient;
use deliver::{LogLimit, Request};

/// A sink's TLS files: (`ca`, `cert`, `key`).
type TlsFiles = (Option<String>, Option<String>, Option<String>);

/// Factory of [`HttpSink`]s, one per agent: it owns the connection pool that every http
/// sink without TLS files shares, the clients of the sinks with TLS files, and the limits
/// of requests in flight.
#[derive(Default)]
pub struct HttpFactory {
    /// Built on first use, so an agent that never runs an http sink reads no certificates.
    client: OnceLock<Result<Arc<HttpClient>, String>>,
    /// One client per distinct (`ca`, `cert`, `key`): the shards of a fleet on this agent
    /// share it. Dropped with the last sink that uses it, so a later fleet reads the files
    /// again (a renewed certificate, say).
    tls_clients: Mutex<HashMap<TlsFiles, Weak<HttpClient>>>,
    /// One limit per distinct sink spec: the shards of a fleet on this agent share it.
    limits: Mutex<HashMap<String, Weak<Semaphore>>>,
}

impl std::fmt::Debug for HttpFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpFactory").finish_non_exhaustive()
    }
}

impl HttpFactory {
    /// The client for `cfg`: the shared one, or the one for its TLS files.
    fn client(
        &self,
        cfg: &HttpSinkConfig,
        secrets: &crate::secrets::Secrets,
    ) -> Result<Arc<HttpClient>, SinkError> {
        if !cfg.has_tls_files() {
            return self
                .client
                .get_or_init(|| client::build().map(Arc::new))
                .clone()
                .map_err(SinkError);
        }
        let files = (cfg.ca.clone(), cfg.cert.clone(), cfg.key.clone());
        let mut clients = self.tls_clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.retain(|_, w| w.strong_count() > 0);
        if let Some(c) = clients.get(&files).and_then(Weak::upgrade) {
            return Ok(c);
        }
        // Read the files now, so that a missing one refuses the shard (not cached).
        let config = tls::client_config(
            files.0.as_deref(),
            files.1.as_deref(),
            files.2.as_deref(),
            secrets,
        )?;
        let c = Arc::new(client::with_tls(config));
        clients.insert(files, Arc::downgrade(&c));
        Ok(c)
    }

    /// The limit of requests in flight for `spec`, shared by every sink made from it.
    fn limit(&self, spec: &SinkSpec, permits: u32) -> Arc<Semaphore> {
        let key = serde_json::to_string(spec).unwrap_or_default();
        let mut limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        limits.retain(|_, w| w.strong_count() > 0);
        if let Some(s) = limits.get(&key).and_then(Weak::upgrade) {
            return s;
        }
        let s = Arc::new(Semaphore::new(permits as usize));
        limits.insert(key, Arc::downgrade(&s));
        s
    }
}

impl SinkFactory for HttpFactory {
    fn create(&self, spec: &SinkSpec, ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        let cfg = HttpSinkConfig::from_options(&spec.options)
            .map_err(|e| SinkError(format!("bad http sink: {e}")))?;
        let url = cfg
            .url_template()
            .map_err(|e| SinkError(format!("bad http sink: {e}")))?;
        let headers = headers::resolve(&cfg.headers, &ctx.secrets)?;
        let request = Request {
            client: self.client(&cfg, &ctx.secrets)?,
            method: cfg.method,
            headers,
            timeout: cfg.timeout,
            retries: cfg.retries,
            metrics: ctx.metrics.clone(),
            log: LogLimit::default(),
        };
        Ok(Box::new(HttpSink {
            request: Arc::new(request),
            url,
            permits: self.limit(spec, cfg.concurrency),
            concurrency: cfg.concurrency,
            scratch: String::new(),
            drops: LogLimit::default(),
            in_flight_tasks: TaskTracker::new(),
            links: None,
        }))
    }
}

/// A device's own connection, while the fleet's network rules may cut links.
#[derive(Default)]
struct DevLink {
    /// Its client (a pool of one connection), made by its first request; dropped (and the
    /// connection closed) when the network layer closes its link.
    client: Option<Arc<HttpClient>>,
    /// Cut off by the network layer.
    cut: Option<LinkMode>,
}

/// Sends a shard's messages as HTTP requests, in tasks of their own.
pub struct HttpSink {
    request: Arc<Request>,
    url: Template,
    permits: Arc<Semaphore>,
    concurrency: u32,
    scratch: String,
    drops: LogLimit,
    /// This shard's requests, awaited when it stops.
    in_flight_tasks: TaskTracker,
    /// Per device, while the fleet's network rules may cut links ([`Sink::own_links`]):
    /// each device then has a connection of its own, which a partition closes (the server
    /// sees it go) and which comes back with the device's next request.
    links: Option<HashMap<u64, DevLink>>,
}

impl std::fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSink")
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

impl HttpSink {
    /// Requests in flight under this sink's limit (all shards sharing it).
    pub fn in_flight(&self) -> usize {
        (self.concurrency as usize).saturating_sub(self.permits.available_permits())
    }
}

#[async_trait]
impl Sink for HttpSink {
    async fn send(&mut self, dev: &SinkDevice<'_>, payload: Bytes) -> Result<(), SinkError> {
        self.url.render_into(
            &TemplateVars {
                fleet: dev.fleet,
                device_id: Some(dev.device_id),
                index: dev.index,
            },
            &mut self.scratch,
        );
        let metrics = &self.request.metrics;
        let uri: Uri = match self.scratch.parse() {
            Ok(u) => u,
            Err(e) => {
                metrics.publish_failed.fetch_add(1, Relaxed);
                return Err(SinkError(format!(
                    "http sink: '{}' is not a URL ({e}): fix the url template",
                    self.scratch
                )));
            }
        };
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            metrics.publish_failed.fetch_add(1, Relaxed);
            if self.drops.allow() {
                tracing::warn!(
                    fleet = %dev.fleet,
                    concurrency = self.concurrency,
                    "http sink: every request slot is busy, messages are dropped: the server is slower than the load, or raise the sink's concurrency"
                );
            }
            return Err(SinkError(format!(
                "http sink: {} requests in flight already; message dropped",
                self.concurrency
            )));
        };
        let client = match &mut self.links {
            None => self.request.client.clone(),
            Some(links) => {
                let l = links.entry(dev.index).or_default();
                let shared = &self.request.client;
                l.client
                    .get_or_insert_with(|| Arc::new(shared.own()))
                    .clone()
            }
        };
        self.in_flight_tasks.spawn(deliver::deliver(
            self.request.clone(),
            client,
            uri,
            payload,
            permit,
        ));
        Ok(())
    }

    fn own_links(&mut self, on: bool) {
        match (on, &self.links) {
            (true, None) => self.links = Some(HashMap::new()),
            (false, Some(_)) => self.links = None,
            _ => {}
        }
    }

    /// `close`: the device's connection is dropped (requests already in flight finish
    /// first), so the server sees it close; `stall`: it stays open and idle (the server's
    /// keep-alive timeout may close it). Let back, the device connects again with its
    /// next request (the network layer's flush).
    fn set_link(&mut self, dev: &SinkDevice<'_>, down: Option<LinkMode>) -> bool {
        let Some(links) = &mut self.links else {
            return false;
        };
        let l = links.entry(dev.index).or_default();
        let was = std::mem::replace(&mut l.cut, down);
        let live = l.client.is_some() && was.is_none();
        if down == Some(LinkMode::Close) {
            l.client = None;
        }
        down.is_some() && live
    }

    fn ready(&self, dev: &SinkDevice<'_>) -> bool {
        self.links
            .as_ref()
            .and_then(|l| l.get(&dev.index))
            .is_none_or(|l| l.cut.is_none())
    }

    async fn close_device(&mut self, dev: &SinkDevice<'_>) {
        if let Some(links) = &mut self.links {
            links.remove(&dev.index);
        }
    }

    /// Waits for this shard's requests still in flight (retries included), so that the
    /// last messages, on_stop among them, reach the server before the shard is gone.
    async fn close(&mut self) {
        self.in_flight_tasks.close();
        self.in_flight_tasks.wait().await;
    }
}

#[cfg(test)]
mod tests;
