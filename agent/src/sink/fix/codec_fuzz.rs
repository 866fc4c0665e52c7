//! The FIX reader takes any bytes a gateway sends: it returns whole messages, "need more",
//! or an error, and never panics or loops. `bench/fuzz.sh` runs this with more cases.

use bytes::BytesMut;
use proptest::prelude::*;

use super::codec::decode;

fn read_all(bytes: &[u8]) {
    let mut buf = BytesMut::from(bytes);
    for _ in 0..=bytes.len() {
        match decode(&mut buf) {
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return,
        }
    }
    panic!("the reader returned more messages than there were bytes");
}

/// A valid FIX 4.4 Heartbeat, to mutate.
const HEARTBEAT: &[u8] =
    b"8=FIX.4.4\x019=55\x0135=0\x0134=2\x0149=GW\x0152=20261207-00:00:00.000\x0156=DEV\x0110=000\x01";

proptest! {
    #[test]
    fn any_bytes_are_read_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        read_all(&bytes);
        let mut framed = b"8=FIX.4.4\x019=".to_vec();
        framed.extend_from_slice(&bytes);
        read_all(&framed);
    }

    #[test]
    fn mutated_messages_are_read_or_refused(at in 0usize..HEARTBEAT.len(), byte in any::<u8>(), cut in any::<bool>()) {
        let mut m = HEARTBEAT.to_vec();
        if cut { m.truncate(at) } else { m[at] = byte }
        read_all(&m);
    }
}
