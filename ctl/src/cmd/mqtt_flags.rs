//! The flags of the `mqtt` sink (`--sink mqtt --broker ...`), flattened into the deploy
//! flags. Each flag sets the sink option of the same name (a fleet file uses those names).

use std::net::IpAddr;
use std::time::Duration;

use pluribus_common::spec::{MqttProtocol, MqttRole};
use pluribus_common::SpecError;
use serde_json::Value;

use super::sink_flags::{duration, list, switch, text, FlagOption, SinkFlags};

/// Options of the mqtt sink; they go with `--sink mqtt` only.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "MQTT sink (--sink mqtt)")]
pub struct MqttFlags {
    /// Broker URLs, mqtt://host:port or mqtts://host:port, or MQTT over WebSocket:
    /// ws://host:port/mqtt or wss://host:port/mqtt (comma-separated or repeated); devices
    /// are spread over them.
    #[arg(long, value_name = "URL,...", value_delimiter = ',')]
    pub broker: Vec<String>,
    /// MQTT version [default: 3.1.1].
    #[arg(long, value_name = "3.1.1|5", value_parser = parse_protocol)]
    pub protocol: Option<MqttProtocol>,
    /// Telemetry topic template [default: devices/{device_id}/telemetry].
    #[arg(long, value_name = "TEMPLATE")]
    pub topic: Option<String>,
    /// QoS of telemetry [default: 0].
    #[arg(long, value_name = "0|1|2", value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: Option<u8>,
    /// Publish telemetry retained.
    #[arg(long)]
    pub retain: bool,
    /// Keepalive, e.g. 30s [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub keepalive: Option<Duration>,
    /// Keep the session across connections (clean session / clean start off).
    #[arg(long)]
    pub persistent_session: bool,
    /// Client id template [default: {device_id}].
    #[arg(long, value_name = "TEMPLATE")]
    pub client_id: Option<String>,
    /// MQTT user name: a template, or env:PLURIBUS_SECRET_X / file:NAME read on the agent
    /// (within its --secrets-env-prefix and --secrets-dir).
    #[arg(long, alias = "mqtt-username", value_name = "TEMPLATE")]
    pub username: Option<String>,
    /// MQTT password: prefer env:PLURIBUS_SECRET_X or file:NAME (read on the agent within
    /// its --secrets-env-prefix and --secrets-dir, never stored in NATS); a plain value is
    /// stored with the fleet. (NATS's is --nats-password.)
    #[arg(long, alias = "mqtt-password", value_name = "SECRET")]
    pub password: Option<String>,
    /// CA certificate (PEM) on the agents, for mqtts://.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<String>,
    /// Client certificate (PEM) on the agents, with --key.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<String>,
    /// Client private key (PEM) on the agents, with --cert.
    #[arg(long, value_name = "FILE")]
    pub key: Option<String>,
    /// Most connects started per second by one agent, e.g. 2000 or 2000/s [default:
    /// unlimited].
    #[arg(long, value_name = "R/s", value_parser = parse_rate)]
    pub connect_rate: Option<f64>,
    /// Most connects in flight per agent [default: 64].
    #[arg(long, value_name = "N")]
    pub max_connecting: Option<u32>,
    /// Source addresses to connect from, spread over the devices (comma-separated or
    /// repeated), e.g. 127.0.0.2,127.0.0.3.
    #[arg(long = "source-ip", value_name = "IP,...", value_delimiter = ',')]
    pub source_ips: Vec<IpAddr>,
    /// Topic devices take commands on [default: devices/{device_id}/commands]; "" for none.
    #[arg(long, value_name = "TEMPLATE")]
    pub command_topic: Option<String>,
    /// Where devices publish their replies to commands [default: no replies].
    #[arg(long, value_name = "TEMPLATE")]
    pub response_topic: Option<String>,
    /// A last will, `offline` retained on devices/{device_id}/status.
    #[arg(long)]
    pub will: bool,
    /// A birth message, `online` retained on devices/{device_id}/status at each connect.
    #[arg(long)]
    pub birth: bool,
    /// `publisher`, or `subscriber` (counts what arrives on --subscribe) [default:
    /// publisher].
    #[arg(long, value_name = "ROLE", value_parser = parse_role)]
    pub role: Option<MqttRole>,
    /// The filter a subscriber subscribes to, e.g. 'devices/+/telemetry'.
    #[arg(long, value_name = "FILTER")]
    pub subscribe: Option<String>,
}

fn parse_protocol(s: &str) -> Result<MqttProtocol, String> {
    match s {
        "3.1.1" | "311" | "4" => Ok(MqttProtocol::V311),
        "5" | "5.0" => Ok(MqttProtocol::V5),
        _ => Err(format!("'{s}' is not an MQTT version: use 3.1.1 or 5")),
    }
}

fn parse_role(s: &str) -> Result<MqttRole, String> {
    match s {
        "publisher" | "pub" => Ok(MqttRole::Publisher),
        "subscriber" | "sub" => Ok(MqttRole::Subscriber),
        _ => Err(format!("'{s}' is not a role: use publisher or subscriber")),
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    pluribus_common::spec::per_second(s)
}

impl SinkFlags for MqttFlags {
    const SINK: &'static str = "mqtt";
    const SENDS: &'static str = "publishes on --topic";

    fn options(&self) -> Vec<FlagOption> {
        let status = |on: bool| on.then(|| Value::Object(Default::default()));
        vec![
            ("--broker", "brokers", list(&self.broker)),
            (
                "--protocol",
                "protocol",
                self.protocol.map(|p| match p {
                    MqttProtocol::V311 => "3.1.1".into(),
                    MqttProtocol::V5 => "5".into(),
                }),
            ),
            ("--topic", "topic", text(&self.topic)),
            ("--qos", "qos", self.qos.map(Value::from)),
            ("--retain", "retain", switch(self.retain, Value::Bool(true))),
            ("--keepalive", "keepalive", duration(self.keepalive)),
            (
                "--persistent-session",
                "clean_session",
                switch(self.persistent_session, Value::Bool(false)),
            ),
            ("--client-id", "client_id", text(&self.client_id)),
            ("--username", "username", text(&self.username)),
            ("--password", "password", text(&self.password)),
            ("--ca", "ca", text(&self.ca)),
            ("--cert", "cert", text(&self.cert)),
            ("--key", "key", text(&self.key)),
            (
                "--connect-rate",
                "connect_rate",
                self.connect_rate.map(Value::from),
            ),
            (
                "--max-connecting",
                "max_connecting",
                self.max_connecting.map(Value::from),
            ),
            (
                "--source-ip",
                "source_ips",
                (!self.source_ips.is_empty()).then(|| {
                    self.source_ips
                        .iter()
                        .map(|ip| Value::from(ip.to_string()))
                        .collect()
                }),
            ),
            (
                "--command-topic",
                "command_topic",
                text(&self.command_topic),
            ),
            (
                "--response-topic",
                "response_topic",
                text(&self.response_topic),
            ),
            ("--will", "will", status(self.will)),
            ("--birth", "birth", status(self.birth)),
            (
                "--role",
                "role",
                self.role.map(|r| match r {
                    MqttRole::Publisher => "publisher".into(),
                    MqttRole::Subscriber => "subscriber".into(),
                }),
            ),
            ("--subscribe", "subscribe", text(&self.subscribe)),
        ]
    }

    fn check_required(&self) -> Result<(), SpecError> {
        if self.broker.is_empty() {
            return Err(SpecError::new(
                "--broker",
                "--sink mqtt needs a broker: add e.g. --broker mqtt://127.0.0.1:1883",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::cmd::sink_flags::test_support::sink;
    use crate::cmd::Cli;
    use clap::Parser;

    #[test]
    fn flags_become_the_sink_options() {
        let s = sink(&[
            "--sink",
            "mqtt",
            "--broker",
            "mqtt://a:1883,mqtt://b:1883",
            "--qos",
            "1",
            "--keepalive",
            "30s",
            "--username",
            "u",
            "--password",
            "env:PW",
            "--connect-rate",
            "2000/s",
            "--source-ip",
            "127.0.0.2,127.0.0.3",
            "--will",
            "--protocol",
            "5",
            "--nats-password",
            "nats-secret",
        ])
        .expect("valid");
        assert_eq!(s.kind, "mqtt");
        let o = serde_json::Value::Object(s.options);
        assert_eq!(o["brokers"][1], "mqtt://b:1883");
        assert_eq!(
            (o["qos"].as_u64(), o["keepalive"].as_str()),
            (Some(1), Some("30s"))
        );
        assert_eq!(
            (o["username"].as_str(), o["password"].as_str()),
            (Some("u"), Some("env:PW"))
        );
        assert_eq!(o["connect_rate"], 2000.0);
        assert_eq!(o["source_ips"][1], "127.0.0.3");
        assert_eq!(o["protocol"], "5");
        assert!(o["will"].is_object());
    }

    #[test]
    fn mistakes_name_the_flag_or_field() {
        assert_eq!(sink(&["--qos", "1"]).expect_err("console").field, "--qos");
        assert_eq!(
            sink(&["--sink", "nats", "--broker", "mqtt://h"])
                .expect_err("nats")
                .field,
            "--broker"
        );
        assert_eq!(
            sink(&["--sink", "mqtt"]).expect_err("no broker").field,
            "--broker"
        );
        assert!(sink(&["--sink", "mqtt", "--broker", "ws://h:80/mqtt"]).is_ok());
        let e = sink(&["--sink", "mqtt", "--broker", "http://h:80"]).expect_err("http");
        assert_eq!(e.field, "sink.brokers[0]");
        let e =
            sink(&["--sink", "mqtt", "--broker", "mqtt://h", "--ca", "/ca.pem"]).expect_err("ca");
        assert_eq!(e.field, "sink.ca");
        let e =
            sink(&["--sink", "mqtt", "--broker", "mqtt://h", "--topic", "a/#"]).expect_err("topic");
        assert_eq!(e.field, "sink.topic");
        assert!(Cli::try_parse_from(["pluribusctl", "deploy", "--qos", "3"]).is_err());
    }
}
