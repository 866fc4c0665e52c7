//! Encoding and decoding of bus messages, with the version check.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::PROTOCOL_VERSION;

/// Why a message could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Not JSON, or not the expected shape.
    #[error("malformed {what}: {source}")]
    Malformed {
        /// The expected message type.
        what: &'static str,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// Another protocol version.
    #[error("{what} has protocol version {found}, this build speaks {PROTOCOL_VERSION}: run the same Pluribus version everywhere")]
    Version {
        /// The expected message type.
        what: &'static str,
        /// The version found.
        found: u32,
    },
}

#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    v: Option<u32>,
}

/// Serializes a message. Serializing these plain structs cannot fail; if it ever did, an
/// empty payload is sent and the receiver answers with a decode error.
pub fn encode<T: Serialize>(msg: &T) -> Bytes {
    serde_json::to_vec(msg).map(Bytes::from).unwrap_or_default()
}

/// Decodes a message of type `T`, refusing other protocol versions.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, WireError> {
    let what = std::any::type_name::<T>()
        .rsplit("::")
        .next()
        .unwrap_or("message");
    let probe: Probe =
        serde_json::from_slice(payload).map_err(|source| WireError::Malformed { what, source })?;
    if let Some(found) = probe.v {
        if found != PROTOCOL_VERSION {
            return Err(WireError::Version { what, found });
        }
    }
    serde_json::from_slice(payload).map_err(|source| WireError::Malformed { what, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::ShardOffer;

    #[test]
    fn round_trip_and_version_check() {
        let o = ShardOffer::new("f", 3);
        let back: ShardOffer = decode(&encode(&o)).expect("decode");
        assert_eq!(back, o);
        assert!(matches!(
            decode::<ShardOffer>(b"{\"v\":2,\"fleet\":\"f\",\"shard\":1}"),
            Err(WireError::Version { found: 2, .. })
        ));
        assert!(matches!(
            decode::<ShardOffer>(b"not json"),
            Err(WireError::Malformed { .. })
        ));
        assert!(matches!(
            decode::<ShardOffer>(b"{\"v\":1}"),
            Err(WireError::Malformed { .. })
        ));
    }
}
