//! Options of the `fix` sink: every device is a FIX 4.4 trading client with its own
//! session (its own TCP connection and SenderCompID) to a FIX acceptor (a gateway, an
//! exchange simulator, a QuickFIX engine).
//!
//! Checked before deploy ([`FixSinkConfig::validate`]); TLS files and `env:`/`file:`
//! credentials are read on the agent when it prepares the shard.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::mqtt::{check_secret, BrokerUrl};
use super::template::{Template, TemplateVars};
use super::tls::TlsFiles;
use crate::SpecError;

/// The default heartbeat interval (HeartBtInt).
pub const DEFAULT_FIX_HEARTBEAT: Duration = Duration::from_secs(30);
/// The default symbols of generated orders.
pub const DEFAULT_FIX_SYMBOLS: &[&str] = &["AAPL", "MSFT", "GOOG", "AMZN"];

/// The FIX version (BeginString). Only FIX 4.4 for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum FixVersion {
    /// `FIX.4.4`.
    #[default]
    #[serde(rename = "FIX.4.4")]
    Fix44,
}

impl FixVersion {
    /// The BeginString.
    pub fn begin_string(self) -> &'static str {
        match self {
            Self::Fix44 => "FIX.4.4",
        }
    }
}

/// What each telemetry message becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FixMessage {
    /// NewOrderSingle (35=D): a limit order; the acceptor answers with ExecutionReports.
    #[default]
    NewOrderSingle,
    /// OrderCancelRequest (35=F) for an earlier order of the device.
    OrderCancelRequest,
    /// MarketDataIncrementalRefresh (35=X): one price update (a market-data publisher).
    MarketDataIncrementalRefresh,
}

/// Options of the `fix` sink. Templates may use `{device_id}`, `{fleet}`, `{index}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixSinkConfig {
    /// Acceptors, `host:port`, `tcp://host:port` or `tls://host:port`; devices are spread
    /// over them and move to the next one when a logon fails. `host:` also works.
    #[serde(alias = "host", deserialize_with = "super::lenient::comma_list")]
    pub hosts: Vec<String>,
    /// SenderCompID (49) template [default: `{device_id}`]; must tell devices apart.
    #[serde(default = "default_sender")]
    pub sender_comp_id: String,
    /// TargetCompID (56): the acceptor's CompID.
    #[serde(default)]
    pub target_comp_id: String,
    /// BeginString [default: FIX.4.4].
    #[serde(default)]
    pub fix_version: FixVersion,
    /// HeartBtInt [default: 30s], whole seconds.
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub heartbeat: Duration,
    /// What each telemetry message becomes [default: new_order_single].
    #[serde(default)]
    pub message: FixMessage,
    /// Symbols of the orders; a device's message takes its telemetry's `symbol` if it has
    /// one, else one of these by turn [default: AAPL, MSFT, GOOG, AMZN].
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "super::lenient::comma_list"
    )]
    pub symbols: Vec<String>,
    /// ResetSeqNumFlag (141=Y) on every logon [default: true]; false keeps sequence numbers
    /// across reconnects of the same agent.
    #[serde(default = "yes")]
    pub reset_seq_num: bool,
    /// Username (553): a template, or `env:VAR` / `file:/path` read on the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password (554): prefer `env:VAR` / `file:/path` (never stored in the fleet record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// CA certificate (PEM) on the agent, for `tls://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// Client certificate (PEM) on the agent, with `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// Client private key (PEM) on the agent, with `cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Most logons started per second by one agent; unlimited if unset.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient::opt_rate"
    )]
    pub connect_rate: Option<f64>,
    /// Most logons in flight (TCP + Logon reply) per agent [default: 64].
    #[serde(default = "default_max_connecting")]
    pub max_connecting: u32,
    /// Time allowed for TCP, TLS and the Logon reply [default: 10s].
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Devices that share one FIX session [default: 1], for gateways that allow few
    /// sessions: devices `k*N .. (k+1)*N` of the fleet use session `k` (one connection,
    /// one SenderCompID rendered with `{index}` = `k`, MsgSeqNum per session); each message
    /// carries its device in SenderSubID (50) and its ClOrdID. The shard size must be a
    /// multiple of it, so that a session never spans two shards (two agents).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub devices_per_session: u32,
}

/// The most devices one session may carry.
pub const MAX_DEVICES_PER_SESSION: u32 = 10_000;

fn one() -> u32 {
    1
}
fn is_one(n: &u32) -> bool {
    *n == 1
}

fn yes() -> bool {
    true
}
fn default_sender() -> String {
    "{device_id}".into()
}
fn default_heartbeat() -> Duration {
    DEFAULT_FIX_HEARTBEAT
}
fn default_max_connecting() -> u32 {
    super::mqtt::DEFAULT_MAX_CONNECTING
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Parses an acceptor address: `host:port`, `tcp://host:port` or `tls://host:port`.
pub fn fix_host(field: &str, s: &str) -> Result<BrokerUrl, SpecError> {
    let bad = |why: &str| {
        SpecError::new(
            field,
            format!("'{s}' {why}: write host:port, tcp://host:port or tls://host:port"),
        )
    };
    let (tls, rest) = match s.split_once("://") {
        None => (false, s),
        Some(("tcp", r)) => (false, r),
        Some(("tls" | "ssl", r)) => (true, r),
        Some(_) => return Err(bad("has an unknown scheme")),
    };
    if rest.contains(['/', '?', '#', '@']) || rest.contains(char::is_whitespace) {
        return Err(bad("is not just a host and a port"));
    }
    let (host, port) = match rest.strip_prefix('[') {
        Some(v6) => {
            let (h, p) = v6.split_once("]:").ok_or_else(|| bad("has no port"))?;
            (h, p)
        }
        None => rest.rsplit_once(':').ok_or_else(|| bad("has no port"))?,
    };
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| bad("has a bad port"))?;
    Ok(BrokerUrl {
        tls,
        host: host.to_string(),
        port,
        ws_path: None,
    })
}

/// A CompID must be printable ASCII without `=` or the separator.
fn comp_id_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic())
}

impl FixSinkConfig {
    /// The parsed acceptors.
    pub fn host_urls(&self) -> Result<Vec<BrokerUrl>, SpecError> {
        self.hosts
            .iter()
            .enumerate()
            .map(|(i, h)| fix_host(&format!("sink.hosts[{i}]"), h))
            .collect()
    }

    /// The SenderCompID template.
    pub fn sender_template(&self) -> Result<Template, SpecError> {
        Template::parse("sink.sender_comp_id", &self.sender_comp_id, true)
    }

    /// The symbols (the defaults if none were given).
    pub fn symbols(&self) -> Vec<String> {
        if self.symbols.is_empty() {
            DEFAULT_FIX_SYMBOLS.iter().map(|s| s.to_string()).collect()
        } else {
            self.symbols.clone()
        }
    }

    /// Checks that sessions shared by several devices never span two shards.
    pub fn check_shard_size(&self, shard_size: u32) -> Result<(), SpecError> {
        let n = self.devices_per_session.max(1);
        if !shard_size.is_multiple_of(n) {
            return Err(SpecError::new(
                "shard_size",
                format!("{shard_size} is not a multiple of sink.devices_per_session {n}: a session would span two shards (and two agents); use e.g. --shard-size {}", n * shard_size.div_ceil(n).max(1)),
            ));
        }
        Ok(())
    }

    /// The session of device `index` (its index when every device has its own).
    pub fn session_of(&self, index: u64) -> u64 {
        index / u64::from(self.devices_per_session.max(1))
    }

    /// Checks everything that can be checked without the agent. Errors name `sink.<field>`.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.hosts.is_empty() {
            return Err(SpecError::new(
                "sink.hosts",
                "missing: give the acceptor, e.g. --fix-host 127.0.0.1:9878",
            ));
        }
        let urls = self.host_urls()?;
        if self.devices_per_session == 0 || self.devices_per_session > MAX_DEVICES_PER_SESSION {
            return Err(SpecError::new(
                "sink.devices_per_session",
                format!(
                    "{} is out of range: use 1 (a session per device) to {MAX_DEVICES_PER_SESSION}",
                    self.devices_per_session
                ),
            ));
        }
        let t = self.sender_template()?;
        if self.devices_per_session > 1 && self.sender_comp_id.contains("{device_id}") {
            return Err(SpecError::new(
                "sink.sender_comp_id",
                format!("'{}' names a device, but with devices_per_session {} a SenderCompID belongs to a session: use {{index}} (the session's number), e.g. --sender-comp-id '{{fleet}}-s{{index}}'", self.sender_comp_id, self.devices_per_session),
            ));
        }
        let sample = |i| {
            t.render(&TemplateVars {
                fleet: "f",
                device_id: Some("d"),
                index: i,
            })
        };
        if !self.sender_comp_id.contains("{device_id}") && sample(0) == sample(1) {
            return Err(SpecError::new(
                "sink.sender_comp_id",
                format!("'{}' is the same for every device, so their sessions would clash: include {{device_id}} or {{index}}", self.sender_comp_id),
            ));
        }
        if !comp_id_ok(&sample(0)) {
            return Err(SpecError::new(
                "sink.sender_comp_id",
                "must be printable ASCII without spaces, up to 64 characters",
            ));
        }
        if self.target_comp_id.is_empty() {
            return Err(SpecError::new(
                "sink.target_comp_id",
                "missing: give the acceptor's CompID, e.g. --target-comp-id GATEWAY",
            ));
        }
        if !comp_id_ok(&self.target_comp_id) {
            return Err(SpecError::new(
                "sink.target_comp_id",
                format!(
                    "'{}' must be printable ASCII without spaces, up to 64 characters",
                    self.target_comp_id
                ),
            ));
        }
        if self.heartbeat.is_zero()
            || self.heartbeat.subsec_nanos() != 0
            || self.heartbeat.as_secs() > 3600
        {
            return Err(SpecError::new(
                "sink.heartbeat",
                "must be whole seconds from 1s to 1h, e.g. 30s",
            ));
        }
        for (i, s) in self.symbols.iter().enumerate() {
            if !comp_id_ok(s) {
                return Err(SpecError::new(
                    format!("sink.symbols[{i}]"),
                    format!("'{s}' is not a symbol: printable ASCII, no spaces, e.g. AAPL"),
                ));
            }
        }
        for (field, v) in [
            ("sink.username", &self.username),
            ("sink.password", &self.password),
        ] {
            if let Some(v) = v {
                check_secret(field, v)?;
            }
        }
        TlsFiles {
            ca: &self.ca,
            cert: &self.cert,
            key: &self.key,
        }
        .check(
            urls.iter().any(|u| u.tls),
            "TLS files need a TLS acceptor: write the host as tls://host:port",
            "--cert and --key",
        )?;
        if let Some(r) = self.connect_rate {
            if !(r.is_finite() && r > 0.0) {
                return Err(SpecError::new(
                    "sink.connect_rate",
                    format!("{r} is not a rate: give logons per second, e.g. 500"),
                ));
            }
        }
        if self.max_connecting == 0 {
            return Err(SpecError::new("sink.max_connecting", "must be at least 1"));
        }
        if self.connect_timeout.is_zero() {
            return Err(SpecError::new(
                "sink.connect_timeout",
                "must be longer than 0s",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::SinkSpec;

    fn spec(v: serde_json::Value) -> SinkSpec {
        serde_json::from_value(v).expect("a sink spec")
    }

    #[test]
    fn defaults_and_hosts() {
        let s = spec(
            serde_json::json!({"type": "fix", "host": "127.0.0.1:9878", "target_comp_id": "GW"}),
        );
        s.validate().expect("valid");
        let c = s.fix_config().expect("cfg");
        assert_eq!(c.sender_comp_id, "{device_id}");
        assert_eq!(c.heartbeat, DEFAULT_FIX_HEARTBEAT);
        assert!(c.reset_seq_num);
        assert_eq!(c.message, FixMessage::NewOrderSingle);
        let u = c.host_urls().expect("urls");
        assert_eq!(
            (u[0].host.as_str(), u[0].port, u[0].tls),
            ("127.0.0.1", 9878, false)
        );
        assert!(fix_host("f", "tls://gw.example:443").expect("tls").tls);
        assert_eq!(fix_host("f", "[::1]:9").expect("v6").host, "::1");
    }

    #[test]
    fn mistakes_name_the_field() {
        let field = |v: serde_json::Value| spec(v).validate().expect_err("invalid").field;
        assert_eq!(
            field(serde_json::json!({"type": "fix", "hosts": []})),
            "sink.hosts"
        );
        assert_eq!(
            field(serde_json::json!({"type": "fix", "host": "h:1"})),
            "sink.target_comp_id"
        );
        assert_eq!(
            field(serde_json::json!({"type": "fix", "host": "http://h:1", "target_comp_id": "G"})),
            "sink.hosts[0]"
        );
        assert_eq!(
            field(
                serde_json::json!({"type": "fix", "host": "h:1", "target_comp_id": "G", "sender_comp_id": "SAME"})
            ),
            "sink.sender_comp_id"
        );
        assert_eq!(
            field(
                serde_json::json!({"type": "fix", "host": "h:1", "target_comp_id": "G", "devices_per_session": 10})
            ),
            "sink.sender_comp_id"
        );
        assert_eq!(
            field(
                serde_json::json!({"type": "fix", "host": "h:1", "target_comp_id": "G", "devices_per_session": 0})
            ),
            "sink.devices_per_session"
        );
        assert_eq!(
            field(
                serde_json::json!({"type": "fix", "host": "h:1", "target_comp_id": "G", "heartbeat": "1500ms"})
            ),
            "sink.heartbeat"
        );
        assert_eq!(
            field(
                serde_json::json!({"type": "fix", "host": "h:1", "target_comp_id": "G", "fix_version": "FIX.4.2"})
            ),
            "sink.fix_version"
        );
        assert_eq!(
            field(
                serde_json::json!({"type": "fix", "host": "h:1", "target_comp_id": "G", "message": "quote"})
            ),
            "sink.message"
        );
        assert_eq!(
            field(
                serde_json::json!({"type": "fix", "host": "h:1", "target_comp_id": "G", "ca": "/ca.pem"})
            ),
            "sink.ca"
        );
        assert_eq!(
            field(
                serde_json::json!({"type": "fix", "host": "h:1", "target_comp_id": "G", "password": "env:bad name"})
            ),
            "sink.password"
        );
    }

    #[test]
    fn shared_sessions_stay_inside_a_shard() {
        let mut f = crate::spec::FleetSpec::counted("mx", 40);
        f.sink = spec(
            serde_json::json!({"type": "fix", "host": "h:1", "target_comp_id": "G", "devices_per_session": 10, "sender_comp_id": "{fleet}-s{index}"}),
        );
        f.shard_size = 20;
        f.validate().expect("sessions of 10 in shards of 20");
        let c = f.sink.fix_config().expect("fix");
        assert_eq!(
            (c.session_of(9), c.session_of(10), c.session_of(39)),
            (0, 1, 3)
        );
        f.shard_size = 25;
        let e = f.validate().expect_err("25 is not a multiple of 10");
        assert_eq!(e.field, "shard_size");
        assert!(e.to_string().contains("--shard-size 30"), "{e}");
    }

    #[test]
    fn a_fleet_file_takes_the_option_names() {
        let yaml = "name: traders\ncount: 3\nsink:\n  type: fix\n  host: 10.0.0.5:9878, tls://gw:443\n  target_comp_id: GATEWAY\n  heartbeat: 10s\n  message: market_data_incremental_refresh\n  symbols: IBM,ORCL\n  password: env:FIX_PASSWORD\n  ca: /etc/ca.pem\n";
        let f = crate::spec::parse_fleet_text("t.yaml", yaml, crate::spec::FileFormat::Yaml, None)
            .expect("valid");
        let c = f.sink.fix_config().expect("fix");
        assert_eq!(c.hosts.len(), 2);
        assert_eq!(c.message, FixMessage::MarketDataIncrementalRefresh);
        assert_eq!(c.symbols, ["IBM", "ORCL"]);
        let bad = yaml.replace("target_comp_id: GATEWAY", "target_comp_id: has space");
        let e = crate::spec::parse_fleet_text("t.yaml", &bad, crate::spec::FileFormat::Yaml, None)
            .expect_err("invalid");
        assert!(e.field.ends_with("sink.target_comp_id"), "{e}");
    }
}
