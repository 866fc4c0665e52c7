use serde_json::json;

use super::*;

fn profile(fields: serde_json::Value) -> serde_json::Value {
    json!({"name": "p", "fields": fields})
}

fn field_of(v: serde_json::Value) -> String {
    Profile::from_value(&v).expect_err("invalid").field
}

#[test]
fn every_builtin_is_valid_and_named_after_its_file() {
    assert!(builtin().len() >= 5);
    for (name, _) in builtin() {
        let p = builtin_profile(name).unwrap_or_else(|| panic!("{name} is invalid"));
        assert_eq!(&p.name, name);
        // The JSON form (a fleet's options) reads back to the same profile.
        let v = serde_json::to_value(&p).expect("to json");
        assert_eq!(Profile::from_value(&v).expect("from json"), p, "{name}");
        validate_options(&v).expect("valid options");
    }
    assert!(builtin_profile("nope").is_none());
}

#[test]
fn validation_names_the_field() {
    assert_eq!(
        field_of(profile(
            json!({"power": {"normal": {"mean": 1, "stddev": -1}}})
        )),
        "fields.power.normal.stddev"
    );
    assert_eq!(
        field_of(profile(json!({"a": {"uniform": {"min": 2, "max": 1}}}))),
        "fields.a.uniform.max"
    );
    assert_eq!(
        field_of(profile(
            json!({"a": {"sine": {"period": "0s", "amplitude": 1}}})
        )),
        "fields.a.sine.period"
    );
    assert_eq!(
        field_of(profile(
            json!({"a": {"choice": {"values": [1, 2], "weights": [1]}}})
        )),
        "fields.a.choice.weights"
    );
    assert_eq!(
        field_of(profile(json!({"a": {"x": [{"bool": {"probability": 2}}]}}))),
        "fields.a.x[0].bool.probability"
    );
    assert_eq!(
        field_of(profile(
            json!({"a": {"random_walk": {"start": 50, "step": 1, "min": 0, "max": 10}}})
        )),
        "fields.a.random_walk.start"
    );
    assert_eq!(
        field_of(profile(json!({"a": {"template": "{nope}"}}))),
        "fields.a.template"
    );
    assert_eq!(
        field_of(profile(
            json!({"a": {"gps": {"waypoints": [[1, 2], [3, 4]]}}})
        )),
        "fields.a.gps.speed_kmh"
    );
    assert_eq!(
        field_of(profile(json!({"a": {"state_machine": {"states": [
            {"name": "x", "dwell": {"min": 1, "max": 2}, "next": {"y": 1}}
        ]}}}))),
        "fields.a.state_machine.states[0].next.y"
    );
    assert_eq!(
        field_of(profile(json!({"a": {"normal": {"mean": 1}}}))),
        "fields.a.normal"
    );
    let mut v = profile(json!({"a": 1}));
    v["events"] = json!([
        {"name": "ok", "probability": 0.5},
        {"name": "bad", "probability": 1.5},
    ]);
    let e = Profile::from_value(&v).expect_err("probability");
    assert_eq!(e.field, "events[1].probability");
    assert!(e.message.contains("must be in [0, 1]"), "{e}");
    let mut v = profile(json!({"a": 1}));
    v["commands"] = json!({"set": ["b"]});
    assert_eq!(field_of(v), "commands.set[0]");
    let mut v = profile(json!({}));
    v["bogus"] = json!(1);
    assert_eq!(field_of(v), "bogus");
    let mut v = profile(json!({}));
    v["interval"] = json!("soon");
    assert_eq!(field_of(v), "interval");
    let mut v = profile(json!({}));
    v["jitter"] = json!("1s");
    assert_eq!(field_of(v), "jitter");
    assert_eq!(field_of(json!({"name": "a.b"})), "name");
    let mut v = profile(json!({"a": 1}));
    v["payload"] = json!({"bytes": 64});
    assert_eq!(field_of(v), "fields");
}

#[test]
fn the_fleet_hook_nests_errors_under_device_options() {
    let mut spec = crate::spec::FleetSpec::counted("f", 1);
    spec.device.kind = "profile".into();
    spec.device.options = profile(json!({"p": {"normal": {"mean": 1, "stddev": -1}}}));
    let e = spec.validate().expect_err("bad profile");
    assert_eq!(e.field, "device.options.fields.p.normal.stddev");
    spec.device.options = serde_json::to_value(builtin_profile("smart-meter")).expect("json");
    spec.validate().expect("valid");
}

#[test]
fn raw_payloads_parse() {
    let p = Profile::from_value(&json!({"name": "raw", "payload": {"bytes": 256}})).expect("raw");
    assert_eq!(p.payload, Payload::Bytes(256));
    let e = Profile::from_value(&json!({"name": "raw", "payload": {"bytes": 0}})).expect_err("0");
    assert_eq!(e.field, "payload.bytes");
}

#[test]
fn listed_devices_inherit_the_fleet_profile() {
    let mut spec = crate::spec::FleetSpec::counted("f", 1);
    spec.count = None;
    spec.device.kind = "profile".into();
    spec.device.options = serde_json::to_value(builtin_profile("door-motion")).expect("json");
    spec.devices = vec![crate::spec::DeviceEntry {
        device_id: "front-door".into(),
        kind: None,
        sink: None,
        interval: None,
        options: serde_json::Value::Null,
    }];
    spec.validate()
        .expect("the device runs the fleet's profile");
}
