//! A connection to a Pluribus cluster: NATS, its namespace and the KV buckets.

use anyhow::Result;
use pluribus_common::connect::{Connection, NatsArgs};
use pluribus_common::kv::Buckets;

/// A connection with the buckets open: what every client operation takes.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The connection (client, JetStream, namespace).
    pub conn: Connection,
    /// The KV buckets.
    pub buckets: Buckets,
    /// The NATS URL, for messages.
    pub url: String,
}

impl Ctx {
    /// Connects to NATS as `name` (options adjusted by `tune`) and opens the KV buckets,
    /// creating missing ones.
    pub async fn open(
        nats: &NatsArgs,
        name: &str,
        tune: impl FnOnce(async_nats::ConnectOptions) -> async_nats::ConnectOptions,
    ) -> Result<Self> {
        let conn = nats.connect_with(name, tune).await?;
        Self::from_connection(conn, nats.nats_url.clone()).await
    }

    /// Opens the KV buckets on a connection already made (`url` names it in messages).
    pub async fn from_connection(conn: Connection, url: String) -> Result<Self> {
        let buckets = Buckets::open(&conn.js, &conn.ns, conn.kv_replicas)
            .await
            .map_err(anyhow::Error::msg)?;
        Ok(Self { conn, buckets, url })
    }

    /// The command that starts an agent on this NATS and namespace, for messages.
    pub fn agent_command(&self) -> String {
        match self.conn.ns.name() {
            "" => format!("pluribus-agent --nats-url {}", self.url),
            ns => format!("pluribus-agent --nats-url {} --namespace {ns}", self.url),
        }
    }
}

/// The error for a fleet name that is not in the fleets bucket.
pub fn no_fleet(name: &str) -> anyhow::Error {
    anyhow::anyhow!("no fleet named {name}: see `pluribusctl status`")
}
