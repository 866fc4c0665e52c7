//! What the flags of every sink with flags of its own (`--sink mqtt|http|fix`) share: each
//! flag sets one sink option (the name a fleet file uses), a flag given with another sink
//! is refused naming it, and `--subject` (a nats sink's) is refused naming what the sink
//! sends to instead. One implementation per sink, in `<sink>_flags.rs`.

use pluribus_common::spec::SinkSpec;
use pluribus_common::SpecError;
use serde_json::Value;

/// One flag: (the flag as typed, the option it sets, its value when given).
pub type FlagOption = (&'static str, &'static str, Option<Value>);

/// The flags of one sink, flattened into the deploy flags.
pub trait SinkFlags {
    /// The sink they go with (`--sink NAME`).
    const SINK: &'static str;
    /// What the sink sends to, for the error when `--subject` is given with it, e.g.
    /// "publishes on --topic".
    const SENDS: &'static str;

    /// Every option the flags can set, in the order of `--help`.
    fn options(&self) -> Vec<FlagOption>;

    /// The first flag the sink cannot do without that is missing (or a flag given in a
    /// way the options cannot hold), with what to add.
    fn check_required(&self) -> Result<(), SpecError>;

    /// Fails, naming the flag, when one of these flags is given with another sink.
    fn check_sink(&self, sink: &str) -> Result<(), SpecError> {
        if sink == Self::SINK {
            return Ok(());
        }
        match self.options().into_iter().find(|(_, _, v)| v.is_some()) {
            Some((flag, _, _)) => Err(SpecError::new(
                flag,
                format!(
                    "goes with --sink {0}, not --sink {sink}: add --sink {0} or drop {flag}",
                    Self::SINK
                ),
            )),
            None => Ok(()),
        }
    }

    /// The sink the flags describe; `subject` is the --subject flag, which does not apply.
    fn sink_spec(&self, subject: Option<&str>) -> Result<SinkSpec, SpecError> {
        if subject.is_some() {
            return Err(SpecError::new(
                "--subject",
                format!(
                    "goes with --sink nats; the {} sink {}: drop --subject",
                    Self::SINK,
                    Self::SENDS
                ),
            ));
        }
        self.check_required()?;
        let options = self
            .options()
            .into_iter()
            .filter_map(|(_, name, v)| v.map(|v| (name.to_string(), v)))
            .collect();
        let spec = SinkSpec {
            kind: Self::SINK.into(),
            options,
        };
        spec.validate()?;
        Ok(spec)
    }
}

/// A text flag's value.
pub fn text(v: &Option<String>) -> Option<Value> {
    v.as_ref().map(|s| Value::from(s.clone()))
}

/// A repeated or comma-separated flag's values, when any were given.
pub fn list(v: &[String]) -> Option<Value> {
    (!v.is_empty()).then(|| v.to_vec().into())
}

/// A duration flag's value, as a fleet file writes it (e.g. "1s 500ms").
pub fn duration(d: Option<std::time::Duration>) -> Option<Value> {
    d.map(|d| humantime::format_duration(d).to_string().into())
}

/// A switch that sets an option to `value` when given.
pub fn switch(on: bool, value: Value) -> Option<Value> {
    on.then_some(value)
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::cmd::{Cli, Command};
    use clap::Parser;
    use pluribus_common::spec::SinkSpec;
    use pluribus_common::SpecError;

    /// The sink of `pluribusctl deploy --device-id d ARGS...`.
    pub fn sink(args: &[&str]) -> Result<SinkSpec, SpecError> {
        let mut argv = vec!["pluribusctl", "deploy", "--device-id", "d"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("parses");
        let Command::Deploy(a) = cli.command else {
            unreachable!("parsed as another command")
        };
        crate::cmd::deploy::device_spec("d", &a.flags).map(|s| s.sink)
    }
}
