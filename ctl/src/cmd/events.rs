//! `events`: the recent events kept by NATS (`--since`), then new ones as they happen
//! (`--follow`).

use std::time::{Duration, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use futures::StreamExt;
use pluribus_common::connect::Connection;
use pluribus_common::kv;
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
        EventKind::FleetRefused {
            fleet,
            agent_id,
            reason,
        } => format!("fleet={fleet} agent={agent_id} reason={reason:?}"),
        EventKind::PartitionStarted {
            fleet,
            shard,
            agent_id,
            devices,
        }
        | EventKind::PartitionEnded {
            fleet,
            shard,
            agent_id,
            devices,
        } => format!("fleet={fleet} shard={shard} agent={agent_id} devices={devices}"),
        EventKind::NetworkChanged {
            fleet,
            change,
            rules,
        } => format!("fleet={fleet} change={change:?} runtime_rules={rules}"),
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
    /// Show the events of this last stretch of time first (NATS keeps them for
    /// --events-max-age, 24h by default); 0s shows none.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub since: Duration,
    /// Then keep printing events as they happen, until Ctrl-C (or --count).
    #[arg(long)]
    pub follow: bool,
    /// Stop after this many events (for scripts).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

/// How long the event history may go quiet before we give up on it.
const HISTORY_STALL: Duration = Duration::from_secs(10);

/// Prints events: `count` bounds how many, in all.
struct Printer {
    json: bool,
    printed: u64,
    count: Option<u64>,
}

impl Printer {
    /// Prints one message; true when --count is reached.
    fn print(&mut self, subject: &str, payload: &[u8]) -> Result<bool> {
        match decode::<Event>(payload) {
            Ok(e) if self.json => print_json_line(&e)?,
            Ok(e) => println!("{}", line(&e)),
            Err(err) => {
                tracing::warn!("ignoring a message on {subject}: {err}");
                return Ok(false);
            }
        }
        self.printed += 1;
        Ok(self.count.is_some_and(|n| self.printed >= n))
    }
}

/// Runs `events`.
pub async fn run(g: &Global, args: Args) -> Result<()> {
    if args.count == Some(0) {
        bail!(
            "--count 0 would print nothing: give 1 or more, or leave it out to follow until Ctrl-C"
        );
    }
    let conn = g.connect().await?;
    let mut out = Printer {
        json: g.json,
        printed: 0,
        count: args.count,
    };
    let stream = kv::open_events(&conn.js, &conn.ns, conn.kv_replicas, conn.events).await;
    match stream {
        Ok(stream) => from_stream(&conn, stream, &args, &mut out).await,
        Err(e) if args.follow => {
            eprintln!("warning: {e}: showing new events only");
            live(&conn, &mut out).await
        }
        Err(e) => bail!("{e}: no event history here; `--follow` shows new events"),
    }
}

/// The history since `--since`, then (with `--follow`) new events, from the events stream.
async fn from_stream(
    conn: &Connection,
    stream: async_nats::jetstream::stream::Stream,
    args: &Args,
    out: &mut Printer,
) -> Result<()> {
    use async_nats::jetstream::consumer::{pull, DeliverPolicy};
    let deliver_policy = if args.since.is_zero() {
        DeliverPolicy::New
    } else {
        let from = std::time::SystemTime::now()
            .checked_sub(args.since)
            .unwrap_or(UNIX_EPOCH)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let start_time = time::OffsetDateTime::from_unix_timestamp_nanos(from.as_nanos() as i128)
            .context("--since reaches too far back")?;
        DeliverPolicy::ByStartTime { start_time }
    };
    let subject = conn.ns.event_all();
    let mut consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: subject.clone(),
            deliver_policy,
            ..Default::default()
        })
        .await
        .context("cannot read the events stream")?;
    let mut pending = consumer.info().await.map(|i| i.num_pending).unwrap_or(0);
    let mut messages = consumer
        .messages()
        .await
        .context("cannot read the events stream")?;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    while pending > 0 {
        let next = tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            m = tokio::time::timeout(HISTORY_STALL, messages.next()) => m,
        };
        let msg = match next {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(e))) => bail!("reading the event history: {e}"),
            Ok(None) => bail!("lost the connection to NATS"),
            Err(_) => bail!("NATS stopped sending the event history: try again"),
        };
        pending = msg.info().map(|i| i.pending).unwrap_or(0);
        if out.print(&msg.subject, &msg.payload)? {
            return Ok(());
        }
    }
    if !args.follow {
        if out.printed == 0 {
            eprintln!(
                "no events in the last {} (--since to look further back, --follow to wait for new ones)",
                humantime::format_duration(args.since)
            );
        }
        return Ok(());
    }
    eprintln!("listening for events on {subject} (Ctrl-C to stop)");
    loop {
        let next = tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            m = messages.next() => m,
        };
        match next {
            Some(Ok(msg)) => {
                if out.print(&msg.subject, &msg.payload)? {
                    return Ok(());
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "events stream hiccup; carrying on"),
            None => bail!("lost the connection to NATS"),
        }
    }
}

/// New events only, straight from the subject (when there is no events stream).
async fn live(conn: &Connection, out: &mut Printer) -> Result<()> {
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
    loop {
        let msg = tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            m = sub.next() => m,
        };
        let Some(msg) = msg else {
            bail!("lost the connection to NATS");
        };
        if out.print(&msg.subject, &msg.payload)? {
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
