//! What a scenario's steps must make sense of before anything runs: fleets they name exist,
//! probes have a source, checks on probe figures have a probe, and so on.

use pluribus_common::spec::{BrokerUrl, MAX_FLEET_SIZE};
use pluribus_common::SpecError;

use super::check::{Check, Figure};
use super::file::Scenario;
use super::steps::{CheckItem, Step};
use crate::probe::{mqtt, nats};

/// The most times a `repeat` may run its steps.
pub const MAX_REPEAT: u32 = 100_000;

struct Walk<'a> {
    s: &'a Scenario,
    /// Probe windows opened so far (in file order).
    probes: Vec<String>,
}

impl Scenario {
    /// Checks the steps against the fleets and each other.
    pub fn validate(&self) -> Result<(), SpecError> {
        for (key, spec) in &self.fleets {
            if spec.name != *key {
                return Err(SpecError::new(
                    format!("{}: fleets.{key}.name", self.origin),
                    format!(
                        "the fleet is listed as '{key}' but named '{}': make them the same",
                        spec.name
                    ),
                ));
            }
            spec.validate().map_err(|e| {
                SpecError::new(
                    format!("{}: fleets.{key}.{}", self.origin, e.field),
                    e.message,
                )
            })?;
        }
        let mut w = Walk {
            s: self,
            probes: Vec::new(),
        };
        for (i, step) in self.steps.iter().enumerate() {
            w.step(step, &format!("steps[{i}]"))
                .map_err(|(field, msg)| SpecError::new(format!("{}: {field}", self.at(i)), msg))?;
        }
        Ok(())
    }
}

type Bad = (String, String);

impl Walk<'_> {
    fn fleet(&self, path: &str, name: &str) -> Result<(), Bad> {
        if self.s.fleets.contains_key(name) {
            return Ok(());
        }
        let known: Vec<&str> = self.s.fleets.keys().map(String::as_str).collect();
        Err((
            format!("{path}.fleet"),
            format!(
                "'{name}' is not one of the scenario's fleets ({}): add it under `fleets:` or fix the name",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ),
        ))
    }

    /// `agent:` of a drain or kill_agent step at `path`.
    fn agent(&self, path: &str, agent: &str) -> Result<(), Bad> {
        if agent.trim().is_empty() {
            return Err((
                format!("{path}.agent"),
                "name an agent (its name or id), or holder-of:FLEET".into(),
            ));
        }
        match agent.strip_prefix("holder-of:") {
            Some(f) => self.fleet(path, f),
            None => Ok(()),
        }
    }

    fn check(
        &self,
        path: &str,
        c: &Check,
        probe: Option<&str>,
        fleet: Option<&str>,
    ) -> Result<(), Bad> {
        if c.figure.needs_probe() {
            match probe {
                Some(p) if !self.probes.iter().any(|x| x == p) => {
                    return Err((format!("{path}.probe"), format!("no probe window '{p}' is opened before this step: add a `probe: {{name: {p}, ...}}` step before it")));
                }
                None if self.probes.is_empty() => {
                    return Err((path.to_string(), format!("'{c}' judges a probe's figures, but no probe window is opened before it: add a `probe` step (or judge ack p99 for the sink's acknowledgements)")));
                }
                _ => {}
            }
        }
        if c.figure == Figure::Replies {
            return Err((
                path.to_string(),
                format!("'{c}': replies are judged in a `command` step's `expect`"),
            ));
        }
        if let Some(f) = fleet {
            self.fleet(path, f)?;
        }
        Ok(())
    }

    fn step(&mut self, step: &Step, path: &str) -> Result<(), Bad> {
        let here = |k: &str| format!("{path}.{k}");
        match step {
            Step::Deploy(d) => self.fleet(&here("deploy"), &d.options().fleet),
            Step::Scale(s) => {
                self.fleet(&here("scale"), &s.fleet)?;
                if s.count > MAX_FLEET_SIZE {
                    return Err((
                        here("scale.count"),
                        format!(
                            "{} is above the limit of {MAX_FLEET_SIZE} devices per fleet",
                            s.count
                        ),
                    ));
                }
                if self
                    .s
                    .fleets
                    .get(&s.fleet)
                    .is_some_and(|f| f.count.is_none())
                {
                    return Err((
                        here("scale.fleet"),
                        format!(
                            "fleet {} lists its devices: only counted fleets scale",
                            s.fleet
                        ),
                    ));
                }
                Ok(())
            }
            Step::SetLoad(s) => {
                self.fleet(&here("set_load"), &s.fleet)?;
                if let Some(load) = &s.load {
                    let mut spec = self.s.fleets[&s.fleet].clone();
                    spec.load = Some(load.clone());
                    spec.validate()
                        .map_err(|e| (here(&format!("set_load.{}", e.field)), e.message))?;
                }
                Ok(())
            }
            Step::Stop(s) => self.fleet(&here("stop"), &s.fleet),
            Step::Delete(f) => self.fleet(&here("delete"), f.name()),
            Step::Network(n) => {
                self.fleet(&here("network"), &n.fleet)?;
                match (&n.set, n.clear) {
                    (Some(_), true) | (None, false) => Err((
                        here("network"),
                        "give `set: RULE` (e.g. {loss: 5%, for: 30s}) or `clear: true`".into(),
                    )),
                    (Some(rule), false) => {
                        if rule.at.is_some() {
                            return Err((here("network.set.at"), "a step's rule starts when the step runs: drop `at` (put a `wait` before the step)".into()));
                        }
                        rule.validate("")
                            .map_err(|e| (here(&format!("network.set.{}", e.field)), e.message))?;
                        if rule.impairments().is_off() {
                            return Err((here("network.set"), "give at least one impairment (e.g. loss: 5%, latency: 200ms, preset: 3g, offline: {})".into()));
                        }
                        Ok(())
                    }
                    (None, true) => Ok(()),
                }
            }
            Step::Command(c) => {
                self.fleet(&here("command"), &c.fleet)?;
                if c.device.is_some() && c.cohort.is_some() {
                    return Err((
                        here("command"),
                        "give `device` or `cohort`, not both".into(),
                    ));
                }
                if let Some(e) = &c.expect {
                    if e.figure != Figure::Replies {
                        return Err((
                            here("command.expect"),
                            format!(
                                "'{e}': a command's expect judges its replies, e.g. replies >= 99%"
                            ),
                        ));
                    }
                }
                Ok(())
            }
            Step::Drain(d) => self.agent(&here("drain"), &d.agent),
            Step::KillAgent(k) => self.agent(&here("kill_agent"), &k.agent),
            Step::Wait(_) => Ok(()),
            Step::WaitFor(w) => {
                let o = w.options();
                self.check(
                    &here("wait_for.condition"),
                    &o.condition,
                    None,
                    o.fleet.as_deref(),
                )
            }
            Step::Probe(p) => {
                let at = here("probe");
                match (&p.subject, &p.broker, &p.topic) {
                    (Some(s), None, None) => nats::check_subject(s).map_err(|e| {
                        (format!("{at}.subject"), e.replace("--subject", "subject"))
                    })?,
                    (None, Some(b), Some(t)) => {
                        let broker = BrokerUrl::parse("broker", b)
                            .map_err(|e| (format!("{at}.broker"), e.message))?;
                        if broker.tls {
                            return Err((format!("{at}.broker"), "a scenario's probe speaks plain MQTT (mqtt:// or ws://): use `pluribusctl probe` for a TLS broker".into()));
                        }
                        mqtt::check_topic(t)
                            .map_err(|e| (format!("{at}.topic"), e.replace("--topic", "topic")))?;
                    }
                    _ => {
                        return Err((
                            at,
                            "give `subject` (NATS), or `broker` with `topic` (MQTT)".into(),
                        ))
                    }
                }
                if p.qos > 2 {
                    return Err((format!("{at}.qos"), "0, 1 or 2".into()));
                }
                if self.probes.contains(&p.name) {
                    return Err((
                        format!("{at}.name"),
                        format!(
                            "a probe window '{}' is opened already: give this one another name",
                            p.name
                        ),
                    ));
                }
                self.probes.push(p.name.clone());
                Ok(())
            }
            Step::ProbeEnd(name) => {
                if !self.probes.contains(name) {
                    return Err((
                        here("probe_end"),
                        format!("no probe window '{name}' is opened before this step"),
                    ));
                }
                Ok(())
            }
            Step::Expect(e) => {
                if e.checks.is_empty() {
                    return Err((
                        here("expect.checks"),
                        "give at least one check, e.g. - p99 < 200ms".into(),
                    ));
                }
                if e.window.is_some_and(|w| w.is_zero()) {
                    return Err((
                        here("expect.window"),
                        "give a window longer than 0, or leave it out (since the run started)"
                            .into(),
                    ));
                }
                for (j, item) in e.checks.iter().enumerate() {
                    let (c, _, _) = CheckItem::parts(item);
                    self.check(
                        &here(&format!("expect.checks[{j}]")),
                        c,
                        e.probe.as_deref(),
                        e.fleet.as_deref(),
                    )?;
                }
                Ok(())
            }
            Step::Parallel(steps) => {
                if steps.is_empty() {
                    return Err((here("parallel"), "give the steps to run together".into()));
                }
                for (j, s) in steps.iter().enumerate() {
                    if matches!(s, Step::Probe(_) | Step::ProbeEnd(_)) {
                        return Err((
                            here(&format!("parallel[{j}]")),
                            "open and close probe windows outside parallel groups".into(),
                        ));
                    }
                    self.step(s, &here(&format!("parallel[{j}]")))?;
                }
                Ok(())
            }
            Step::Repeat(r) => {
                if r.times == 0 || r.times > MAX_REPEAT {
                    return Err((here("repeat.times"), format!("between 1 and {MAX_REPEAT}")));
                }
                if r.steps.is_empty() {
                    return Err((here("repeat.steps"), "give the steps to repeat".into()));
                }
                for (j, s) in r.steps.iter().enumerate() {
                    if matches!(s, Step::Probe(_)) {
                        return Err((
                            here(&format!("repeat.steps[{j}]")),
                            "a probe window opens once: open it before the repeat".into(),
                        ));
                    }
                    self.step(s, &here(&format!("repeat.steps[{j}]")))?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::file::Scenario;
    use super::super::vars::Vars;
    use pluribus_common::spec::FileFormat;
    use std::path::Path;

    fn parse(text: &str) -> Result<Scenario, pluribus_common::SpecError> {
        Scenario::parse(
            "s.yaml",
            text,
            FileFormat::Yaml,
            &Vars::default(),
            Path::new("."),
            "s",
        )
    }

    #[test]
    fn steps_are_checked_against_the_fleets_and_probes() {
        let head = "fleets:\n  m: {count: 5}\nsteps:\n  - deploy: m\n";
        for (tail, field, says) in [
            (
                "  - scale: {fleet: x, count: 3}\n",
                "s.yaml:5: steps[1].scale.fleet",
                "not one of the scenario's fleets (m)",
            ),
            (
                "  - expect: {checks: [p99 < 1s]}\n",
                "s.yaml:5: steps[1].expect.checks[0]",
                "no probe window",
            ),
            (
                "  - probe: {subject: 'a..b'}\n",
                "s.yaml:5: steps[1].probe.subject",
                "not a NATS subject",
            ),
            (
                "  - probe: {broker: 'mqtt://h:1'}\n",
                "s.yaml:5: steps[1].probe",
                "give `subject`",
            ),
            (
                "  - network: {fleet: m}\n",
                "s.yaml:5: steps[1].network",
                "clear: true",
            ),
            (
                "  - network: {fleet: m, set: {loss: 200%}}\n",
                "s.yaml:5",
                "steps[1].network.set.loss",
            ),
            (
                "  - repeat: {times: 0, steps: [{wait: 1s}]}\n",
                "s.yaml:5: steps[1].repeat.times",
                "between",
            ),
            (
                "  - command: {fleet: m, expect: rate > 1}\n",
                "s.yaml:5: steps[1].command.expect",
                "replies",
            ),
            (
                "  - expect: {checks: [replies >= 1]}\n",
                "s.yaml:5: steps[1].expect.checks[0]",
                "command",
            ),
        ] {
            let e = parse(&format!("{head}{tail}")).expect_err(tail);
            assert!(e.field.starts_with(field), "{tail}: {e}");
            assert!(e.message.contains(says), "{tail}: {e}");
        }
        parse(&format!("{head}  - probe: {{subject: 't.>'}}\n  - expect: {{checks: [p99 < 1s, loss <= 0.1%]}}\n  - parallel:\n    - wait: 1s\n    - scale: {{fleet: m, count: 9}}\n  - repeat: {{times: 2, steps: [{{drain: {{agent: 'holder-of:m'}}}}, {{wait: 1s}}]}}\n")).expect("valid");
    }
}
