//! Commands: to the agent (ping, drain, rebalance), and to devices (routed to the shard
//! runner that holds the device). Every request gets a typed reply, malformed ones too.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use pluribus_common::messages::{AgentAnswer, AgentCommand, AgentOp, ErrorCode, Reply};
use pluribus_common::wire::{self, WireError};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use std::sync::atomic::Ordering::Relaxed;

use tokio::sync::mpsc;

use super::Control;
use crate::shard::ShardCtl;

/// The exit status after a `kill` command: 128 + SIGKILL, as the shell reports a killed
/// process.
const KILLED_EXIT: i32 = 137;

impl Control {
    async fn reply<T: serde::Serialize>(&self, msg: &async_nats::Message, reply: &Reply<T>) {
        if let Some(to) = &msg.reply {
            self.publish(to.to_string(), wire::encode(reply)).await;
        }
    }

    pub(super) async fn on_command(&mut self, msg: async_nats::Message) {
        let cmd: AgentCommand = match wire::decode(&msg.payload) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(subject = %msg.subject, error = %e, "bad agent command");
                let code = match e {
                    WireError::Version { .. } => ErrorCode::UnsupportedVersion,
                    WireError::Malformed { .. } => ErrorCode::BadRequest,
                };
                self.reply(&msg, &Reply::<AgentAnswer>::err(code, e.to_string()))
                    .await;
                return;
            }
        };
        if cmd.op == AgentOp::Kill && msg.subject.as_str() != self.conn.ns.agent_cmd(&self.id) {
            tracing::warn!(subject = %msg.subject, "kill sent to every agent refused");
            let why = "kill is refused on the subject of every agent: send it to one agent";
            self.reply(&msg, &Reply::<AgentAnswer>::err(ErrorCode::BadRequest, why))
                .await;
            return;
        }
        let released = match cmd.op {
            AgentOp::Ping => 0,
            AgentOp::Drain { undo } => {
                self.draining = !undo;
                tracing::info!(draining = self.draining, "drain command");
                if undo {
                    0
                } else {
                    self.release_all("drain").await
                }
            }
            AgentOp::Rebalance => self.rebalance(usize::MAX).await,
            AgentOp::Kill => 0,
        };
        let answer = AgentAnswer {
            heartbeat: self.heartbeat_value(),
            released,
        };
        self.reply(&msg, &Reply::ok(answer)).await;
        if cmd.op == AgentOp::Kill {
            self.die().await;
        }
        if matches!(cmd.op, AgentOp::Drain { .. }) {
            self.heartbeat().await;
        }
    }

    /// Ends the process as a crash would (after the answer to `kill` is on the wire): no
    /// lease released, no device stopped, nothing flushed but the answer.
    async fn die(&self) {
        tracing::warn!("kill command: ending the process now, as a crash would");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.conn.client.flush()).await;
        std::process::exit(KILLED_EXIT);
    }

    /// Subscribes to the command subject of every fleet with a shard here, and drops the
    /// subscriptions of fleets that have none left.
    pub(super) async fn sync_command_subs(&mut self) {
        // Called after every change to the held shards.
        self.changed = true;
        let wanted: std::collections::HashSet<String> =
            self.held.values().map(|h| h.fleet.clone()).collect();
        self.cmd_subs.retain(|fleet, token| {
            let keep = wanted.contains(fleet);
            if !keep {
                token.cancel();
            }
            keep
        });
        for fleet in wanted {
            if self.cmd_subs.contains_key(&fleet) {
                continue;
            }
            let subject = self.conn.ns.device_cmd_fleet(&fleet);
            let sub = match tokio::time::timeout(
                Duration::from_secs(2),
                self.conn.client.subscribe(subject),
            )
            .await
            {
                Ok(Ok(s)) => s,
                _ => continue,
            };
            let token = CancellationToken::new();
            let (t, tx) = (token.clone(), self.cmd_tx.clone());
            let (client, metrics) = (self.conn.client.clone(), self.metrics.fleet(&fleet));
            self.tracker.spawn(async move {
                let mut sub = sub;
                loop {
                    tokio::select! {
                        _ = t.cancelled() => break,
                        m = sub.next() => match m {
                            Some(m) => match tx.try_send(m) {
                                Ok(()) => {}
                                Err(mpsc::error::TrySendError::Full(m)) => {
                                    metrics.commands_refused.fetch_add(1, Relaxed);
                                    busy(&client, &m).await;
                                }
                                Err(mpsc::error::TrySendError::Closed(_)) => break,
                            },
                            None => break,
                        }
                    }
                }
                let _ = sub.unsubscribe().await;
            });
            self.cmd_subs.insert(fleet, token);
        }
    }

    /// Routes a device command to the runner holding the device; the runner's answer is
    /// sent back by a task of its own so the loop never waits on a device.
    pub(super) fn on_device_command(&mut self, msg: async_nats::Message) {
        // <prefix>.pluribus.v1.device.<fleet>.<device>.cmd
        let tokens: Vec<&str> = msg.subject.split('.').collect();
        let (fleet, device) = match tokens.as_slice() {
            [.., "device", fleet, device, "cmd"] => (fleet.to_string(), device.to_string()),
            _ => return,
        };
        let Some((record, _)) = self.fleets.get(&fleet) else {
            return;
        };
        let Some(index) = record.index_of(&device) else {
            return;
        };
        let shard = (index / u64::from(record.spec.shard_size.max(1))) as u32;
        let Some(h) = self
            .held
            .get(&pluribus_common::subjects::lease_key(&fleet, shard))
        else {
            return;
        };
        let Ok(permit) = h.handle.commands.clone().try_acquire_owned() else {
            self.metrics
                .fleet(&fleet)
                .commands_refused
                .fetch_add(1, Relaxed);
            let client = self.conn.client.clone();
            self.tracker.spawn(async move { busy(&client, &msg).await });
            return;
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        let payload: Bytes = msg.payload.clone();
        if h.handle
            .tx
            .send(ShardCtl::Command {
                device_id: device,
                payload,
                reply: reply_tx,
                permit,
            })
            .is_err()
        {
            return;
        }
        let client = self.conn.client.clone();
        self.tracker.spawn(async move {
            let Some(to) = msg.reply else { return };
            let reply: Reply<serde_json::Value> =
                match tokio::time::timeout(Duration::from_secs(5), reply_rx).await {
                    Ok(Ok(Ok(Some(body)))) => Reply::ok(
                        serde_json::from_slice(&body)
                            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into()),
                    ),
                    Ok(Ok(Ok(None))) => Reply::ok(serde_json::Value::Null),
                    Ok(Ok(Err(e))) => Reply::err(ErrorCode::BadRequest, e),
                    _ => Reply::err(ErrorCode::Failed, "the device did not answer"),
                };
            let _ = client.publish(to, wire::encode(&reply)).await;
        });
    }
}

/// Answers a device command that found its queue full: nothing was done.
async fn busy(client: &async_nats::Client, msg: &async_nats::Message) {
    let Some(to) = &msg.reply else { return };
    let reply: Reply<serde_json::Value> = Reply::err(
        ErrorCode::Busy,
        "too many commands queued for this device's shard: nothing was done; send fewer and retry",
    );
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        client.publish(to.clone(), wire::encode(&reply)),
    )
    .await;
}
