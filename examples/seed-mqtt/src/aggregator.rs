//! `mqtt-aggregator`: the seed README's `MQTTTelemetryAggregator`, as a Pluribus sink.
//!
//! Per device it holds one rumqttc client, with client id `clientid` (default: the device
//! id). The client's event loop is polled by a task of its own; the sink only queues
//! requests on the client handle. Like the seed's pair of GenServers:
//!
//! - each telemetry payload is published (QoS 0) to `reports/{clientid}/temperature`
//!   (the seed's `handle_cast({:publish, payload})`);
//! - the client subscribes to `metrics/{clientid}/temperature` (QoS 1) on every connection,
//!   and what arrives is handed to the device through [`SinkContext::inbound`], so the
//!   runner calls the device's `on_message` (the seed's `handle_info({:publish, ...})`).
//!
//! Options, in a fleet file's `sink:`:
//!
//! ```yaml
//! sink:
//!   type: mqtt-aggregator
//!   broker: mqtt://127.0.0.1:1883   # default: the agent's --broker / SEED_MQTT_BROKER
//!   clientid: "{device_id}"          # default; {fleet}, {device_id}, {index} are filled in
//! ```

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pluribus_agent::metrics::FleetMetrics;
use pluribus_agent::sink::{Inbound, Sink, SinkContext, SinkDevice, SinkError, SinkFactory};
use pluribus_common::spec::{BrokerUrl, SinkSpec, Template, TemplateVars};
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

/// The client id when the sink spec gives none: the device id, as in the seed's fleet.
pub const DEFAULT_CLIENTID: &str = "{device_id}";
/// Requests a client may queue before `send` reports the broker as too slow.
const QUEUE: usize = 64;
/// How long `open_device` waits for the connection and the subscription.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two connection attempts.
const RETRY: Duration = Duration::from_secs(1);
/// MQTT keep-alive of each client.
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// How long a closing client may take to send what it queued and DISCONNECT.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The topic a device's telemetry goes to.
pub fn report_topic(clientid: &str) -> String {
    format!("reports/{clientid}/temperature")
}

/// The topic a device takes its metrics from.
pub fn metrics_topic(clientid: &str) -> String {
    format!("metrics/{clientid}/temperature")
}

/// Options of the `mqtt-aggregator` sink, as written in a fleet file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregatorOptions {
    /// Broker URL, `mqtt://host[:port]`; default: the agent's `--broker`.
    #[serde(default)]
    pub broker: Option<String>,
    /// MQTT client id, a template with `{fleet}`, `{device_id}` and `{index}`; default
    /// `{device_id}`. It also names the device's topics.
    #[serde(default)]
    pub clientid: Option<String>,
}

/// The plain-MQTT broker URL `url`, checked; `field` names it in errors.
pub fn parse_broker(field: &str, url: &str) -> Result<BrokerUrl, String> {
    let b = BrokerUrl::parse(field, url).map_err(|e| e.to_string())?;
    if b.is_websocket() {
        return Err(format!(
            "{field}: '{url}' is MQTT over WebSocket, which the seed example does not speak: \
             use the broker's plain listener (mqtt://host:1883), or the built-in `mqtt` sink \
             for ws:// and wss://"
        ));
    }
    if b.tls {
        return Err(format!(
            "{field}: '{url}' is TLS, which the seed example does not speak: use the broker's \
             plain listener (mqtt://host:1883), or the built-in `mqtt` sink for mqtts://"
        ));
    }
    Ok(b)
}

/// A sink spec resolved on the agent.
#[derive(Debug)]
struct Config {
    broker: BrokerUrl,
    clientid: Template,
}

impl Config {
    fn from_spec(spec: &SinkSpec, default_broker: Option<&BrokerUrl>) -> Result<Self, String> {
        let opts: AggregatorOptions =
            serde_json::from_value(serde_json::Value::Object(spec.options.clone())).map_err(
                |e| format!("sink: bad options for the mqtt-aggregator sink ({e}): it takes `broker` and `clientid`"),
            )?;
        let broker = match (&opts.broker, default_broker) {
            (Some(url), _) => parse_broker("sink.broker", url)?,
            (None, Some(b)) => b.clone(),
            (None, None) => {
                return Err(
                    "sink.broker: missing: add `broker: mqtt://HOST:1883` to the sink, \
                     or start seed-mqtt-agent with --broker (or SEED_MQTT_BROKER)"
                        .into(),
                )
            }
        };
        let text = opts.clientid.as_deref().unwrap_or(DEFAULT_CLIENTID);
        let clientid = Template::parse("sink.clientid", text, true).map_err(|e| e.to_string())?;
        Ok(Self { broker, clientid })
    }
}

/// Makes [`AggregatorSink`]s; registered as `mqtt-aggregator`.
#[derive(Debug, Clone, Default)]
pub struct AggregatorFactory {
    default_broker: Option<BrokerUrl>,
}

impl AggregatorFactory {
    /// A factory whose sinks use `broker` when their spec names none.
    pub fn with_default_broker(broker: BrokerUrl) -> Self {
        Self {
            default_broker: Some(broker),
        }
    }
}

impl SinkFactory for AggregatorFactory {
    fn create(&self, spec: &SinkSpec, ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        let cfg = Config::from_spec(spec, self.default_broker.as_ref()).map_err(SinkError)?;
        Ok(Box::new(AggregatorSink {
            cfg,
            inbound: ctx.inbound.clone(),
            metrics: ctx.metrics.clone(),
            devices: HashMap::new(),
            tasks: TaskTracker::new(),
        }))
    }

    fn holds_connections(&self) -> bool {
        true
    }
}

/// The sink of one shard: an MQTT client per open device.
#[derive(Debug)]
pub struct AggregatorSink {
    cfg: Config,
    inbound: mpsc::Sender<Inbound>,
    metrics: Arc<FleetMetrics>,
    /// Open devices by index.
    devices: HashMap<u64, Client>,
    /// The clients' tasks, awaited when the shard stops (so their DISCONNECTs go out).
    tasks: TaskTracker,
}

/// One device's client handle. Dropping it stops the client's task, which disconnects.
#[derive(Debug)]
struct Client {
    clientid: String,
    client: AsyncClient,
    report_topic: String,
    _stop: DropGuard,
}

impl AggregatorSink {
    fn clientid_of(&self, dev: &SinkDevice<'_>) -> Result<String, SinkError> {
        let id = self.cfg.clientid.render(&TemplateVars {
            fleet: dev.fleet,
            device_id: Some(dev.device_id),
            index: dev.index,
        });
        if id.is_empty() || id.contains(['/', '+', '#']) {
            return Err(SinkError(format!(
                "sink.clientid: '{id}' (device {}) cannot name MQTT topics: use letters, digits, '-' and '_'",
                dev.device_id
            )));
        }
        if self.devices.values().any(|c| c.clientid == id) {
            return Err(SinkError(format!(
                "sink.clientid: '{id}' (device {}) is already used by another device: give each device its own clientid (default {DEFAULT_CLIENTID})",
                dev.device_id
            )));
        }
        Ok(id)
    }
}

#[async_trait]
impl Sink for AggregatorSink {
    /// Starts the device's client and waits until it is connected and subscribed.
    async fn open_device(&mut self, dev: &SinkDevice<'_>) -> Result<(), SinkError> {
        let clientid = self.clientid_of(dev)?;
        let b = &self.cfg.broker;
        let mut opts = MqttOptions::new(clientid.clone(), b.host.clone(), b.port);
        opts.set_keep_alive(KEEP_ALIVE).set_clean_session(true);
        let (client, eventloop) = AsyncClient::new(opts, QUEUE);
        let stop = CancellationToken::new();
        let (ready_tx, ready_rx) = oneshot::channel();
        self.tasks.spawn(drive(Driver {
            eventloop,
            client: client.clone(),
            device_id: dev.device_id.to_string(),
            index: dev.index,
            metrics_topic: metrics_topic(&clientid),
            inbound: self.inbound.clone(),
            metrics: self.metrics.clone(),
            stop: stop.clone(),
            ready: Some(ready_tx),
        }));
        self.devices.insert(
            dev.index,
            Client {
                report_topic: report_topic(&clientid),
                clientid: clientid.clone(),
                client,
                _stop: stop.drop_guard(),
            },
        );
        match tokio::time::timeout(OPEN_TIMEOUT, ready_rx).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(SinkError(format!(
                "device {}: not connected and subscribed to mqtt://{}:{} as '{clientid}' within {OPEN_TIMEOUT:?}: \
                 check that the broker runs and accepts the client (still retrying)",
                dev.device_id, b.host, b.port
            ))),
        }
    }

    /// Queues the payload on `reports/{clientid}/temperature`; never waits for the broker.
    async fn send(&mut self, dev: &SinkDevice<'_>, payload: Bytes) -> Result<(), SinkError> {
        let c = self.devices.get(&dev.index).ok_or_else(|| {
            SinkError(format!(
                "device {} has no MQTT client: the sink did not open it",
                dev.device_id
            ))
        })?;
        c.client
            .try_publish(c.report_topic.as_str(), QoS::AtMostOnce, false, payload)
            .map_err(|e| {
                self.metrics.publish_failed.fetch_add(1, Relaxed);
                SinkError(format!(
                    "device {}: report not queued ({e}): the broker connection is down or too slow",
                    dev.device_id
                ))
            })
    }

    async fn close_device(&mut self, dev: &SinkDevice<'_>) {
        // Dropping the handle cancels the task, which sends what is queued and disconnects.
        self.devices.remove(&dev.index);
    }

    /// Waits for the clients' tasks: each sends what is queued and disconnects.
    async fn close(&mut self) {
        self.devices.clear();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// The device refused a metrics message (not JSON): say so in the agent's log.
    async fn reply(&mut self, dev: &SinkDevice<'_>, payload: Bytes) -> Result<(), SinkError> {
        tracing::warn!(
            device = %dev.device_id,
            reply = %String::from_utf8_lossy(&payload),
            "device answered a metrics message"
        );
        Ok(())
    }
}

/// What a client's task needs.
struct Driver {
    eventloop: EventLoop,
    client: AsyncClient,
    device_id: String,
    index: u64,
    metrics_topic: String,
    inbound: mpsc::Sender<Inbound>,
    metrics: Arc<FleetMetrics>,
    stop: CancellationToken,
    /// Told once, at the first SUBACK.
    ready: Option<oneshot::Sender<()>>,
}

/// A short reason for the metrics' connect-failure counts.
fn reason(e: &ConnectionError) -> &'static str {
    match e {
        ConnectionError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => "refused",
        ConnectionError::Io(_) => "io",
        ConnectionError::NetworkTimeout | ConnectionError::FlushTimeout => "timeout",
        ConnectionError::ConnectionRefused(_) => "connack",
        _ => "protocol",
    }
}

/// Polls one client's event loop until the device is closed: subscribes on every
/// connection, forwards metrics to the device, reconnects after a pause.
async fn drive(mut d: Driver) {
    let (mut up, mut was_up) = (false, false);
    loop {
        let ev = tokio::select! {
            biased;
            _ = d.stop.cancelled() => break,
            ev = d.eventloop.poll() => ev,
        };
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if was_up {
                    d.metrics.reconnects.fetch_add(1, Relaxed);
                }
                (up, was_up) = (true, true);
                d.metrics.connected.fetch_add(1, Relaxed);
                // A clean session forgets subscriptions: subscribe on every connection.
                if let Err(e) = d
                    .client
                    .try_subscribe(d.metrics_topic.as_str(), QoS::AtLeastOnce)
                {
                    tracing::warn!(device = %d.device_id, error = %e, "could not subscribe to metrics");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                if let Some(tx) = d.ready.take() {
                    let _ = tx.send(());
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == d.metrics_topic => {
                // The shard's queue is bounded: a full queue drops the message (the
                // agent counts what its own sinks drop; this example just skips it).
                let _ = d.inbound.try_send(Inbound {
                    index: d.index,
                    payload: p.payload,
                });
            }
            Ok(_) => {}
            Err(e) => {
                if up {
                    up = false;
                    d.metrics.connected.fetch_sub(1, Relaxed);
                    d.metrics.disconnects.fetch_add(1, Relaxed);
                } else {
                    d.metrics.connect_failed(reason(&e));
                }
                tracing::warn!(device = %d.device_id, error = %e, "MQTT connection failed; retrying in {RETRY:?}");
                tokio::select! {
                    _ = d.stop.cancelled() => break,
                    _ = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    }
    if up {
        // Send what is queued (an on_stop message, say), then DISCONNECT.
        let _ = d.client.try_disconnect();
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            while let Ok(ev) = d.eventloop.poll().await {
                if matches!(ev, Event::Outgoing(Outgoing::Disconnect)) {
                    break;
                }
            }
        })
        .await;
        d.metrics.connected.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(options: serde_json::Value) -> SinkSpec {
        SinkSpec {
            kind: "mqtt-aggregator".into(),
            options: options.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn options_resolve_with_the_agent_default_and_errors_say_what_to_do() {
        let c = Config::from_spec(&spec(serde_json::json!({"broker": "mqtt://h:1884"})), None)
            .expect("broker given");
        assert_eq!((c.broker.host.as_str(), c.broker.port), ("h", 1884));
        let default = parse_broker("--broker", "mqtt://d").expect("valid");
        let c = Config::from_spec(&spec(serde_json::json!({})), Some(&default)).expect("default");
        assert_eq!((c.broker.host.as_str(), c.broker.port), ("d", 1883));

        let e = Config::from_spec(&spec(serde_json::json!({})), None).expect_err("no broker");
        assert!(e.contains("SEED_MQTT_BROKER"), "{e}");
        let e = Config::from_spec(&spec(serde_json::json!({"subject": "x"})), Some(&default))
            .expect_err("unknown option");
        assert!(e.contains("subject") && e.contains("clientid"), "{e}");
        let e = Config::from_spec(
            &spec(serde_json::json!({"broker": "mqtts://h"})),
            Some(&default),
        )
        .expect_err("tls");
        assert!(e.contains("mqtt://"), "{e}");
        for ws in ["ws://h/mqtt", "wss://h"] {
            let e = parse_broker("--broker", ws).expect_err("websocket");
            assert!(e.contains("WebSocket") && e.contains("mqtt://"), "{e}");
        }
        let e = Config::from_spec(
            &spec(serde_json::json!({"clientid": "{nope}"})),
            Some(&default),
        )
        .expect_err("bad template");
        assert!(e.starts_with("sink.clientid"), "{e}");
    }

    #[tokio::test]
    async fn client_ids_render_per_device_and_must_be_unique() {
        let (tx, _rx) = mpsc::channel(16);
        let cfg = Config::from_spec(
            &spec(
                serde_json::json!({"broker": "mqtt://127.0.0.1:1", "clientid": "{fleet}-{index}"}),
            ),
            None,
        )
        .expect("valid");
        let mut sink = AggregatorSink {
            cfg,
            inbound: tx,
            metrics: Arc::default(),
            devices: HashMap::new(),
            tasks: TaskTracker::new(),
        };
        let dev = SinkDevice {
            device_id: "d7",
            fleet: "f",
            index: 7,
        };
        assert_eq!(sink.clientid_of(&dev).expect("renders"), "f-7");
        let (client, _eventloop) = AsyncClient::new(MqttOptions::new("f-7", "127.0.0.1", 1), 1);
        sink.devices.insert(
            7,
            Client {
                clientid: "f-7".into(),
                client,
                report_topic: report_topic("f-7"),
                _stop: CancellationToken::new().drop_guard(),
            },
        );
        let e = sink.clientid_of(&dev).expect_err("taken");
        assert!(e.0.contains("already used"), "{e}");
        assert_eq!(report_topic("fleet_1_1"), "reports/fleet_1_1/temperature");
        assert_eq!(metrics_topic("fleet_1_1"), "metrics/fleet_1_1/temperature");
    }
}
