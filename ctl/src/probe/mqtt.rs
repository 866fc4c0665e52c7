//! The probe on an MQTT broker: rumqttc's client, its event loop polled by a task of its
//! own, subscribed to one topic filter (again after each reconnect).

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, SubscribeReasonCode};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{now_us, Delivery, QUEUE};

/// Where and how to subscribe.
#[derive(Debug, Clone)]
pub struct MqttProbe {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Topic filter.
    pub topic: String,
    /// Subscription QoS (0, 1 or 2).
    pub qos: u8,
    /// User name and password, if the broker wants them.
    pub credentials: Option<(String, String)>,
}

/// Parses `mqtt://host[:port]` (or `tcp://`); the error names `--broker`.
pub fn parse_broker(url: &str) -> Result<(String, u16), String> {
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .ok_or_else(|| {
            format!("--broker {url}: write mqtt://HOST[:PORT] (TLS brokers are not supported by the probe yet)")
        })?;
    let rest = rest.trim_end_matches('/');
    let port_of = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("--broker {url}: '{p}' is not a port number"))
    };
    let (host, port) = match rest.strip_prefix('[') {
        // [v6 address]:port
        Some(r) => match r.split_once(']') {
            Some((h, "")) => (h, 1883),
            Some((h, p)) => (h, port_of(p.trim_start_matches(':'))?),
            None => ("", 0),
        },
        None => match rest.rsplit_once(':') {
            Some((h, p)) => (h, port_of(p)?),
            None => (rest, 1883),
        },
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err(format!(
            "--broker {url}: no host: write mqtt://HOST[:PORT], e.g. mqtt://127.0.0.1:1883"
        ));
    }
    Ok((host.to_string(), port))
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
    let mut opts = MqttOptions::new(id, p.host.clone(), p.port);
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
    let broker = format!("mqtt://{}:{}", p.host, p.port);
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
                            "cannot connect to the MQTT broker at {broker} (--broker): {e}"
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

    #[test]
    fn broker_urls_parse_and_errors_name_the_flag() {
        assert_eq!(parse_broker("mqtt://h:1884"), Ok(("h".into(), 1884)));
        assert_eq!(
            parse_broker("tcp://10.0.0.1"),
            Ok(("10.0.0.1".into(), 1883))
        );
        assert_eq!(parse_broker("mqtt://[::1]:1883/"), Ok(("::1".into(), 1883)));
        assert!(parse_broker("http://h").unwrap_err().contains("--broker"));
        assert!(parse_broker("mqtt://h:x").unwrap_err().contains("port"));
        assert!(parse_broker("mqtt://").unwrap_err().contains("no host"));
        assert_eq!(parse_broker("mqtt://[::1]"), Ok(("::1".into(), 1883)));
        assert!(check_topic("a/+/b/#").is_ok());
        assert!(check_topic("a/#/b").unwrap_err().contains("--topic"));
        assert!(check_topic("").is_err());
    }
}
