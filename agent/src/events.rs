//! Publishing events (`pluribus.v1.evt.<kind>`): the control loop, the shard runners and the
//! sinks of one agent share one [`Events`], so every event carries the same agent id and
//! goes out the same way.
//!
//! Device failures can come by the thousand (a broker that goes away drops every
//! connection at once), so they are rate-limited per agent: at most
//! [`FAILURES_PER_SECOND`] a second; the next one published says how many were left out.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pluribus_common::messages::{Event, EventKind, MAX_EVENT_DEVICES};
use pluribus_common::subjects::Namespace;
use pluribus_common::time::now_ms;
use pluribus_common::{wire, PROTOCOL_VERSION};

/// Most `device_failed` events an agent publishes a second.
pub const FAILURES_PER_SECOND: u32 = 20;
/// How long one publish may wait for the client's buffer.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// The agent's event publisher (cheap to clone).
#[derive(Clone, Debug)]
pub struct Events {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: async_nats::Client,
    ns: Namespace,
    agent_id: String,
    failures: Mutex<Budget>,
}

/// The device-failure budget of the current second.
#[derive(Debug)]
struct Budget {
    since: Instant,
    sent: u32,
    suppressed: u64,
}

impl Events {
    /// Events of agent `agent_id`, published on `client` in namespace `ns`.
    pub fn new(client: async_nats::Client, ns: Namespace, agent_id: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                ns,
                agent_id: agent_id.to_string(),
                failures: Mutex::new(Budget {
                    since: Instant::now(),
                    sent: 0,
                    suppressed: 0,
                }),
            }),
        }
    }

    /// The agent's NATS client.
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    /// The agent's id.
    pub fn agent_id(&self) -> &str {
        &self.inner.agent_id
    }

    /// Publishes one event (a failure is logged, never returned: events are best effort).
    pub async fn publish(&self, kind: EventKind) {
        let subject = self.inner.ns.event(kind.token());
        let payload = wire::encode(&Event {
            v: PROTOCOL_VERSION,
            ts_ms: now_ms(),
            kind,
        });
        match tokio::time::timeout(
            PUBLISH_TIMEOUT,
            self.inner.client.publish(subject.clone(), payload),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(%subject, error = %e, "event not published"),
            Err(_) => tracing::debug!(%subject, "event publish timed out"),
        }
    }

    /// `devices_started` for `ids` of `fleet`'s shard `shard`, in events of at most
    /// [`MAX_EVENT_DEVICES`] ids.
    pub async fn devices_started(&self, fleet: &str, shard: u32, ids: &[String]) {
        for chunk in ids.chunks(MAX_EVENT_DEVICES) {
            self.publish(EventKind::DevicesStarted {
                fleet: fleet.to_string(),
                shard,
                agent_id: self.agent_id().to_string(),
                device_ids: chunk.to_vec(),
            })
            .await;
        }
    }

    /// `devices_stopped` for `ids`, with the reason.
    pub async fn devices_stopped(&self, fleet: &str, shard: u32, reason: &str, ids: &[String]) {
        for chunk in ids.chunks(MAX_EVENT_DEVICES) {
            self.publish(EventKind::DevicesStopped {
                fleet: fleet.to_string(),
                shard,
                agent_id: self.agent_id().to_string(),
                reason: reason.to_string(),
                device_ids: chunk.to_vec(),
            })
            .await;
        }
    }

    /// `partition_started` (`ended` false) or `partition_ended` for `devices` devices of a
    /// shard.
    pub async fn partition(&self, fleet: &str, shard: u32, ended: bool, devices: u64) {
        let (fleet, agent_id) = (fleet.to_string(), self.agent_id().to_string());
        self.publish(if ended {
            EventKind::PartitionEnded {
                fleet,
                shard,
                agent_id,
                devices,
            }
        } else {
            EventKind::PartitionStarted {
                fleet,
                shard,
                agent_id,
                devices,
            }
        })
        .await;
    }

    /// `device_failed`, unless this second's budget is spent: then it is counted (and the
    /// count reported with the next one) and `false` is returned, so the caller may try
    /// again at the device's next failure.
    pub async fn device_failed(&self, fleet: &str, device_id: &str, error: &str) -> bool {
        let Some(suppressed) = self.take_failure_budget() else {
            return false;
        };
        self.publish(EventKind::DeviceFailed {
            fleet: fleet.to_string(),
            agent_id: self.agent_id().to_string(),
            device_id: device_id.to_string(),
            error: error.to_string(),
            suppressed,
        })
        .await;
        true
    }

    /// `Some(failures left out before this one)` if one may be published now.
    fn take_failure_budget(&self) -> Option<u64> {
        let mut b = self
            .inner
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if b.since.elapsed() >= Duration::from_secs(1) {
            b.since = Instant::now();
            b.sent = 0;
        }
        if b.sent >= FAILURES_PER_SECOND {
            b.suppressed += 1;
            return None;
        }
        b.sent += 1;
        Some(std::mem::take(&mut b.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failures_past_the_budget_are_counted_for_the_next_event() {
        // A client that never connects: only the budget is under test.
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect("nats://127.0.0.1:1")
            .await
            .expect("lazy client");
        let ev = Events::new(client, Namespace::new("").expect("ns"), "a");
        for _ in 0..FAILURES_PER_SECOND {
            assert_eq!(ev.take_failure_budget(), Some(0));
        }
        assert_eq!(ev.take_failure_budget(), None);
        assert_eq!(ev.take_failure_budget(), None);
        ev.inner.failures.lock().expect("lock").since -= Duration::from_secs(2);
        assert_eq!(
            ev.take_failure_budget(),
            Some(2),
            "the next one says 2 were left out"
        );
        assert_eq!(ev.take_failure_budget(), Some(0));
    }
}
