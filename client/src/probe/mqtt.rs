//! The probe on an MQTT broker: rumqttc's client, its event loop polled by a task of its
//! own, subscribed to one topic filter (again after each reconnect). The broker may be
//! `mqtt://`, `mqtts://`, `ws://` or `wss://` (parsed by [`BrokerUrl`], as the mqtt sink's).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use pluribus_common::spec::BrokerUrl;
use rumqttc::{
    AsyncClient, Event, MqttOptions, Packet, QoS, SubscribeReasonCode, TlsConfiguration, Transport,
};
use rustls::ClientConfig;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{now_us, Delivery, QUEUE};

/// Where and how to subscribe.
#[derive(Debug, Clone)]
pub struct MqttProbe {
    /// The broker.
    pub broker: BrokerUrl,
    /// TLS settings, for `mqtts://` and `wss://` brokers.
    pub tls: Option<Arc<ClientConfig>>,
    /// Topic filter.
    pub topic: String,
    /// Subscription QoS (0, 1 or 2).
    pub qos: u8,
    /// User name and password, if the broker wants them.
    pub credentials: Option<(String, String)>,
}

/// The broker as a URL: `mqtt://h:1883`, `wss://h:443/mqtt`, … (what rumqttc's WebSocket
/// transport connects to, and what the probe's messages show).
pub fn url(b: &BrokerUrl) -> String {
    let scheme = match (b.is_websocket(), b.tls) {
        (false, false) => "mqtt",
        (false, true) => "mqtts",
        (true, false) => "ws",
        (true, true) => "wss",
    };
    let host = if b.host.contains(':') {
        format!("[{}]", b.host)
    } else {
        b.host.clone()
    };
    format!(
        "{scheme}://{host}:{}{}",
        b.port,
        b.ws_path.as_deref().unwrap_or("")
    )
}

/// The rumqttc options for `p` (client id `id`): the transport follows the URL's scheme.
fn options(p: &MqttProbe, id: String) -> Result<MqttOptions> {
    let b = &p.broker;
    let tls = || -> Result<TlsConfiguration> {
        let config = p
            .tls
            .clone()
            .ok_or_else(|| anyhow!("{}: TLS broker without a TLS setup", url(b)))?;
        Ok(TlsConfiguration::Rustls(config))
    };
    Ok(if b.is_websocket() {
        // rumqttc takes the whole ws:// URL (with the path) as the host of a WebSocket.
        let mut opts = MqttOptions::new(id, url(b), b.port);
        opts.set_transport(if b.tls {
            Transport::wss_with_config(tls()?)
        } else {
            Transport::Ws
        });
        opts
    } else {
        let mut opts = MqttOptions::new(id, b.host.clone(), b.port);
        if b.tls {
            opts.set_transport(Transport::tls_with_config(tls()?));
        }
        opts
    })
}

/// Adds a hint to a connection error that looks like a TLS certificate problem.
fn explain(e: &rumqttc::ConnectionError) -> String {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    let hint = if lower.contains("invalid peer certificate") {
        "the broker's certificate is not trusted: give --ca, the CA that signed it (and check that it names the host in --broker)"
    } else if lower.contains("fatal alert: certificaterequired") {
        "the broker wants a client certificate: give --cert and --key"
    } else if lower.contains("fatal alert") && lower.contains("cert") {
        "the broker refused the client certificate given with --cert"
    } else {
        return text;
    };
    format!("{text} (TLS: {hint})")
}

/// Checks a topic filter; the error names `--topic`.
pub fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() || !rumqttc::valid_filter(topic) {
        return Err(format!(
            "--topic '{topic}' is not an MQTT topic filter: e.g. telemetry/# or devices/+/data"
        ));
    }
    Ok(())
}

fn qos(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// Connects and subscribes; returns once the broker acknowledged the subscription, with
/// the deliveries to come. The event loop runs until `token` is cancelled.
pub async fn subscribe(
    p: &MqttProbe,
    token: CancellationToken,
) -> Result<mpsc::Receiver<Delivery>> {
    let id = format!("pluribusctl-probe-{}", uuid::Uuid::new_v4().simple());
    let mut opts = options(p, id)?;
    opts.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_max_packet_size(16 * 1024 * 1024, 64 * 1024);
    if let Some((user, pass)) = &p.credentials {
        opts.set_credentials(user.clone(), pass.clone());
    }
    let (client, mut events) = AsyncClient::new(opts, 64);
    let (tx, rx) = mpsc::channel(QUEUE);
    let (ready_tx, ready_rx) = oneshot::channel::<Result<(), String>>();
    let (topic, q) = (p.topic.clone(), qos(p.qos));
    let broker = url(&p.broker);
    tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        loop {
            let ev = tokio::select! {
                _ = token.cancelled() => break,
                ev = events.poll() => ev,
            };
            match ev {
                Ok(Event::Incoming(Packet::Publish(m))) => {
                    let d = Delivery {
                        payload: m.payload,
                        recv_us: now_us(),
                    };
                    if tx.send(d).await.is_err() {
                        break;
                    }
                }
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    // A clean session forgets the subscription: ask again on every connect.
                    if let Err(e) = client.try_subscribe(topic.clone(), q) {
                        tracing::warn!(error = %e, "cannot subscribe");
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    let refused = ack.return_codes.contains(&SubscribeReasonCode::Failure);
                    if let Some(r) = ready.take() {
                        let _ = r.send(if refused {
                            Err(format!("the broker refused the subscription to '{topic}' (--topic): check its ACLs"))
                        } else {
                            Ok(())
                        });
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Err(format!(
                            "cannot connect to the MQTT broker at {broker} (--broker): {}",
                            explain(&e)
                        )));
                        break;
                    }
                    tracing::warn!(error = %e, "MQTT connection lost; reconnecting");
                    tokio::select! {
                        _ = token.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        let _ = client.try_disconnect();
    });
    match tokio::time::timeout(Duration::from_secs(15), ready_rx).await {
        Ok(Ok(Ok(()))) => Ok(rx),
        Ok(Ok(Err(e))) => Err(anyhow!(e)),
        Ok(Err(_)) => bail!("the MQTT event loop stopped before subscribing"),
        Err(_) => bail!(
            "the MQTT broker did not acknowledge the subscription within 15s (--broker, --topic)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(url: &str) -> BrokerUrl {
        BrokerUrl::parse("--broker", url).expect("a broker URL")
    }

    #[test]
    fn urls_show_scheme_host_port_and_path() {
        assert_eq!(url(&broker("mqtt://h")), "mqtt://h:1883");
        assert_eq!(url(&broker("tcp://10.0.0.1:1884")), "mqtt://10.0.0.1:1884");
        assert_eq!(url(&broker("mqtts://[::1]")), "mqtts://[::1]:8883");
        assert_eq!(url(&broker("ws://h:8080")), "ws://h:8080/mqtt");
        assert_eq!(url(&broker("wss://h/x?y=1")), "wss://h:443/x?y=1");
    }

    #[test]
    fn the_transport_follows_the_scheme() {
        let p = |b: &str, tls: bool| MqttProbe {
            broker: broker(b),
            tls: tls.then(|| {
                Arc::new(
                    ClientConfig::builder_with_provider(Arc::new(
                        rustls::crypto::ring::default_provider(),
                    ))
                    .with_safe_default_protocol_versions()
                    .expect("versions")
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
                )
            }),
            topic: "t/#".into(),
            qos: 1,
            credentials: None,
        };
        let o = options(&p("mqtt://h:1", false), "id".into()).expect("tcp");
        assert!(matches!(o.transport(), Transport::Tcp));
        assert_eq!(o.broker_address(), ("h".into(), 1));
        let o = options(&p("mqtts://h:2", true), "id".into()).expect("tls");
        assert!(matches!(o.transport(), Transport::Tls(_)));
        assert_eq!(o.broker_address(), ("h".into(), 2));
        let o = options(&p("ws://h:3/m", false), "id".into()).expect("ws");
        assert!(matches!(o.transport(), Transport::Ws));
        assert_eq!(o.broker_address(), ("ws://h:3/m".into(), 3));
        let o = options(&p("wss://h", true), "id".into()).expect("wss");
        assert!(matches!(o.transport(), Transport::Wss(_)));
        assert_eq!(o.broker_address(), ("wss://h:443/mqtt".into(), 443));
        assert!(options(&p("wss://h", false), "id".into()).is_err());
    }

    #[test]
    fn certificate_errors_get_a_hint_naming_the_flag() {
        let io = |m: &str| {
            rumqttc::ConnectionError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, m))
        };
        let e = explain(&io("invalid peer certificate: UnknownIssuer"));
        assert!(
            e.ends_with(
                "give --ca, the CA that signed it (and check that it names the host in --broker))"
            ),
            "{e}"
        );
        let e = explain(&io("received fatal alert: CertificateRequired"));
        assert!(e.ends_with("give --cert and --key)"), "{e}");
        let e = explain(&io("received fatal alert: BadCertificate"));
        assert!(e.contains("refused the client certificate"), "{e}");
        assert_eq!(
            explain(&io("connection refused")),
            "I/O: connection refused"
        );
    }

    #[test]
    fn topic_filters_are_checked() {
        assert!(check_topic("a/+/b/#").is_ok());
        assert!(check_topic("a/#/b").unwrap_err().contains("--topic"));
        assert!(check_topic("").is_err());
    }
}
