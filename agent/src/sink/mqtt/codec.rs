//! MQTT packets, 3.1.1 and 5: rumqttc's `mqttbytes` codecs for CONNECT, SUBSCRIBE and
//! everything the broker sends; PUBLISH and the small acks are written by hand, straight
//! into the connection's output buffer, so that a telemetry message costs no allocation
//! beyond its bytes.

use bytes::{BufMut, Bytes, BytesMut};
use pluribus_common::spec::MqttProtocol;
use rumqttc::mqttbytes::{v4, Protocol, QoS as QoS4};
use rumqttc::v5::mqttbytes::{v5, QoS as QoS5};

/// Largest packet accepted from a broker.
const MAX_INCOMING: usize = 1 << 20;

/// What a CONNECT says.
#[derive(Debug)]
pub struct ConnectParams<'a> {
    /// Client id.
    pub client_id: &'a str,
    /// Keepalive in seconds (0: off).
    pub keepalive: u16,
    /// Clean session / clean start.
    pub clean: bool,
    /// User name and password.
    pub login: Option<(String, String)>,
    /// Will: topic, payload, QoS, retain.
    pub will: Option<(String, Bytes, u8, bool)>,
}

/// A packet from the broker, reduced to what a device needs.
#[derive(Debug)]
pub enum Incoming {
    /// CONNACK: `Ok` or the reason for the failure count ("auth", "rejected").
    ConnAck(Result<(), &'static str>),
    /// PUBLISH.
    Publish {
        /// Topic.
        topic: Bytes,
        /// Payload.
        payload: Bytes,
        /// QoS.
        qos: u8,
        /// Packet id (QoS 1 and 2).
        pkid: u16,
    },
    /// PUBACK.
    PubAck(u16),
    /// PUBREC.
    PubRec(u16),
    /// PUBREL.
    PubRel(u16),
    /// PUBCOMP.
    PubComp(u16),
    /// SUBACK: true if every filter was granted.
    SubAck(bool),
    /// PINGRESP.
    PingResp,
    /// DISCONNECT from the broker (5).
    Disconnect,
    /// Anything else (ignored).
    Other,
}

/// A broken packet stream.
#[derive(Debug, thiserror::Error)]
#[error("bad packet from the broker: {0}")]
pub struct DecodeError(String);

fn qos4(q: u8) -> QoS4 {
    match q {
        0 => QoS4::AtMostOnce,
        1 => QoS4::AtLeastOnce,
        _ => QoS4::ExactlyOnce,
    }
}

fn qos5(q: u8) -> QoS5 {
    match q {
        0 => QoS5::AtMostOnce,
        1 => QoS5::AtLeastOnce,
        _ => QoS5::ExactlyOnce,
    }
}

/// Session expiry asked for with MQTT 5 when the session is not clean (1 hour).
const SESSION_EXPIRY_S: u32 = 3600;

/// Appends a CONNECT.
pub fn connect(proto: MqttProtocol, p: &ConnectParams<'_>, out: &mut BytesMut) {
    // The codecs fail only on lengths above MQTT's limits, which validation rules out.
    let _: Result<usize, ()> = match proto {
        MqttProtocol::V311 => v4::Connect {
            protocol: Protocol::V4,
            keep_alive: p.keepalive,
            client_id: p.client_id.to_string(),
            clean_session: p.clean,
            last_will: p
                .will
                .as_ref()
                .map(|(t, m, q, r)| v4::LastWill::new(t.clone(), m.to_vec(), qos4(*q), *r)),
            login: p.login.as_ref().map(|(u, pw)| v4::Login::new(u, pw)),
        }
        .write(out)
        .map_err(drop),
        MqttProtocol::V5 => {
            let mut props = v5::ConnectProperties::new();
            if !p.clean {
                props.session_expiry_interval = Some(SESSION_EXPIRY_S);
            }
            v5::Connect {
                keep_alive: p.keepalive,
                client_id: p.client_id.to_string(),
                clean_start: p.clean,
                properties: Some(props),
            }
            .write(
                &p.will.as_ref().map(|(t, m, q, r)| {
                    v5::LastWill::new(t.clone(), m.to_vec(), qos5(*q), *r, None)
                }),
                &p.login.as_ref().map(|(u, pw)| v5::Login::new(u, pw)),
                out,
            )
            .map_err(drop)
        }
    };
}

/// Appends a SUBSCRIBE of `filters` (filter, QoS).
pub fn subscribe(proto: MqttProtocol, pkid: u16, filters: &[(String, u8)], out: &mut BytesMut) {
    let _: Result<usize, ()> = match proto {
        MqttProtocol::V311 => v4::Subscribe {
            pkid,
            filters: filters
                .iter()
                .map(|(f, q)| v4::SubscribeFilter::new(f.clone(), qos4(*q)))
                .collect(),
        }
        .write(out)
        .map_err(drop),
        MqttProtocol::V5 => v5::Subscribe {
            pkid,
            filters: filters
                .iter()
                .map(|(f, q)| v5::Filter::new(f.clone(), qos5(*q)))
                .collect(),
            properties: None,
        }
        .write(out)
        .map_err(drop),
    };
}

fn remaining_length(mut len: usize, out: &mut BytesMut) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if len == 0 {
            return;
        }
    }
}

/// A PUBLISH to append.
#[derive(Debug, Clone, Copy)]
pub struct PublishParams<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Payload.
    pub payload: &'a [u8],
    /// QoS.
    pub qos: u8,
    /// Retained.
    pub retain: bool,
    /// Packet id (ignored at QoS 0).
    pub pkid: u16,
}

/// Appends a PUBLISH.
pub fn publish(proto: MqttProtocol, p: &PublishParams<'_>, out: &mut BytesMut) {
    let props = usize::from(proto == MqttProtocol::V5);
    let id = if p.qos > 0 { 2 } else { 0 };
    let len = 2 + p.topic.len() + id + props + p.payload.len();
    out.reserve(len + 5);
    out.put_u8(0x30 | (p.qos << 1) | u8::from(p.retain));
    remaining_length(len, out);
    out.put_u16(p.topic.len() as u16);
    out.put_slice(p.topic.as_bytes());
    if p.qos > 0 {
        out.put_u16(p.pkid);
    }
    if props == 1 {
        out.put_u8(0); // no properties
    }
    out.put_slice(p.payload);
}

/// Sets the DUP flag of an encoded PUBLISH (for a resend).
pub fn with_dup(packet: &Bytes) -> Bytes {
    let mut b = BytesMut::from(&packet[..]);
    if let Some(first) = b.first_mut() {
        *first |= 0x08;
    }
    b.freeze()
}

/// The acks: PUBACK, PUBREC, PUBREL, PUBCOMP (same shape in 3.1.1 and 5 with success).
#[derive(Debug, Clone, Copy)]
#[allow(clippy::enum_variant_names)] // the MQTT packet names
pub enum Ack {
    /// PUBACK.
    PubAck,
    /// PUBREC.
    PubRec,
    /// PUBREL.
    PubRel,
    /// PUBCOMP.
    PubComp,
}

/// Appends an ack for `pkid`.
pub fn ack(kind: Ack, pkid: u16, out: &mut BytesMut) {
    let first = match kind {
        Ack::PubAck => 0x40,
        Ack::PubRec => 0x50,
        Ack::PubRel => 0x62,
        Ack::PubComp => 0x70,
    };
    out.put_slice(&[first, 2]);
    out.put_u16(pkid);
}

/// Appends a PINGREQ.
pub fn pingreq(out: &mut BytesMut) {
    out.put_slice(&[0xC0, 0]);
}

/// Appends a DISCONNECT (normal disconnection in both versions).
pub fn disconnect(out: &mut BytesMut) {
    out.put_slice(&[0xE0, 0]);
}

fn connack_reason4(code: v4::ConnectReturnCode) -> Result<(), &'static str> {
    use v4::ConnectReturnCode as C;
    match code {
        C::Success => Ok(()),
        C::BadUserNamePassword | C::NotAuthorized => Err("auth"),
        _ => Err("rejected"),
    }
}

fn connack_reason5(code: v5::ConnectReturnCode) -> Result<(), &'static str> {
    use v5::ConnectReturnCode as C;
    match code {
        C::Success => Ok(()),
        C::BadUserNamePassword | C::NotAuthorized | C::Banned | C::BadAuthenticationMethod => {
            Err("auth")
        }
        _ => Err("rejected"),
    }
}

/// Takes the next whole packet off `buf`; `Ok(None)` when more bytes are needed.
pub fn decode(proto: MqttProtocol, buf: &mut BytesMut) -> Result<Option<Incoming>, DecodeError> {
    if buf.is_empty() {
        return Ok(None);
    }
    match proto {
        MqttProtocol::V311 => match v4::Packet::read(buf, MAX_INCOMING) {
            Ok(p) => Ok(Some(match p {
                v4::Packet::ConnAck(c) => Incoming::ConnAck(connack_reason4(c.code)),
                v4::Packet::Publish(p) => Incoming::Publish {
                    topic: Bytes::from(p.topic.into_bytes()),
                    payload: p.payload,
                    qos: p.qos as u8,
                    pkid: p.pkid,
                },
                v4::Packet::PubAck(a) => Incoming::PubAck(a.pkid),
                v4::Packet::PubRec(a) => Incoming::PubRec(a.pkid),
                v4::Packet::PubRel(a) => Incoming::PubRel(a.pkid),
                v4::Packet::PubComp(a) => Incoming::PubComp(a.pkid),
                v4::Packet::SubAck(s) => Incoming::SubAck(
                    s.return_codes
                        .iter()
                        .all(|c| !matches!(c, v4::SubscribeReasonCode::Failure)),
                ),
                v4::Packet::PingResp => Incoming::PingResp,
                v4::Packet::Disconnect => Incoming::Disconnect,
                _ => Incoming::Other,
            })),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(DecodeError(e.to_string())),
        },
        MqttProtocol::V5 => match v5::Packet::read(buf, Some(MAX_INCOMING as u32)) {
            Ok(p) => Ok(Some(match p {
                v5::Packet::ConnAck(c) => Incoming::ConnAck(connack_reason5(c.code)),
                v5::Packet::Publish(p) => Incoming::Publish {
                    topic: p.topic,
                    payload: p.payload,
                    qos: p.qos as u8,
                    pkid: p.pkid,
                },
                v5::Packet::PubAck(a) => Incoming::PubAck(a.pkid),
                v5::Packet::PubRec(a) => Incoming::PubRec(a.pkid),
                v5::Packet::PubRel(a) => Incoming::PubRel(a.pkid),
                v5::Packet::PubComp(a) => Incoming::PubComp(a.pkid),
                v5::Packet::SubAck(s) => Incoming::SubAck(
                    s.return_codes
                        .iter()
                        .all(|c| matches!(c, v5::SubscribeReasonCode::Success(_))),
                ),
                v5::Packet::PingResp(_) => Incoming::PingResp,
                v5::Packet::Disconnect(_) => Incoming::Disconnect,
                _ => Incoming::Other,
            })),
            Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(DecodeError(e.to_string())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_written_publish_decodes_with_the_codec() {
        for proto in [MqttProtocol::V311, MqttProtocol::V5] {
            let mut buf = BytesMut::new();
            let payload = vec![7u8; 300];
            publish(
                proto,
                &PublishParams {
                    topic: "a/b",
                    payload: &payload,
                    qos: 1,
                    retain: true,
                    pkid: 42,
                },
                &mut buf,
            );
            ack(Ack::PubRel, 9, &mut buf);
            pingreq(&mut buf);
            match decode(proto, &mut buf).expect("decodes") {
                Some(Incoming::Publish {
                    topic,
                    payload: p,
                    qos,
                    pkid,
                }) => {
                    assert_eq!(&topic[..], b"a/b");
                    assert_eq!(p.len(), 300);
                    assert_eq!((qos, pkid), (1, 42));
                }
                other => panic!("{other:?}"),
            }
            assert!(matches!(
                decode(proto, &mut buf),
                Ok(Some(Incoming::PubRel(9)))
            ));
            // PINGREQ is a client packet: decodes, and is ignored.
            assert!(decode(proto, &mut buf).expect("ping").is_some());
            assert!(decode(proto, &mut buf).expect("empty").is_none());
        }
    }

    #[test]
    fn partial_packets_wait_for_more_bytes() {
        let mut whole = BytesMut::new();
        publish(
            MqttProtocol::V311,
            &PublishParams {
                topic: "t",
                payload: b"x",
                qos: 0,
                retain: false,
                pkid: 0,
            },
            &mut whole,
        );
        let mut part = BytesMut::from(&whole[..3]);
        assert!(decode(MqttProtocol::V311, &mut part).expect("ok").is_none());
        part.extend_from_slice(&whole[3..]);
        assert!(decode(MqttProtocol::V311, &mut part).expect("ok").is_some());
    }
}
