//! Which impairments apply to which device when: the rules of a fleet's `network:`
//! section and its runtime rules (`pluribusctl network`), in order.

use serde::{Deserialize, Serialize};

use std::sync::Arc;

use super::{Cohort, Impairments, LabelSets, NetRule, NetworkSpec, MAX_COHORTS, MAX_RULES};

/// A rule set at runtime (`pluribusctl network FLEET set`), kept in the fleet record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeRule {
    /// The rule (cohort and impairments; no `at`/`for`).
    pub rule: NetRule,
    /// When it was set (Unix ms).
    pub since_ms: u64,
    /// When it ends (Unix ms), for `--for`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
}

/// Where a rule comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// `network.default`
    Default,
    /// `network.cohorts[i]`
    Cohort,
    /// `network.timeline[i]`
    Timeline,
    /// `pluribusctl network set`
    Runtime,
}

/// One rule with its times resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedRule {
    /// Where it comes from.
    pub origin: Origin,
    /// Position in its list.
    pub position: usize,
    /// Devices (all when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cohort: Option<Cohort>,
    /// Preset, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// Starts (Unix ms).
    pub from_ms: u64,
    /// Ends (Unix ms), if it ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
    /// What it does (preset expanded).
    pub impairments: Impairments,
}

impl PlannedRule {
    fn live(&self, now_ms: u64) -> bool {
        now_ms >= self.from_ms && self.until_ms.is_none_or(|u| now_ms < u)
    }
}

/// A fleet's rules, ready to ask what applies to a device now.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NetPlan {
    seed: u64,
    rules: Vec<PlannedRule>,
    labels: Arc<LabelSets>,
}

impl NetPlan {
    /// The plan of a fleet whose schedule starts at `start_ms`, with `seed`.
    pub fn new(
        spec: Option<&NetworkSpec>,
        runtime: &[RuntimeRule],
        start_ms: u64,
        seed: u64,
    ) -> Self {
        let mut rules = Vec::new();
        let labels = Arc::new(spec.map(|s| LabelSets::new(&s.labels)).unwrap_or_default());
        // Rules come from KV, which anyone with access may write: a rule that does not
        // validate is left out (and said so), and there are at most MAX_RULES.
        let mut add = |origin, position, r: &NetRule, from_ms: u64, until_ms: Option<u64>| {
            if let Err(e) = r.validate("rule") {
                tracing::warn!(?origin, position, error = %e, "network rule left out");
                return;
            }
            if let Some(l) = r.cohort.as_ref().and_then(Cohort::label) {
                if !labels.defines(l) {
                    tracing::warn!(
                        ?origin,
                        position,
                        label = l,
                        "network rule left out: its label is not defined"
                    );
                    return;
                }
            }
            if rules.len() >= MAX_RULES {
                tracing::warn!(?origin, position, "network rule left out: too many rules");
                return;
            }
            if let Some(c) = &r.cohort {
                let mut named: Vec<&Cohort> = Vec::new();
                for x in rules.iter().filter_map(|x: &PlannedRule| x.cohort.as_ref()) {
                    if !named.contains(&x) {
                        named.push(x);
                    }
                }
                if !named.contains(&c) && named.len() >= MAX_COHORTS {
                    tracing::warn!(?origin, position, "network rule left out: too many cohorts");
                    return;
                }
            }
            let impairments = r.impairments();
            if !impairments.is_off() {
                rules.push(PlannedRule {
                    origin,
                    position,
                    cohort: r.cohort.clone(),
                    preset: r.preset.clone(),
                    from_ms,
                    until_ms,
                    impairments,
                });
            }
        };
        if let Some(s) = spec {
            if let Some(d) = &s.default {
                add(Origin::Default, 0, d, 0, None);
            }
            for (i, r) in s.cohorts.iter().enumerate() {
                add(Origin::Cohort, i, r, 0, None);
            }
            for (i, r) in s.timeline.iter().enumerate() {
                let from = start_ms + r.at.unwrap_or_default().as_millis() as u64;
                let until = r.duration.map(|d| from + d.as_millis() as u64);
                add(Origin::Timeline, i, r, from, until);
            }
        }
        for (i, r) in runtime.iter().enumerate() {
            add(Origin::Runtime, i, &r.rule, r.since_ms, r.until_ms);
        }
        Self {
            seed,
            rules,
            labels,
        }
    }

    /// True when no rule impairs anything, ever: the agent then leaves its sinks alone.
    pub fn is_off(&self) -> bool {
        self.rules.is_empty()
    }

    /// True if some rule may cut devices' links (offline or flapping with a `close` or
    /// `stall` link): sinks whose devices share connections then give each its own.
    pub fn cuts_links(&self) -> bool {
        use super::LinkMode;
        self.rules.iter().any(|r| {
            let i = &r.impairments;
            i.offline.as_ref().is_some_and(|o| o.link != LinkMode::Keep)
                || i.flap.as_ref().is_some_and(|f| {
                    f.offline.as_ref().map_or(LinkMode::Close, |o| o.link) != LinkMode::Keep
                })
        })
    }

    /// True if the fleet file defines `label`.
    pub fn defines_label(&self, label: &str) -> bool {
        self.labels.defines(label)
    }

    /// Every rule, times resolved.
    pub fn rules(&self) -> &[PlannedRule] {
        &self.rules
    }

    /// The rules in force at `now_ms`.
    pub fn live(&self, now_ms: u64) -> impl Iterator<Item = &PlannedRule> {
        self.rules.iter().filter(move |r| r.live(now_ms))
    }

    /// What device `index` (`device_id`) gets at `now_ms`, or `None` if nothing.
    pub fn effective(&self, index: u64, device_id: &str, now_ms: u64) -> Option<Impairments> {
        self.resolve(index, device_id, now_ms).0
    }

    /// What device `index` (`device_id`) gets at `now_ms`, and the cohort its injected
    /// faults are counted under: that of the last rule in force that names a cohort the
    /// device is in (`None`: only rules for every device apply to it, or none).
    pub fn resolve(
        &self,
        index: u64,
        device_id: &str,
        now_ms: u64,
    ) -> (Option<Impairments>, Option<&Cohort>) {
        let mut out: Option<Impairments> = None;
        let mut cohort = None;
        for r in self.live(now_ms) {
            let member = match &r.cohort {
                None => true,
                Some(c) => {
                    let yes = self.labels.contains(c, self.seed, index, device_id);
                    if yes {
                        cohort = Some(c);
                    }
                    yes
                }
            };
            if member {
                out.get_or_insert_with(Impairments::default)
                    .overlay(&r.impairments);
            }
        }
        (out.filter(|i| !i.is_off()), cohort)
    }

    /// The first time after `now_ms` at which a rule starts or ends.
    pub fn next_change(&self, now_ms: u64) -> Option<u64> {
        self.rules
            .iter()
            .flat_map(|r| [Some(r.from_ms), r.until_ms])
            .flatten()
            .filter(|t| *t > now_ms)
            .min()
    }
}
