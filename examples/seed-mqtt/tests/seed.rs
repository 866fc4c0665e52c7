//! The seed README's scenario end to end: real nats-server and mosquitto, a stock
//! `pluribus-agent` and a `seed-mqtt-agent` in one namespace, driven with the real
//! `pluribusctl`; metrics published by a test MQTT client come back in the devices' reports.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use pluribus_testkit::{bin_path, run, wait_until, Mosquitto, NatsServer, Output, Proc};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::{mpsc, oneshot};

const NS: &str = "seed";

/// A namespace with its servers and agents.
struct Cluster {
    nats: NatsServer,
    mqtt: Mosquitto,
    agents: Vec<Proc>,
}

impl Cluster {
    fn start() -> Self {
        Self {
            nats: NatsServer::start(),
            mqtt: Mosquitto::start(),
            agents: Vec::new(),
        }
    }

    /// Starts `bin` as agent `name`, with `envs`.
    fn agent(&mut self, bin: &str, name: &str, envs: &[(&str, &str)]) {
        let url = self.nats.url();
        let args = [
            "--nats-url",
            url.as_str(),
            "--namespace",
            NS,
            "--name",
            name,
            "--heartbeat",
            "500ms",
        ];
        let mut env = vec![("RUST_LOG", "info,async_nats=warn")];
        env.extend_from_slice(envs);
        self.agents.push(Proc::spawn(&bin_path(bin), &args, &env));
    }

    fn ctl(&self, args: &[&str]) -> Output {
        run(
            &bin_path("pluribusctl"),
            args,
            &[
                ("PLURIBUS_NATS_URL", self.nats.url().as_str()),
                ("PLURIBUS_NAMESPACE", NS),
            ],
            Duration::from_secs(90),
        )
    }

    fn status(&self) -> serde_json::Value {
        self.ctl(&["status", "--json"]).ok().json()
    }

    /// Waits until `check` holds for `status --json`.
    async fn wait_status(&self, what: &str, check: impl Fn(&serde_json::Value) -> bool) {
        wait_until(what, Duration::from_secs(30), || {
            let ok = check(&self.status());
            async move { ok }
        })
        .await;
    }

    /// The agents' logs, for failure messages.
    fn logs(&self) -> String {
        self.agents
            .iter()
            .map(|a| a.stderr())
            .collect::<Vec<_>>()
            .join("\n----\n")
    }
}

/// `fleets[]` entry `name` of a status document.
fn fleet<'a>(status: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    status["fleets"]
        .as_array()?
        .iter()
        .find(|f| f["name"] == name)
}

/// Names of the agents running `name`, with their device counts.
fn shares(status: &serde_json::Value, name: &str) -> Vec<(String, u64)> {
    fleet(status, name)
        .and_then(|f| f["agents"].as_array())
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["agent_name"].as_str().unwrap_or_default().to_string(),
                        s["assigned"].as_u64().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A report seen on `reports/+/temperature`: (topic, payload).
type Report = (String, serde_json::Value);

/// A test MQTT client subscribed to every device's reports; returns once subscribed.
async fn reports_client(broker: &Mosquitto) -> (AsyncClient, mpsc::UnboundedReceiver<Report>) {
    let mut opts = MqttOptions::new("seed-test", "127.0.0.1", broker.port());
    opts.set_keep_alive(Duration::from_secs(10));
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    let (tx, rx) = mpsc::unbounded_channel();
    let (subscribed, ready) = oneshot::channel();
    client
        .subscribe("reports/+/temperature", QoS::AtMostOnce)
        .await
        .expect("queue subscribe");
    // The event loop is polled by a task of its own.
    tokio::spawn(async move {
        let mut subscribed = Some(subscribed);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(s) = subscribed.take() {
                        let _ = s.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let v = serde_json::from_slice(&p.payload).expect("reports are JSON");
                    if tx.send((p.topic.clone(), v)).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                // The broker went away (end of the test): dropping `tx` tells the reader.
                Err(e) => {
                    eprintln!("test MQTT client: {e}");
                    return;
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready)
        .await
        .expect("subscribed within 10s")
        .expect("SUBACK");
    (client, rx)
}

/// Waits for a report of `device`, with `check` holding on its `data`; publishes `metrics`
/// (if any) to the device's metrics topic before each wait of one second.
async fn expect_report(
    client: &AsyncClient,
    rx: &mut mpsc::UnboundedReceiver<Report>,
    device: &str,
    metrics: Option<serde_json::Value>,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut last = None;
    loop {
        if let Some(m) = &metrics {
            client
                .publish(
                    format!("metrics/{device}/temperature"),
                    QoS::AtLeastOnce,
                    false,
                    m.to_string(),
                )
                .await
                .expect("queue metrics");
        }
        let second = tokio::time::Instant::now() + Duration::from_secs(1);
        while let Ok(got) = tokio::time::timeout_at(second, rx.recv()).await {
            let Some((topic, report)) = got else {
                panic!("the test MQTT client lost its connection (see its error above)");
            };
            if report["device_id"] != device {
                continue;
            }
            assert_eq!(topic, format!("reports/{device}/temperature"));
            if check(&report["data"]) {
                return report;
            }
            last = Some(report);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no report of {device} matched within 30s; last report: {last:?}"
        );
    }
}

fn fleet_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fleet.yaml")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_readme_runs_on_the_agent_that_knows_its_types() {
    let mut c = Cluster::start();
    let broker = c.mqtt.url();
    let (client, mut reports) = reports_client(&c.mqtt).await;

    // A stock agent first: it does not know mqtt-metrics / mqtt-aggregator and refuses.
    c.agent("pluribus-agent", "stock", &[]);
    c.wait_status("the stock agent", |s| {
        s["agents"].as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    // Pluribus.deploy_device(MQTTVirtualDevice, aggregator_module: MQTTTelemetryAggregator)
    c.ctl(&[
        "deploy",
        "--device-id",
        "sensor-1",
        "--type",
        "mqtt-metrics",
        "--sink",
        "mqtt-aggregator",
        "--interval",
        "300ms",
        "--no-wait",
    ])
    .ok();
    c.wait_status("sensor-1 refused by the stock agent", |s| {
        fleet(s, "sensor-1").is_some_and(|f| {
            f["pending"] == 1
                && f["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("mqtt-metrics"))
        })
    })
    .await;

    // The seed agent joins and takes the device; its broker comes from SEED_MQTT_BROKER.
    c.agent("seed-mqtt-agent", "seed", &[("SEED_MQTT_BROKER", &broker)]);
    c.wait_status("sensor-1 running on the seed agent", |s| {
        shares(s, "sensor-1") == [("seed".to_string(), 1)]
    })
    .await;

    // Before any metrics, the report's data is null (the seed's metrics were nil).
    let first = expect_report(&client, &mut reports, "sensor-1", None, |d| d.is_null()).await;
    assert_eq!(first["device_type"], "MQTT_Sensor", "{first}");
    assert!(first["timestamp"].as_u64().is_some() && first["seq"].as_u64().is_some());
    // Metrics published on its topic come back in a later report.
    let r = expect_report(
        &client,
        &mut reports,
        "sensor-1",
        Some(serde_json::json!({"temperature": 21.5})),
        |d| d["temperature"] == 21.5,
    )
    .await;
    assert!(
        r["seq"].as_u64() > first["seq"].as_u64(),
        "{first} then {r}"
    );

    // Pluribus.deploy_fleet([... fleet_1_1, fleet_1_2, fleet_1_3 ...]), with both agents alive.
    let path = fleet_file();
    let doc = c
        .ctl(&[
            "deploy-fleet",
            "--file",
            path.to_str().expect("utf-8 path"),
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(doc["running"], 3, "{doc}\n{}", c.logs());
    for (i, id) in ["fleet_1_1", "fleet_1_2", "fleet_1_3"].iter().enumerate() {
        let t = 30.0 + i as f64;
        expect_report(
            &client,
            &mut reports,
            id,
            Some(serde_json::json!({"temperature": t})),
            |d| d["temperature"] == t,
        )
        .await;
    }

    // Everything runs on the seed agent; the stock agent, alive, runs nothing.
    let s = c.status();
    assert_eq!(shares(&s, "sensor-1"), [("seed".to_string(), 1)], "{s:#}");
    assert_eq!(shares(&s, "fleet_1"), [("seed".to_string(), 3)], "{s:#}");
    let stock = s["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == "stock"))
        .unwrap_or_else(|| panic!("no stock agent in {s:#}"));
    assert_eq!(
        (stock["alive"].clone(), stock["devices"].clone()),
        (true.into(), 0.into())
    );
}
