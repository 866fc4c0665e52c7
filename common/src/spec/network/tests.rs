use super::plan::{NetPlan, RuntimeRule};
use super::*;
use crate::spec::{parse_fleet_text, FileFormat};

fn parse(network: &str) -> Result<crate::spec::FleetSpec, crate::SpecError> {
    let text = format!("name: f\ncount: 100\nnetwork:\n{network}");
    parse_fleet_text("f.yaml", &text, FileFormat::Yaml, None)
}

#[test]
fn a_full_section_parses() {
    let s = parse(
        "  default: {preset: 3g}\n  cohorts:\n    - {cohort: 20%, latency: {delay: 200ms, jitter: 50ms, distribution: normal}}\n    - {cohort: 0..10, clock: {offset: +30s, drift_ppm: 50}}\n  timeline:\n    - {at: 2m, for: 30s, cohort: 10%, loss: {probability: 1}}\n    - {at: 5m, for: 10s, cohort: 0..50, partition: {}}\n",
    )
    .expect("valid");
    let n = s.network.expect("network");
    assert_eq!(n.cohorts[0].cohort, Some(Cohort::Percent(20.0)));
    assert_eq!(
        n.cohorts[1].clock.as_ref().map(|c| c.offset_ms),
        Some(30_000)
    );
    assert_eq!(
        n.timeline[0].duration,
        Some(std::time::Duration::from_secs(30))
    );
}

#[test]
fn bad_input_names_the_field() {
    let cases = [
        (
            "  default: {loss: {probability: 1.5}}\n",
            "network.default.loss.probability",
        ),
        (
            "  default: {duplicate: {probability: -0.1}}\n",
            "network.default.duplicate.probability",
        ),
        (
            "  cohorts:\n    - {latency: {delay: 1s}}\n",
            "network.cohorts[0].cohort",
        ),
        (
            "  timeline:\n    - {cohort: 5%, loss: {probability: 0.5}}\n",
            "network.timeline[0].at",
        ),
        ("  default: {preset: dialup}\n", "network.default.preset"),
        (
            "  default: {reorder: {probability: 0.1, gap: 0}}\n",
            "network.default.reorder.gap",
        ),
    ];
    for (section, field) in cases {
        let e = parse(section).expect_err(section);
        assert!(e.field.ends_with(field), "{section}: {e}");
    }
    // Errors serde reports itself still say what is wrong.
    for (section, needle) in [
        (
            "  cohorts:\n    - {cohort: 150%, loss: {probability: 0.1}}\n",
            "150% is not a share",
        ),
        ("  default: {jitterz: {}}\n", "jitterz"),
        ("  default: {latency: {delay: -5s}}\n", "delay"),
    ] {
        let e = parse(section).expect_err(section);
        assert!(e.to_string().contains(needle), "{section}: {e}");
    }
}

#[test]
fn percent_cohorts_are_stable_and_nested() {
    let ten = Cohort::Percent(10.0);
    let twenty = Cohort::Percent(20.0);
    let ids: Vec<String> = (0..10_000).map(|i| format!("d-{i}")).collect();
    let in10 = ids.iter().filter(|id| ten.contains(7, 0, id)).count();
    let in20 = ids.iter().filter(|id| twenty.contains(7, 0, id)).count();
    assert!((900..1100).contains(&in10), "{in10}");
    assert!((1850..2150).contains(&in20), "{in20}");
    assert!(ids
        .iter()
        .filter(|id| ten.contains(7, 0, id))
        .all(|id| twenty.contains(7, 0, id)));
    // Another seed picks other devices.
    let other = ids
        .iter()
        .filter(|id| ten.contains(8, 0, id) != ten.contains(7, 0, id));
    assert!(other.count() > 100);
}

#[test]
fn rules_overlay_in_order_and_follow_the_clock() {
    let spec: NetworkSpec = serde_yaml_ng::from_str(
        "default: {loss: {probability: 0.1}}\ntimeline:\n  - {at: 10s, for: 5s, loss: {probability: 0.9}}\n",
    )
    .expect("yaml");
    spec.validate("network").expect("valid");
    let runtime = [RuntimeRule {
        rule: NetRule {
            cohort: Some(Cohort::Range(0, 1)),
            clock: Some(ClockSpec {
                offset_ms: 1000,
                drift_ppm: 0.0,
            }),
            ..NetRule::default()
        },
        since_ms: 1_000,
        until_ms: None,
    }];
    let plan = NetPlan::new(Some(&spec), &runtime, 1_000, 0);
    let loss = |i: u64, t: u64| {
        plan.effective(i, "x", t)
            .and_then(|e| e.loss)
            .map(|l| l.probability)
    };
    assert_eq!(loss(5, 2_000), Some(0.1));
    assert_eq!(loss(5, 12_000), Some(0.9));
    assert_eq!(loss(5, 16_000), Some(0.1));
    assert!(plan
        .effective(0, "x", 2_000)
        .and_then(|e| e.clock)
        .is_some());
    assert!(plan
        .effective(1, "x", 2_000)
        .and_then(|e| e.clock)
        .is_none());
    assert_eq!(plan.next_change(2_000), Some(11_000));
    assert_eq!(plan.next_change(11_000), Some(16_000));
    assert!(NetPlan::new(None, &[], 0, 0).is_off());
}

#[test]
fn every_preset_is_valid() {
    for p in PRESETS {
        let r = NetRule {
            preset: Some(p.name.into()),
            ..NetRule::default()
        };
        r.validate("x").expect(p.name);
        assert!(!r.impairments().is_off(), "{}", p.name);
    }
    assert_eq!(parse_signed_ms("-2m"), Ok(-120_000));
    assert_eq!(parse_signed_ms("+1.5s"), Ok(1500));
    assert!(parse_signed_ms("soon").is_err());
    assert_eq!(parse_signed_ms("1500ms"), Ok(1500));
}

#[test]
fn rules_that_do_not_validate_are_left_out_of_a_plan() {
    let bad = RuntimeRule {
        rule: NetRule {
            loss: Some(LossSpec {
                probability: f64::NAN,
                gilbert: None,
            }),
            ..NetRule::default()
        },
        since_ms: 0,
        until_ms: None,
    };
    assert!(NetPlan::new(None, &[bad], 0, 0).is_off());
}

#[test]
fn label_cohorts_pick_the_devices_their_definition_names() {
    let s = parse(
        "  labels:\n    zone=eu: 0..10\n    link=cellular: 30%\n    site=lab: [f-00050, f-00051]\n  cohorts:\n    - {cohort: zone=eu, loss: {probability: 1}}\n    - {cohort: site=lab, clock: {offset: +30s}}\n    - {cohort: link=cellular, duplicate: {probability: 1}}\n",
    )
    .expect("valid");
    let n = s.network.expect("network");
    let plan = NetPlan::new(Some(&n), &[], 0, 3);
    let id = |i: u64| format!("f-{i:05}");
    let get = |i: u64| plan.effective(i, &id(i), 1);
    for i in 0..10 {
        assert!(get(i).is_some_and(|e| e.loss.is_some()), "{i}");
    }
    assert!(get(50).is_some_and(|e| e.clock.is_some() && e.loss.is_none()));
    assert!(get(51).is_some_and(|e| e.clock.is_some()));
    // The share is the same as a plain 30% cohort's.
    let share = Cohort::Percent(30.0);
    for i in 10..100 {
        let dup = get(i).is_some_and(|e| e.duplicate.is_some());
        assert_eq!(dup, share.contains(3, i, &id(i)), "{i}");
    }
    // A runtime rule on a label the file does not define is left out.
    let bad = RuntimeRule {
        rule: NetRule {
            cohort: Some("zone=us".parse().expect("a label")),
            loss: Some(LossSpec {
                probability: 1.0,
                gilbert: None,
            }),
            ..NetRule::default()
        },
        since_ms: 0,
        until_ms: None,
    };
    assert_eq!(NetPlan::new(Some(&n), &[bad], 0, 3).rules().len(), 3);
}

#[test]
fn bad_labels_and_flapping_name_the_field() {
    for (section, field) in [
        (
            "  cohorts:\n    - {cohort: zone=eu, loss: {probability: 1}}\n",
            "network.cohorts[0].cohort",
        ),
        ("  labels:\n    zone: 10%\n", "network.labels.zone"),
        ("  labels:\n    a=b: c=d\n", "network.labels.a=b"),
        (
            "  default: {flap: {uptime: {mean: -5s}, downtime: {mean: 1s}}}\n",
            "network.default.flap.uptime.mean",
        ),
        (
            "  default: {flap: {uptime: {mean: 5s, deviation: -1s}, downtime: {mean: 1s}}}\n",
            "network.default.flap.uptime.deviation",
        ),
        (
            "  default: {flap: {per_minute: 1.5, downtime: {mean: 1s}}}\n",
            "network.default.flap.per_minute",
        ),
        (
            "  default: {flap: {downtime: {mean: 1s}}}\n",
            "network.default.flap.uptime",
        ),
        (
            "  default: {flap: {per_minute: 0.5, downtime: {mean: 0s}}}\n",
            "network.default.flap.downtime.mean",
        ),
    ] {
        let e = parse(section).expect_err(section);
        assert!(e.field.ends_with(field), "{section}: {e}");
    }
    for (section, needle) in [
        ("  labels:\n    a=b: 150%\n", "share"),
        ("  default: {partition: {link: cut}}\n", "unknown variant"),
    ] {
        let e = parse(section).expect_err(section);
        assert!(e.to_string().contains(needle), "{section}: {e}");
    }
}

#[test]
fn too_many_cohorts_are_refused_naming_the_limit() {
    let mut text = String::from("  cohorts:\n");
    for i in 0..=MAX_COHORTS {
        text.push_str(&format!(
            "    - {{cohort: {i}..{}, loss: {{probability: 0.1}}}}\n",
            i + 1
        ));
    }
    let e = parse(&text).expect_err("17 cohorts");
    assert!(e.to_string().contains("17 different cohorts"), "{e}");
    // The same cohort twice counts once.
    let twice = "  cohorts:\n    - {cohort: 10%, loss: {probability: 0.1}}\n    - {cohort: 10%, duplicate: {probability: 0.1}}\n";
    assert!(parse(twice).is_ok());
}

#[test]
fn a_device_counts_under_the_last_cohort_rule_it_is_in() {
    let rule = |cohort: Option<Cohort>| RuntimeRule {
        rule: NetRule {
            cohort,
            loss: Some(LossSpec {
                probability: 0.1,
                gilbert: None,
            }),
            ..NetRule::default()
        },
        since_ms: 0,
        until_ms: None,
    };
    let rules = [
        rule(None),
        rule(Some(Cohort::Range(0, 50))),
        rule(Some(Cohort::Range(0, 10))),
    ];
    let plan = NetPlan::new(None, &rules, 0, 1);
    let cohort = |i: u64| {
        plan.resolve(i, &format!("d-{i}"), 1)
            .1
            .map(|c| c.to_string())
    };
    assert_eq!(cohort(5).as_deref(), Some("0..10"));
    assert_eq!(cohort(20).as_deref(), Some("0..50"));
    assert_eq!(cohort(70), None);
}
