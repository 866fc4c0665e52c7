//! Plain NATS messages the ctl sends: events, shard offers and agent commands.

use std::ops::Range;
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use async_nats::client::RequestErrorKind;
use async_nats::StatusCode;
use futures::StreamExt;
use pluribus_common::connect::Connection;
use pluribus_common::messages::{
    AgentAnswer, AgentCommand, AgentOp, Event, EventKind, Reply, ShardOffer,
};
use pluribus_common::time::now_ms;
use pluribus_common::wire::{decode, encode};
use pluribus_common::PROTOCOL_VERSION;

/// Publishes an event on `evt.<kind>`.
pub async fn publish_event(conn: &Connection, kind: EventKind) -> Result<()> {
    let subject = conn.ns.event(kind.token());
    let event = Event {
        v: PROTOCOL_VERSION,
        ts_ms: now_ms(),
        kind,
    };
    conn.client
        .publish(subject.clone(), encode(&event))
        .await
        .with_context(|| format!("cannot publish the event on {subject}"))?;
    conn.client
        .flush()
        .await
        .context("cannot flush the event to NATS")
}

/// Offers shards `shards` of `fleet` to the agents' queue group.
pub async fn offer_shards(conn: &Connection, fleet: &str, shards: Range<u32>) -> Result<()> {
    let subject = conn.ns.work();
    for shard in shards {
        conn.client
            .publish(subject.clone(), encode(&ShardOffer::new(fleet, shard)))
            .await
            .with_context(|| format!("cannot offer shard {shard} of {fleet} on {subject}"))?;
    }
    conn.client
        .flush()
        .await
        .context("cannot flush the shard offers to NATS")
}

/// Sends `op` to one agent and returns its answer. `who` names the agent in errors.
pub async fn request_agent(
    conn: &Connection,
    agent_id: &str,
    who: &str,
    op: AgentOp,
    timeout: Duration,
) -> Result<AgentAnswer> {
    let request = async_nats::Request::new()
        .payload(encode(&AgentCommand::new(op)))
        .timeout(Some(timeout));
    let reply = match conn
        .client
        .send_request(conn.ns.agent_cmd(agent_id), request)
        .await
    {
        Ok(m) => m,
        Err(e) if e.kind() == RequestErrorKind::NoResponders => {
            return Err(anyhow!(
                "agent {who} did not answer: is it running? see `pluribusctl agents`"
            ))
        }
        Err(e) if e.kind() == RequestErrorKind::TimedOut => {
            return Err(anyhow!(
                "agent {who} did not answer within {}: it may be overloaded or stuck; see `pluribusctl agents`",
                crate::output::duration(timeout)
            ))
        }
        Err(e) => return Err(e).with_context(|| format!("cannot send the command to agent {who}")),
    };
    decode_answer(&reply.payload).map_err(|e| anyhow!("agent {who}: {e}"))
}

/// The answer in a reply payload, or what went wrong as text.
fn decode_answer(payload: &[u8]) -> std::result::Result<AgentAnswer, String> {
    let reply: Reply<AgentAnswer> =
        decode(payload).map_err(|e| format!("unreadable answer: {e}"))?;
    reply
        .into_result()
        .map_err(|e| format!("refused the command: {}", e.message))
}

/// Sends `op` to every agent and collects the answers that arrive within `wait`.
/// An answer that is an error is kept as its text.
pub async fn request_all(
    conn: &Connection,
    op: AgentOp,
    wait: Duration,
) -> Result<Vec<std::result::Result<AgentAnswer, String>>> {
    let inbox = conn.client.new_inbox();
    let mut sub = conn
        .client
        .subscribe(inbox.clone())
        .await
        .context("cannot subscribe to a reply inbox")?;
    let subject = conn.ns.agents_cmd();
    conn.client
        .publish_with_reply(subject.clone(), inbox, encode(&AgentCommand::new(op)))
        .await
        .with_context(|| format!("cannot send the command on {subject}"))?;
    conn.client
        .flush()
        .await
        .context("cannot flush the command to NATS")?;
    let mut answers = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(m)) = tokio::time::timeout_at(deadline, sub.next()).await {
        if m.status == Some(StatusCode::NO_RESPONDERS) {
            break;
        }
        answers.push(decode_answer(&m.payload));
    }
    let _ = sub.unsubscribe().await;
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pluribus_common::messages::ErrorCode;

    #[test]
    fn answers_decode_from_replies() {
        let hb = crate::state::fixtures::hb("a", 1, None);
        let ok = Reply::ok(AgentAnswer {
            heartbeat: hb.clone(),
            released: 2,
        });
        let a = decode_answer(&encode(&ok)).expect("ok");
        assert_eq!((a.heartbeat, a.released), (hb, 2));
        let err: Reply<AgentAnswer> = Reply::err(ErrorCode::Failed, "busy");
        assert_eq!(
            decode_answer(&encode(&err)).expect_err("err"),
            "refused the command: busy"
        );
        assert!(decode_answer(b"junk").is_err());
    }
}
