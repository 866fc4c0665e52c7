//! Business messages made from a device's telemetry: NewOrderSingle (35=D),
//! OrderCancelRequest (35=F) or MarketDataIncrementalRefresh (35=X).
//!
//! The telemetry's `seq` makes the ClOrdID (`<device_id>-<seq>`), unique per device
//! across reconnects and agents (a `seq` is never sent twice). `symbol`, `side`, `price`
//! and `qty` are taken from the telemetry when it has them (a profile device can drive
//! them: a random walk on `price`, a choice of `symbol`); otherwise they follow from `seq`.

use pluribus_common::spec::FixMessage;
use serde::Deserialize;

use super::codec::Writer;

/// The fields of a telemetry message that orders use; the rest is ignored.
#[derive(Debug, Default, Deserialize)]
pub struct Telemetry {
    /// The message's sequence number.
    #[serde(default)]
    pub seq: Option<u64>,
    #[serde(default)]
    symbol: Option<String>,
    #[serde(default)]
    side: Option<String>,
    #[serde(default)]
    price: Option<f64>,
    #[serde(default, alias = "quantity")]
    qty: Option<f64>,
}

impl Telemetry {
    /// Reads what it can of `payload`; a payload that is not a JSON object gives defaults.
    pub fn of(payload: &[u8]) -> Self {
        serde_json::from_slice(payload).unwrap_or_default()
    }
}

/// What a message needs besides the telemetry.
pub struct Order<'a> {
    /// The device id (ClOrdID prefix).
    pub device_id: &'a str,
    /// The message's number: the telemetry's `seq`, or the device's own count.
    pub n: u64,
    /// The ClOrdID of the device's previous order (for a cancel).
    pub previous: Option<u64>,
    /// Symbols by turn.
    pub symbols: &'a [String],
    /// TransactTime.
    pub time: &'a str,
}

/// Writes the body of `kind` (after the header) for `t`.
pub fn body(w: &mut Writer<'_>, kind: FixMessage, t: &Telemetry, o: &Order<'_>) {
    let symbol = t
        .symbol
        .as_deref()
        .filter(|s| !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_graphic()))
        .or_else(|| {
            let n = o.symbols.len().max(1) as u64;
            o.symbols.get((o.n % n) as usize).map(String::as_str)
        })
        .unwrap_or("AAPL");
    let side = match t.side.as_deref() {
        Some("sell" | "2" | "SELL") => "2",
        Some(_) => "1",
        None if o.n % 2 == 1 => "2",
        None => "1",
    };
    let price = t
        .price
        .filter(|p| p.is_finite() && *p > 0.0 && *p < 1e12)
        .unwrap_or(100.0 + (o.n % 100) as f64 * 0.01);
    let qty = t
        .qty
        .filter(|q| q.is_finite() && *q > 0.0 && *q < 1e12)
        .unwrap_or(100.0 + (o.n % 10) as f64 * 100.0);
    let clordid = |w: &mut Writer<'_>, tag, n: u64| {
        w.clordid(tag, o.device_id, n);
    };
    match kind {
        FixMessage::NewOrderSingle => {
            clordid(w, 11, o.n);
            w.str(21, "1").dec(38, qty, 0);
            w.str(40, "2")
                .dec(44, price, 2)
                .str(54, side)
                .str(55, symbol)
                .str(60, o.time);
        }
        FixMessage::OrderCancelRequest => {
            clordid(w, 11, o.n);
            w.dec(38, qty, 0);
            clordid(w, 41, o.previous.unwrap_or(o.n));
            w.str(54, side).str(55, symbol).str(60, o.time);
        }
        FixMessage::MarketDataIncrementalRefresh => {
            w.num(268, 1)
                .str(279, "0")
                .str(269, if side == "1" { "0" } else { "1" });
            w.str(55, symbol).dec(270, price, 2).dec(271, qty, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::fix::codec::{decode, Header};
    use bytes::BytesMut;

    fn make(kind: FixMessage, payload: &str) -> crate::sink::fix::codec::Frame {
        let mut out = BytesMut::new();
        let h = Header {
            begin: "FIX.4.4",
            msg_type: "D",
            seq: 5,
            sender: "d-1",
            target: "GW",
            time: "20261207-01:02:03.456",
        };
        let mut w = Writer::new(&mut out, &h);
        let t = Telemetry::of(payload.as_bytes());
        let symbols = vec!["AAPL".to_string(), "MSFT".to_string()];
        let o = Order {
            device_id: "d-1",
            n: t.seq.unwrap_or(0),
            previous: Some(6),
            symbols: &symbols,
            time: "20261207-01:02:03.456",
        };
        body(&mut w, kind, &t, &o);
        w.finish();
        decode(&mut out).expect("valid").expect("whole")
    }

    #[test]
    fn orders_come_from_telemetry() {
        let f = make(
            FixMessage::NewOrderSingle,
            r#"{"seq":7,"ts":1,"battery":99.5}"#,
        );
        assert_eq!(f.text(11).as_deref(), Some("d-1-7"));
        assert_eq!(f.text(55).as_deref(), Some("MSFT"));
        assert_eq!(f.text(54).as_deref(), Some("2"));
        assert_eq!(f.text(40).as_deref(), Some("2"));
        assert_eq!(f.text(44).as_deref(), Some("100.07"));
        let f = make(
            FixMessage::NewOrderSingle,
            r#"{"seq":8,"symbol":"IBM","price":12.5,"qty":3,"side":"sell"}"#,
        );
        assert_eq!(
            (
                f.text(55).as_deref(),
                f.text(44).as_deref(),
                f.text(38).as_deref(),
                f.text(54).as_deref()
            ),
            (Some("IBM"), Some("12.50"), Some("3"), Some("2"))
        );
        let f = make(FixMessage::OrderCancelRequest, r#"{"seq":9}"#);
        assert_eq!(f.text(41).as_deref(), Some("d-1-6"));
        let f = make(FixMessage::MarketDataIncrementalRefresh, "not json");
        assert_eq!(f.num(268), Some(1));
        assert_eq!(f.text(270).as_deref(), Some("100.00"));
    }
}
