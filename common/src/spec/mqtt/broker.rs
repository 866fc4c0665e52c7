//! Broker addresses: `mqtt://`, `mqtts://`, `ws://` and `wss://` URLs.

use crate::SpecError;

/// The WebSocket path of a `ws://` or `wss://` broker given without one (what mosquitto,
/// EMQX, HiveMQ and nats-server serve MQTT on).
pub const DEFAULT_WS_PATH: &str = "/mqtt";

/// A parsed broker address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// TLS (`mqtts://`, `wss://`).
    pub tls: bool,
    /// Host name or IP address (without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// MQTT over WebSocket (`ws://`, `wss://`): the HTTP path (and query) of the upgrade
    /// request, e.g. `/mqtt`. `None`: MQTT right on the TCP (or TLS) stream.
    pub ws_path: Option<String>,
}

impl BrokerUrl {
    /// Parses `mqtt://host[:port]` (1883), `mqtts://host[:port]` (8883),
    /// `ws://host[:port][/path]` (80) or `wss://host[:port][/path]` (443); a WebSocket URL
    /// without a path (or with just `/`) means `/mqtt`. `field` names it in errors.
    pub fn parse(field: &str, url: &str) -> Result<Self, SpecError> {
        let bad = |why: &str| {
            SpecError::new(
                field,
                format!("'{url}' {why}: write mqtt://host:1883, mqtts://host:8883, ws://host:80/mqtt or wss://host:443/mqtt"),
            )
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("has no scheme"))?;
        let (tls, ws) = match scheme.to_ascii_lowercase().as_str() {
            "mqtt" | "tcp" => (false, false),
            "mqtts" | "ssl" | "tls" => (true, false),
            "ws" => (false, true),
            "wss" => (true, true),
            _ => return Err(bad("has an unknown scheme")),
        };
        let (hostport, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if hostport.contains(['#', '@']) {
            return Err(bad("has a user part or a fragment"));
        }
        let ws_path = match (ws, path) {
            (false, "" | "/") => None,
            (false, _) => {
                return Err(bad(
                    "has a path or query (only ws:// and wss:// URLs take a path)",
                ))
            }
            (true, "" | "/") => Some(DEFAULT_WS_PATH.to_string()),
            (true, p) if p.contains('#') || !p.bytes().all(|b| b.is_ascii_graphic()) => {
                return Err(bad("has a bad path: no spaces, no #fragment"))
            }
            // `ws://h?q` asks for `/?q`.
            (true, p) if p.starts_with('?') => Some(format!("/{p}")),
            (true, p) => Some(p.to_string()),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("has an unclosed '['"))?;
            if !after.is_empty() && !after.starts_with(':') {
                return Err(bad("has something between ']' and the port"));
            }
            (h, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad("has a bad port"))?,
            None => match (ws, tls) {
                (false, false) => 1883,
                (false, true) => 8883,
                (true, false) => 80,
                (true, true) => 443,
            },
        };
        Ok(Self {
            tls,
            host: host.to_string(),
            port,
            ws_path,
        })
    }

    /// True for MQTT over WebSocket (`ws://`, `wss://`).
    pub fn is_websocket(&self) -> bool {
        self.ws_path.is_some()
    }
}
