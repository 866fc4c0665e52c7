//! The device drill-down: where a device runs, its last telemetry and `seq` (read from the
//! `nats` sink's subject), what the events said about it; and sending it a command.

use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use async_nats::client::RequestErrorKind;
use futures::StreamExt;
use pluribus_common::record::FleetRecord;
use pluribus_common::spec::{Template, TemplateVars};
use serde::Serialize;

use super::hub::Shared;
use crate::cmd::Ctx;

/// Longest wait for a telemetry message.
const MAX_TELEMETRY_WAIT: Duration = Duration::from_secs(10);

/// How long a device has to answer a command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest telemetry or reply payload shown.
const MAX_PAYLOAD: usize = 64 * 1024;

/// Events about the device kept in the answer.
const RECENT_EVENTS: usize = 10;

/// What the drill-down shows.
#[derive(Debug, Serialize)]
pub struct DeviceView {
    /// The device id.
    pub device_id: String,
    /// Its fleet.
    pub fleet: String,
    /// Its index in the fleet.
    pub index: u64,
    /// Its shard.
    pub shard: u32,
    /// The agent holding its shard (none: not running).
    pub agent_id: Option<String>,
    /// That agent's name.
    pub agent_name: Option<String>,
    /// `running` (an agent holds its shard; a load shape may still have it offline),
    /// `stopped` (by `stop`) or `pending` (no agent holds its shard).
    pub state: &'static str,
    /// The fleet's sink type.
    pub sink: String,
    /// The subject its telemetry goes to (nats sink).
    pub subject: Option<String>,
    /// The last telemetry message seen (nats sink), as JSON.
    pub telemetry: Option<serde_json::Value>,
    /// Its `seq`.
    pub seq: Option<u64>,
    /// Why there is no telemetry, when there is none.
    pub note: Option<String>,
    /// The last failure of its connection, if the events told one.
    pub last_failure: Option<String>,
    /// The last events that name it.
    pub events: Vec<String>,
}

/// Where a device is: its fleet's record, its index, and the agent (id, name) holding its
/// shard.
struct Located {
    record: FleetRecord,
    index: u64,
    holder: Option<(String, String)>,
}

/// The fleet holding device `id` and its index.
fn locate(shared: &Shared, id: &str) -> Result<Located> {
    let d = shared
        .desired
        .read()
        .map_err(|_| anyhow!("internal error: state poisoned"))?;
    let found: Vec<(&FleetRecord, u64)> = d
        .fleets
        .values()
        .filter_map(|r| r.index_of(id).map(|i| (r, i)))
        .collect();
    let (record, index) = match found.as_slice() {
        [] => bail!(
            "no device {id} in any fleet: check the id (fleet name and index, e.g. demo-00042)"
        ),
        [one] => *one,
        many => bail!(
            "device {id} is in several fleets: {}",
            many.iter()
                .map(|(r, _)| r.name())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let shard = u32::try_from(index / u64::from(record.spec.shard_size.max(1))).unwrap_or(u32::MAX);
    let holder = d
        .leases
        .get(record.name())
        .and_then(|m| m.get(&shard))
        .filter(|l| l.generation == record.generation)
        .map(|l| (l.agent_id.clone(), l.agent_name.clone()));
    Ok(Located {
        record: record.clone(),
        index,
        holder,
    })
}

/// The drill-down of device `id`.
pub async fn inspect(shared: &Shared, id: &str) -> Result<DeviceView> {
    let Located {
        record,
        index,
        holder,
    } = locate(shared, id)?;
    let shard = u32::try_from(index / u64::from(record.spec.shard_size.max(1))).unwrap_or(u32::MAX);
    let stopped = record.stopped.contains(&index);
    let state = match (&holder, stopped) {
        (_, true) => "stopped",
        (Some(_), false) => "running",
        (None, false) => "pending",
    };
    let (mut last_failure, mut events) = (None, Vec::new());
    if let Ok(log) = shared.events.read() {
        for e in log.all().filter(|e| e.mentions_device(id)) {
            if e.kind == "device_failed" {
                last_failure = Some(e.text.clone());
            } else if e.kind == "devices_started" {
                last_failure = None;
            }
            events.push(e.text.clone());
        }
    }
    let keep = events.len().saturating_sub(RECENT_EVENTS);
    events.drain(..keep);
    let mut view = DeviceView {
        device_id: id.to_string(),
        fleet: record.name().to_string(),
        index,
        shard,
        agent_id: holder.as_ref().map(|h| h.0.clone()),
        agent_name: holder.map(|h| h.1),
        state,
        sink: record.spec.sink.kind.clone(),
        subject: None,
        telemetry: None,
        seq: None,
        note: None,
        last_failure,
        events,
    };
    if view.sink != "nats" {
        view.note = Some(format!(
            "the {} sink delivers outside NATS: see its connection figures in the fleet's row, or read it with `pluribusctl probe`",
            view.sink
        ));
        return Ok(view);
    }
    let cfg = record.spec.sink.nats_config().map_err(|e| anyhow!("{e}"))?;
    let subject = Template::parse("sink.subject", &cfg.subject, true)
        .map_err(|e| anyhow!("{e}"))?
        .render(&TemplateVars {
            fleet: record.name(),
            device_id: Some(id),
            index,
        });
    view.subject = Some(subject.clone());
    if state != "running" {
        view.note = Some(format!("the device is {state}: no telemetry to wait for"));
        return Ok(view);
    }
    let wait = (record.spec.device.interval * 2 + Duration::from_secs(1)).min(MAX_TELEMETRY_WAIT);
    match telemetry(&shared.ctx, &subject, wait).await? {
        Some(v) => {
            view.seq = v.get("seq").and_then(|s| s.as_u64());
            view.telemetry = Some(v);
        }
        None => {
            view.note = Some(format!(
                "no telemetry on {subject} within {}s (a load shape may have it inactive now)",
                wait.as_secs()
            ))
        }
    }
    Ok(view)
}

/// The next message on `subject` within `wait`, as JSON (a non-JSON payload as a string).
async fn telemetry(ctx: &Ctx, subject: &str, wait: Duration) -> Result<Option<serde_json::Value>> {
    let mut sub = ctx
        .conn
        .client
        .subscribe(subject.to_string())
        .await
        .with_context(|| format!("cannot subscribe to {subject}"))?;
    let got = tokio::time::timeout(wait, sub.next()).await;
    let _ = sub.unsubscribe().await;
    Ok(match got {
        Ok(Some(m)) => Some(payload_json(&m.payload)),
        _ => None,
    })
}

/// A payload as JSON, bounded.
fn payload_json(p: &[u8]) -> serde_json::Value {
    if p.len() > MAX_PAYLOAD {
        return serde_json::Value::String(format!("({} bytes, too large to show)", p.len()));
    }
    serde_json::from_slice(p)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(p).into_owned()))
}

/// Sends `payload` to device `id` and returns its reply.
pub async fn command(
    shared: &Shared,
    id: &str,
    payload: &serde_json::Value,
) -> Result<serde_json::Value> {
    let record = locate(shared, id)?.record;
    let subject = shared.ctx.conn.ns.device_cmd(record.name(), id);
    let body = serde_json::to_vec(payload).context("cannot encode the command")?;
    let request = async_nats::Request::new()
        .payload(body.into())
        .timeout(Some(COMMAND_TIMEOUT));
    match shared.ctx.conn.client.send_request(subject, request).await {
        Ok(m) => Ok(payload_json(&m.payload)),
        Err(e) if e.kind() == RequestErrorKind::NoResponders => {
            bail!("no agent runs device {id} now (nobody listens on its command subject)")
        }
        Err(e) if e.kind() == RequestErrorKind::TimedOut => bail!(
            "device {id} did not answer within {}s (or this credential may not send commands)",
            COMMAND_TIMEOUT.as_secs()
        ),
        Err(e) => Err(e).context("cannot send the command"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_show_as_json_or_text() {
        assert_eq!(payload_json(br#"{"seq":4}"#)["seq"], 4);
        assert_eq!(payload_json(b"plain"), serde_json::json!("plain"));
        let big = vec![b'x'; MAX_PAYLOAD + 1];
        assert!(payload_json(&big)
            .as_str()
            .is_some_and(|s| s.contains("too large")));
    }
}
