//! Corruption: a payload truncated, a few bytes flipped, or made invalid JSON.

use bytes::Bytes;
use pluribus_common::spec::network::{CorruptMode, CorruptSpec};

use super::{rng::Rng, DevState, Impairment, Msg};

/// Mangles payloads.
#[derive(Debug)]
pub struct Corrupt {
    probability: f64,
    mode: CorruptMode,
}

impl Corrupt {
    /// From its spec.
    pub fn new(s: &CorruptSpec) -> Self {
        Self {
            probability: s.probability,
            mode: s.mode,
        }
    }
}

/// `p` mangled as `mode` says.
fn mangle(p: &[u8], mode: CorruptMode, rng: &mut Rng) -> Vec<u8> {
    let mode = match mode {
        CorruptMode::Any => [
            CorruptMode::Truncate,
            CorruptMode::Flip,
            CorruptMode::InvalidJson,
        ][rng.below(3) as usize],
        m => m,
    };
    let mut out = p.to_vec();
    match mode {
        CorruptMode::Truncate => out.truncate(rng.below(p.len() as u64) as usize),
        CorruptMode::Flip => {
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(out.len() as u64) as usize;
                if let Some(b) = out.get_mut(at) {
                    *b ^= 1 + rng.below(255) as u8;
                }
            }
        }
        // Without its closing brace an object is no longer JSON, and stays UTF-8.
        CorruptMode::InvalidJson | CorruptMode::Any => match out.iter().rposition(|b| *b == b'}') {
            Some(at) => {
                out.remove(at);
            }
            None => out.extend_from_slice(b"{"),
        },
    }
    out
}

impl Impairment for Corrupt {
    fn apply(&self, msg: &mut Msg, _dev: &mut DevState, rng: &mut Rng) {
        if rng.chance(self.probability) {
            msg.payload = Bytes::from(mangle(&msg.payload, self.mode, rng));
            msg.corrupted = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_breaks_the_json() {
        let p = br#"{"device_id":"d","seq":1,"data":{"t":1}}"#;
        for mode in [CorruptMode::Truncate, CorruptMode::InvalidJson] {
            for seq in 0..50 {
                let m = mangle(p, mode, &mut Rng::for_message(1, seq));
                assert!(
                    serde_json::from_slice::<serde_json::Value>(&m).is_err(),
                    "{mode:?}"
                );
            }
        }
        let m = mangle(p, CorruptMode::Flip, &mut Rng::for_message(1, 1));
        assert_eq!(m.len(), p.len());
        assert_ne!(&m[..], &p[..]);
    }
}
