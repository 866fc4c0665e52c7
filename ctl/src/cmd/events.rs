//! `events`: print events as they happen.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use futures::StreamExt;
use pluribus_common::messages::{Event, EventKind};
use pluribus_common::wire::decode;

use super::Global;
use crate::output::print_json_line;

/// One line for an event.
pub fn line(e: &Event) -> String {
    let when = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(e.ts_ms));
    let what = match &e.kind {
        EventKind::FleetCreated { fleet, devices } => format!("fleet={fleet} devices={devices}"),
        EventKind::FleetScaled { fleet, from, to } => format!("fleet={fleet} from={from} to={to}"),
        EventKind::FleetDeleted { fleet, reason } => format!("fleet={fleet} reason={reason:?}"),
        EventKind::ShardClaimed {
            fleet,
            shard,
            agent_id,
            devices,
        } => format!("fleet={fleet} shard={shard} agent={agent_id} devices={devices}"),
        EventKind::ShardReleased {
            fleet,
            shard,
            agent_id,
            reason,
        } => format!("fleet={fleet} shard={shard} agent={agent_id} reason={reason:?}"),
        EventKind::ShardFenced {
            fleet,
            shard,
            agent_id,
        } => format!("fleet={fleet} shard={shard} agent={agent_id}"),
        EventKind::AgentJoined { agent_id, name } | EventKind::AgentLeft { agent_id, name } => {
            format!("agent={agent_id} name={name}")
        }
        EventKind::Saturated {
            agent_id,
            name,
            fleets,
        } => format!(
            "agent={agent_id} name={name} fleets={} (the generator is the bottleneck, not the system under test)",
            fleets.join(",")
        ),
        EventKind::DevicesStarted {
            fleet,
            shard,
            agent_id,
            device_ids,
        } => format!(
            "fleet={fleet} shard={shard} agent={agent_id} devices={} ({})",
            device_ids.len(),
            id_span(device_ids)
        ),
        EventKind::DevicesStopped {
            fleet,
            shard,
            agent_id,
            reason,
            device_ids,
        } => format!(
            "fleet={fleet} shard={shard} agent={agent_id} reason={reason:?} devices={} ({})",
            device_ids.len(),
            id_span(device_ids)
        ),
        EventKind::DeviceFailed {
            fleet,
            agent_id,
            device_id,
            error,
            suppressed,
        } => {
            let more = if *suppressed > 0 {
                format!(" (+{suppressed} more failures not shown)")
            } else {
                String::new()
            };
            format!("fleet={fleet} device={device_id} agent={agent_id} error={error:?}{more}")
        }
    };
    format!("{when} {} {what}", e.kind.token())
}

/// The first and last id of a list, or the one id (`--json` has them all).
fn id_span(ids: &[String]) -> String {
    match ids {
        [] => String::new(),
        [one] => one.clone(),
        [first, .., last] => format!("{first} … {last}"),
    }
}

/// `events` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep printing events as they happen (the default: events are not stored, so there
    /// is nothing from before the command started).
    #[arg(long)]
    pub follow: bool,
    /// Stop after this many events (for scripts).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

/// Runs `events`.
pub async fn run(g: &Global, args: Args) -> Result<()> {
    if args.count == Some(0) {
        bail!(
            "--count 0 would print nothing: give 1 or more, or leave it out to follow until Ctrl-C"
        );
    }
    let conn = g.connect().await?;
    let subject = conn.ns.event_all();
    let mut sub = conn
        .client
        .subscribe(subject.clone())
        .await
        .with_context(|| format!("cannot subscribe to {subject}"))?;
    conn.client.flush().await.context("cannot reach NATS")?;
    eprintln!("listening for events on {subject} (Ctrl-C to stop)");
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut printed = 0u64;
    loop {
        let msg = tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            m = sub.next() => m,
        };
        let Some(msg) = msg else {
            bail!("lost the connection to NATS");
        };
        match decode::<Event>(&msg.payload) {
            Ok(e) if g.json => print_json_line(&e)?,
            Ok(e) => println!("{}", line(&e)),
            Err(err) => {
                tracing::warn!("ignoring a message on {}: {err}", msg.subject);
                continue;
            }
        }
        printed += 1;
        if args.count.is_some_and(|n| printed >= n) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_as_one_line() {
        let e = Event {
            v: 1,
            ts_ms: 0,
            kind: EventKind::FleetScaled {
                fleet: "f".into(),
                from: 1,
                to: 2,
            },
        };
        assert_eq!(
            line(&e),
            "1970-01-01T00:00:00.000Z fleet_scaled fleet=f from=1 to=2"
        );
    }

    #[test]
    fn saturated_events_name_the_fleets_and_print_as_json() {
        let e = Event {
            v: 1,
            ts_ms: 0,
            kind: EventKind::Saturated {
                agent_id: "id1".into(),
                name: "a1".into(),
                fleets: vec!["f".into(), "g".into()],
            },
        };
        assert!(
            line(&e).starts_with("1970-01-01T00:00:00.000Z saturated agent=id1 name=a1 fleets=f,g")
        );
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["event"], "saturated");
        assert_eq!(json["fleets"], serde_json::json!(["f", "g"]));
    }
}
