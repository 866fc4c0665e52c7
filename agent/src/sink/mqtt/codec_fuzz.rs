//! The MQTT reader takes any bytes a broker (or something posing as one) sends: it returns
//! packets, "need more", or an error, and never panics or loops. `bench/fuzz.sh` runs this
//! with many more cases.

use bytes::BytesMut;
use pluribus_common::spec::MqttProtocol;
use proptest::prelude::*;

use super::codec::decode;

/// Reads packets off `bytes` until the reader wants more or refuses them.
fn read_all(proto: MqttProtocol, bytes: &[u8]) {
    let mut buf = BytesMut::from(bytes);
    // Each packet takes at least two bytes, so this bounds the loop.
    for _ in 0..=bytes.len() {
        match decode(proto, &mut buf) {
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return,
        }
    }
    panic!("the reader returned more packets than there were bytes");
}

proptest! {
    #[test]
    fn any_bytes_are_read_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        read_all(MqttProtocol::V311, &bytes);
        read_all(MqttProtocol::V5, &bytes);
    }

    /// Plausible packets: a valid fixed header (type, flags) before random bytes.
    #[test]
    fn packets_with_random_bodies_are_read_or_refused(
        kind in 1u8..16, flags in 0u8..16, len in 0u8..128,
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut bytes = vec![(kind << 4) | flags, len];
        bytes.extend_from_slice(&body);
        read_all(MqttProtocol::V311, &bytes);
        read_all(MqttProtocol::V5, &bytes);
    }
}
