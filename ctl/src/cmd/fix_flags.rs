//! The flags of the `fix` sink (`--sink fix --fix-host ...`), flattened into the deploy
//! flags. Each flag sets the sink option named next to it (a fleet file uses those names).

use std::time::Duration;

use pluribus_common::spec::{FixMessage, FixVersion};
use pluribus_common::SpecError;
use serde_json::Value;

use super::sink_flags::{duration, list, switch, text, FlagOption, SinkFlags};

/// Options of the fix sink; they go with `--sink fix` only.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "FIX sink (--sink fix)")]
pub struct FixFlags {
    /// FIX acceptors, host:port or tls://host:port (comma-separated or repeated); devices
    /// are spread over them.
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',')]
    pub fix_host: Vec<String>,
    /// SenderCompID template [default: {device_id}].
    #[arg(long, value_name = "TEMPLATE")]
    pub sender_comp_id: Option<String>,
    /// TargetCompID: the acceptor's CompID.
    #[arg(long, value_name = "ID")]
    pub target_comp_id: Option<String>,
    /// BeginString [default: FIX.4.4].
    #[arg(long, value_name = "FIX.4.4", value_parser = parse_version)]
    pub fix_version: Option<FixVersion>,
    /// HeartBtInt, whole seconds, e.g. 30s [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub heartbeat: Option<Duration>,
    /// What each telemetry message becomes: new_order_single, order_cancel_request or
    /// market_data_incremental_refresh [default: new_order_single].
    #[arg(long, value_name = "MESSAGE", value_parser = parse_message)]
    pub message: Option<FixMessage>,
    /// Symbols of the orders, by turn (comma-separated) [default: AAPL,MSFT,GOOG,AMZN].
    #[arg(long, value_name = "SYM,...", value_delimiter = ',')]
    pub symbols: Vec<String>,
    /// Do not send ResetSeqNumFlag=Y at logon (sequence numbers go on across reconnects).
    #[arg(long)]
    pub no_reset_seq_num: bool,
    /// Username (553): a template, or env:VAR / file:/path read on the agent.
    #[arg(long, value_name = "TEMPLATE")]
    pub fix_username: Option<String>,
    /// Password (554): prefer env:VAR or file:/path (read on the agent, never stored in NATS).
    #[arg(long, value_name = "SECRET")]
    pub fix_password: Option<String>,
    /// CA certificate (PEM) on the agents, for tls:// acceptors.
    #[arg(long, value_name = "FILE")]
    pub fix_ca: Option<String>,
    /// Most logons started per second by one agent, e.g. 500 or 500/s [default: unlimited].
    #[arg(long, value_name = "R/s", value_parser = pluribus_common::spec::per_second)]
    pub logon_rate: Option<f64>,
    /// Devices that share one FIX session (one connection, one SenderCompID rendered
    /// with {index} = the session's number; each message names its device in SenderSubID),
    /// for gateways that allow few sessions [default: 1]. The shard size must be a multiple.
    #[arg(long, value_name = "N")]
    pub devices_per_session: Option<u32>,
}

fn parse_version(s: &str) -> Result<FixVersion, String> {
    match s {
        "FIX.4.4" | "4.4" | "fix44" => Ok(FixVersion::Fix44),
        _ => Err(format!("'{s}' is not a supported FIX version: use FIX.4.4")),
    }
}

fn parse_message(s: &str) -> Result<FixMessage, String> {
    serde_json::from_value(Value::from(s)).map_err(|_| {
        format!("'{s}' is not a message template: use new_order_single, order_cancel_request or market_data_incremental_refresh")
    })
}

impl SinkFlags for FixFlags {
    const SINK: &'static str = "fix";
    const SENDS: &'static str = "sends FIX messages";

    fn options(&self) -> Vec<FlagOption> {
        vec![
            ("--fix-host", "hosts", list(&self.fix_host)),
            (
                "--sender-comp-id",
                "sender_comp_id",
                text(&self.sender_comp_id),
            ),
            (
                "--target-comp-id",
                "target_comp_id",
                text(&self.target_comp_id),
            ),
            (
                "--fix-version",
                "fix_version",
                self.fix_version.map(|v| Value::from(v.begin_string())),
            ),
            ("--heartbeat", "heartbeat", duration(self.heartbeat)),
            (
                "--message",
                "message",
                self.message.and_then(|m| serde_json::to_value(m).ok()),
            ),
            ("--symbols", "symbols", list(&self.symbols)),
            (
                "--no-reset-seq-num",
                "reset_seq_num",
                switch(self.no_reset_seq_num, Value::Bool(false)),
            ),
            ("--fix-username", "username", text(&self.fix_username)),
            ("--fix-password", "password", text(&self.fix_password)),
            ("--fix-ca", "ca", text(&self.fix_ca)),
            (
                "--logon-rate",
                "connect_rate",
                self.logon_rate.map(Value::from),
            ),
            (
                "--devices-per-session",
                "devices_per_session",
                self.devices_per_session.map(Value::from),
            ),
        ]
    }

    fn check_required(&self) -> Result<(), SpecError> {
        if self.fix_host.is_empty() {
            return Err(SpecError::new(
                "--fix-host",
                "--sink fix needs an acceptor: add e.g. --fix-host 127.0.0.1:9878",
            ));
        }
        if self.target_comp_id.is_none() {
            return Err(SpecError::new(
                "--target-comp-id",
                "--sink fix needs the acceptor's CompID: add e.g. --target-comp-id GATEWAY",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::cmd::sink_flags::test_support::sink;
    use crate::cmd::Cli;
    use clap::Parser;

    #[test]
    fn flags_become_the_sink_options() {
        let s = sink(&[
            "--sink",
            "fix",
            "--fix-host",
            "127.0.0.1:9878,tls://gw:443",
            "--target-comp-id",
            "GATEWAY",
            "--sender-comp-id",
            "C-{index}",
            "--heartbeat",
            "10s",
            "--message",
            "order_cancel_request",
            "--symbols",
            "IBM,ORCL",
            "--fix-password",
            "env:FIX_PW",
            "--no-reset-seq-num",
        ])
        .expect("valid");
        assert_eq!(s.kind, "fix");
        let o = serde_json::Value::Object(s.options);
        assert_eq!(o["hosts"][1], "tls://gw:443");
        assert_eq!(o["target_comp_id"], "GATEWAY");
        assert_eq!(o["sender_comp_id"], "C-{index}");
        assert_eq!(o["heartbeat"], "10s");
        assert_eq!(o["message"], "order_cancel_request");
        assert_eq!(o["symbols"][1], "ORCL");
        assert_eq!(o["password"], "env:FIX_PW");
        assert_eq!(o["reset_seq_num"], false);
    }

    #[test]
    fn mistakes_name_the_flag_or_field() {
        assert_eq!(
            sink(&["--target-comp-id", "G"]).expect_err("console").field,
            "--target-comp-id"
        );
        assert_eq!(
            sink(&["--sink", "fix", "--target-comp-id", "G"])
                .expect_err("no host")
                .field,
            "--fix-host"
        );
        assert_eq!(
            sink(&["--sink", "fix", "--fix-host", "h:1"])
                .expect_err("no target")
                .field,
            "--target-comp-id"
        );
        let e = sink(&["--sink", "fix", "--fix-host", "h", "--target-comp-id", "G"])
            .expect_err("no port");
        assert_eq!(e.field, "sink.hosts[0]");
        let e = sink(&[
            "--sink",
            "fix",
            "--fix-host",
            "h:1",
            "--target-comp-id",
            "G",
            "--heartbeat",
            "0s",
        ])
        .expect_err("heartbeat");
        assert_eq!(e.field, "sink.heartbeat");
        assert!(Cli::try_parse_from(["pluribusctl", "deploy", "--message", "quote"]).is_err());
        assert!(
            Cli::try_parse_from(["pluribusctl", "deploy", "--fix-version", "FIX.4.2"]).is_err()
        );
    }
}
