use serde_json::{json, Value};

use super::*;

const T0: u64 = 1_700_000_000_000;

fn ctx<'a>(id: &'a str, seed: u64) -> DeviceCtx<'a> {
    DeviceCtx {
        device_id: id,
        fleet: "f",
        device_type: "p",
        index: 7,
        seed,
    }
}

fn ty(fields: Value) -> ProfileType {
    ty_with(json!({"name": "p", "fields": fields}))
}

fn ty_with(options: Value) -> ProfileType {
    match ProfileType::new(&options) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    }
}

fn tick(seq: u64) -> Tick {
    Tick {
        seq,
        scheduled_ms: T0 + seq * 1000,
        now_ms: T0 + seq * 1000 + 3,
    }
}

fn send(d: &mut ProfileDevice, c: &DeviceCtx<'_>, seq: u64) -> Value {
    let mut out = Vec::new();
    d.telemetry(c, &tick(seq), &mut out);
    serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
}

/// `data.v` for seqs `0..n` of device `id` with `seed`, from a fresh device.
fn series(t: &ProfileType, id: &str, seed: u64, n: u64) -> Vec<Value> {
    let c = ctx(id, seed);
    let mut d = t.device(&c);
    (0..n)
        .map(|s| send(&mut d, &c, s)["data"]["v"].clone())
        .collect()
}

fn nums(v: &[Value]) -> Vec<f64> {
    v.iter().map(|x| x.as_f64().expect("number")).collect()
}

#[test]
fn the_envelope_matches_the_generic_device() {
    let t = ty(json!({"v": 1}));
    let c = ctx("d1", 0);
    let v = send(&mut t.device(&c), &c, 3);
    let keys: Vec<&str> = v
        .as_object()
        .expect("obj")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "data",
            "device_id",
            "device_type",
            "fleet",
            "scheduled_ts",
            "seq",
            "ts"
        ]
    );
    assert_eq!(v["device_id"], "d1");
    assert_eq!(v["seq"], 3);
    assert_eq!(v["scheduled_ts"], T0 + 3000);
    assert_eq!(v["ts"], T0 + 3003);
    assert_eq!(v["data"], json!({"v": 1}));
    assert_eq!(t.name(), Some("p"));
}

#[test]
fn every_generator_is_deterministic_and_seeded() {
    let gens = [
        json!({"uniform": {"min": 0, "max": 10}}),
        json!({"normal": {"mean": 0, "stddev": 1}}),
        json!({"random_walk": {"start": 5, "step": 0.5, "min": 0, "max": 10}}),
        json!({"sine": {"period": "1m", "amplitude": 1, "phase": "per_device"}}),
        json!({"choice": {"values": ["a", "b", "c"], "weights": [1, 2, 3]}}),
        json!({"bool": {"probability": 0.5}}),
        json!("uuid"),
        json!({"gps": {"walk": {"lat": 48.8, "lon": 2.3, "step_m": 10}}}),
        json!({"gps": {"waypoints": [[48.8, 2.3], [48.9, 2.4]], "speed_kmh": 50, "phase": "per_device"}}),
        json!({"state_machine": {"states": [
            {"name": "a", "dwell": {"min": 1, "max": 3}, "next": {"b": 1}},
            {"name": "b", "dwell": {"min": 1, "max": 3}, "next": {"a": 1}}]}}),
    ];
    for g in gens {
        let t = ty(json!({"v": g}));
        let a = series(&t, "dev-1", 1, 200);
        assert_eq!(
            a,
            series(&t, "dev-1", 1, 200),
            "{g}: same inputs, same values"
        );
        assert_ne!(a, series(&t, "dev-1", 2, 200), "{g}: another seed differs");
        assert_ne!(
            a,
            series(&t, "dev-2", 1, 200),
            "{g}: another device differs"
        );
        // A device taken over at seq 150 (fresh state) sends what the first one sent.
        let c = ctx("dev-1", 1);
        let mut late = t.device(&c);
        let tail: Vec<Value> = (150..200)
            .map(|s| send(&mut late, &c, s)["data"]["v"].clone())
            .collect();
        assert_eq!(tail, a[150..], "{g}: failover continues the same values");
    }
}

#[test]
fn generators_stay_in_range() {
    let u = nums(&series(
        &ty(json!({"v": {"uniform": {"min": -2, "max": 3, "decimals": 3}}})),
        "d",
        0,
        5000,
    ));
    assert!(u.iter().all(|x| (-2.0..=3.0).contains(x)));
    let mean = u.iter().sum::<f64>() / u.len() as f64;
    assert!((mean - 0.5).abs() < 0.1, "{mean}");

    let n = nums(&series(
        &ty(json!({"v": {"normal": {"mean": 230, "stddev": 2, "decimals": 4}}})),
        "d",
        0,
        10_000,
    ));
    let mean = n.iter().sum::<f64>() / n.len() as f64;
    let sd = (n.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n.len() as f64).sqrt();
    assert!(
        (mean - 230.0).abs() < 0.1 && (sd - 2.0).abs() < 0.1,
        "{mean} {sd}"
    );
    let clamped = nums(&series(
        &ty(json!({"v": {"normal": {"mean": 0, "stddev": 5, "min": -1, "max": 1}}})),
        "d",
        0,
        2000,
    ));
    assert!(clamped.iter().all(|x| (-1.0..=1.0).contains(x)));

    let c = series(
        &ty(json!({"v": {"counter": {"start": 10, "step": 0.1}}})),
        "d",
        0,
        4,
    );
    assert_eq!(c, [json!(10), json!(10.1), json!(10.2), json!(10.3)]);
    assert_eq!(
        series(&ty(json!({"v": "sequence"})), "d", 0, 3),
        [json!(0), json!(1), json!(2)]
    );

    let ch = series(
        &ty(json!({"v": {"choice": {"values": ["a", {"x": 1}], "weights": [3, 1]}}})),
        "d",
        0,
        4000,
    );
    let a = ch.iter().filter(|v| **v == json!("a")).count();
    assert!(ch.iter().all(|v| *v == json!("a") || *v == json!({"x": 1})));
    assert!((a as f64 / 4000.0 - 0.75).abs() < 0.03, "{a}");

    let b = series(
        &ty(json!({"v": {"bool": {"probability": 0.2}}})),
        "d",
        0,
        5000,
    );
    let yes = b.iter().filter(|v| **v == json!(true)).count();
    assert!((yes as f64 / 5000.0 - 0.2).abs() < 0.02, "{yes}");

    for u in series(&ty(json!({"v": "uuid"})), "d", 0, 50) {
        let s = u.as_str().expect("string");
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4", "{s}");
        assert!("89ab".contains(&s[19..20]), "{s}");
    }
    let ts = series(&ty(json!({"v": "timestamp"})), "d", 0, 2);
    assert_eq!(ts, [json!(T0 + 3), json!(T0 + 1003)]);
}

#[test]
fn templates_fill_in_the_device() {
    let t = ty(json!({"v": {"template": "{fleet}/{device_id}#{index:04}@{seq} \"q\""}}));
    assert_eq!(series(&t, "d-1", 0, 2)[1], json!("f/d-1#0007@1 \"q\""));
}

#[test]
fn the_random_walk_steps_by_about_step_and_stays_bounded() {
    for (step, min, max) in [(0.5, 0.0, 100.0), (0.05, 15.0, 30.0), (2.0, -10.0, 10.0)] {
        let start = (min + max) / 2.0;
        let t = ty(
            json!({"v": {"random_walk": {"start": start, "step": step, "min": min, "max": max, "decimals": 6}}}),
        );
        for dev in ["a", "b", "c"] {
            let v = nums(&series(&t, dev, 0, 20_000));
            assert_eq!(v[0], start, "the walk begins at start");
            assert!(v.iter().all(|x| (min..=max).contains(x)), "bounded");
            let mean_step =
                v.windows(2).map(|w| (w[1] - w[0]).abs()).sum::<f64>() / (v.len() - 1) as f64;
            assert!(
                mean_step > step * 0.6 && mean_step < step * 1.5,
                "step {step}: mean |Δ| = {mean_step}"
            );
            // It roams: not stuck near its start.
            let spread = v.iter().cloned().fold(f64::MIN, f64::max)
                - v.iter().cloned().fold(f64::MAX, f64::min);
            assert!(
                spread > (10.0 * step).min((max - min) / 2.0),
                "spread {spread}"
            );
            eprintln!("step {step} in [{min}, {max}], device {dev}: mean |Δ| {mean_step:.4}, spread {spread:.3}");
        }
    }
}

#[test]
fn waves_follow_the_scheduled_time() {
    let at = |g: Value, scheduled_ms: u64| {
        let t = ty(json!({"v": g}));
        let c = ctx("d", 0);
        let mut out = Vec::new();
        t.device(&c).telemetry(
            &c,
            &Tick {
                seq: 0,
                scheduled_ms,
                now_ms: scheduled_ms,
            },
            &mut out,
        );
        let v: Value = serde_json::from_slice(&out).expect("json");
        v["data"]["v"].as_f64().expect("num")
    };
    let sine = json!({"sine": {"period": "60s", "amplitude": 2, "offset": 10, "decimals": 6}});
    assert_eq!(at(sine.clone(), 0), 10.0);
    assert_eq!(at(sine.clone(), 15_000), 12.0);
    assert_eq!(at(sine.clone(), 45_000), 8.0);
    assert_eq!(at(sine.clone(), 60_000 * 1000 + 15_000), 12.0);
    let shifted = json!({"sine": {"period": "60s", "amplitude": 2, "offset": 10, "phase": 15, "decimals": 6}});
    assert_eq!(at(shifted, 0), 12.0);
    let square = json!({"square": {"period": "10s", "amplitude": 1}});
    assert_eq!(at(square.clone(), 1_000), 1.0);
    assert_eq!(at(square, 6_000), -1.0);
    let saw = json!({"sawtooth": {"period": "10s", "amplitude": 1, "offset": 0}});
    assert_eq!(at(saw.clone(), 0), -1.0);
    assert_eq!(at(saw.clone(), 5_000), 0.0);
    assert_eq!(at(saw, 7_500), 0.5);
}

#[test]
fn gps_positions_follow_the_route_and_the_walk_stays_near() {
    let route = ty(json!({"v": {"gps": {"waypoints": [[0, 0], [0, 1]], "speed_kmh": 3.6}}}));
    let c = ctx("d", 0);
    let mut d = route.device(&c);
    let mut out = Vec::new();
    // 1 m/s, route 2 × 111.32 km there and back: at t = 55.66 km / 1 m/s, halfway along.
    let t = 55_660_000;
    d.telemetry(
        &c,
        &Tick {
            seq: 0,
            scheduled_ms: t,
            now_ms: t,
        },
        &mut out,
    );
    let v: Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(v["data"]["v"]["lat"], json!(0));
    let lon = v["data"]["v"]["lon"].as_f64().expect("lon");
    assert!((lon - 0.5).abs() < 1e-3, "{lon}");

    let walk = ty(
        json!({"v": {"gps": {"walk": {"lat": 48.8, "lon": 2.3, "step_m": 5, "radius_m": 500}}}}),
    );
    let pts = series(&walk, "d", 0, 5000);
    assert_eq!(pts[0], json!({"lat": 48.8, "lon": 2.3}));
    let m = |p: &Value| {
        let dn = (p["lat"].as_f64().unwrap_or(0.0) - 48.8) * 111_320.0;
        let de = (p["lon"].as_f64().unwrap_or(0.0) - 2.3) * 111_320.0 * 48.8f64.to_radians().cos();
        (dn, de)
    };
    assert!(pts.iter().all(|p| {
        let (n, e) = m(p);
        n.abs() <= 501.0 && e.abs() <= 501.0
    }));
    let mean_step = pts
        .windows(2)
        .map(|w| {
            let ((a, b), (c, d)) = (m(&w[0]), m(&w[1]));
            ((a - c).powi(2) + (b - d).powi(2)).sqrt()
        })
        .sum::<f64>()
        / 4999.0;
    assert!(mean_step > 2.5 && mean_step < 10.0, "{mean_step}");
}

#[test]
fn the_state_machine_obeys_its_transitions_and_dwell() {
    let t = ty(
        json!({"v": {"state_machine": {"restart_every": 5000, "states": [
        {"name": "idle", "dwell": {"min": 5, "max": 10}, "next": {"run": 1}},
        {"name": "run", "dwell": {"min": 20, "max": 40}, "next": {"idle": 3, "fault": 1}},
        {"name": "fault", "dwell": {"min": 1, "max": 2}, "next": {"idle": 1}}]}}}),
    );
    let v = series(&t, "d", 0, 5000);
    assert_eq!(v[0], "idle");
    let mut runs: Vec<(String, usize)> = Vec::new();
    for s in &v {
        let s = s.as_str().expect("state").to_string();
        match runs.last_mut() {
            Some((last, n)) if *last == s => *n += 1,
            _ => runs.push((s, 1)),
        }
    }
    let allowed = [
        ("idle", "run"),
        ("run", "idle"),
        ("run", "fault"),
        ("fault", "idle"),
    ];
    for w in runs.windows(2) {
        assert!(
            allowed.contains(&(w[0].0.as_str(), w[1].0.as_str())),
            "{:?}",
            w
        );
    }
    // Inner runs (not cut by the ends) last within their dwell.
    for (s, n) in &runs[1..runs.len() - 1] {
        let (lo, hi) = match s.as_str() {
            "idle" => (5, 10),
            "run" => (20, 40),
            _ => (1, 2),
        };
        assert!((lo..=hi).contains(n), "{s} lasted {n}");
    }
    assert!(runs.iter().any(|(s, _)| s == "fault"));
    // At the restart the machine is back in its first state.
    let c = ctx("d", 0);
    assert_eq!(send(&mut t.device(&c), &c, 5000)["data"]["v"], "idle");
}

#[test]
fn events_fire_with_their_probability() {
    let t = ty_with(json!({"name": "p", "fields": {"v": 1}, "events": [
        {"name": "rare", "probability": 0.01},
        {"name": "often", "probability": 0.3, "fields": {"n": "sequence"}},
        {"name": "never", "probability": 0}]}));
    let c = ctx("d", 0);
    let mut d = t.device(&c);
    let mut counts = std::collections::BTreeMap::new();
    let mut out = Vec::new();
    for seq in 0..10_000 {
        out.clear();
        d.telemetry(&c, &tick(seq), &mut out);
        out.clear();
        while d.extra(&c, &tick(seq), &mut out) {
            let v: Value = serde_json::from_slice(&out).expect("json");
            assert_eq!(v["seq"], seq);
            let name = v["event"].as_str().expect("event").to_string();
            if name == "often" {
                assert_eq!(v["data"]["n"], seq);
            }
            *counts.entry(name).or_insert(0u32) += 1;
            out.clear();
        }
        assert!(out.is_empty());
    }
    let rare = f64::from(counts.get("rare").copied().unwrap_or(0)) / 10_000.0;
    let often = f64::from(counts.get("often").copied().unwrap_or(0)) / 10_000.0;
    assert!((rare - 0.01).abs() < 0.004, "{rare}");
    assert!((often - 0.3).abs() < 0.02, "{often}");
    assert!(!counts.contains_key("never"));
}

#[test]
fn commands_set_fields_and_the_interval() {
    let t = ty_with(json!({"name": "p", "interval": "2s",
        "fields": {"temp": {"uniform": {"min": 0, "max": 1}}, "pos": {"lat": 1, "lon": 2}, "other": 5},
        "commands": {"set": ["temp", "pos.lat"], "interval": true}}));
    let c = ctx("d", 0);
    let mut d = t.device(&c);
    assert_eq!(d.interval_override(), Some(Duration::from_secs(2)));
    d.on_message(&c, br#"{"set": {"temp": 30, "pos.lat": {"deg": 9}}}"#)
        .expect("applied");
    let v = send(&mut d, &c, 1);
    assert_eq!(
        v["data"],
        json!({"other": 5, "pos": {"lat": {"deg": 9}, "lon": 2}, "temp": 30})
    );
    d.on_message(&c, br#"{"set": {"temp": null}, "interval": "500ms"}"#)
        .expect("applied");
    assert!(send(&mut d, &c, 2)["data"]["temp"].as_f64().expect("num") < 1.0);
    assert_eq!(d.interval_override(), Some(Duration::from_millis(500)));
    d.on_message(&c, br#"{"interval": null}"#).expect("applied");
    assert_eq!(d.interval_override(), Some(Duration::from_secs(2)));

    let e = d
        .on_message(&c, br#"{"set": {"other": 1}}"#)
        .expect_err("not settable");
    assert!(e.contains("cannot be set") && e.contains("temp"), "{e}");
    assert!(d.on_message(&c, br#"{"interval": "0s"}"#).is_err());
    assert!(d.on_message(&c, b"nope").is_err());
    // A rejected command changes nothing.
    assert!(d
        .on_message(&c, br#"{"set": {"temp": 1, "other": 2}}"#)
        .is_err());
    assert!(send(&mut d, &c, 3)["data"]["temp"].as_f64().expect("num") < 1.0);

    let plain = ty(json!({"v": 1}));
    let mut p = plain.device(&c);
    assert_eq!(p.interval_override(), None);
    let e = p
        .on_message(&c, br#"{"interval": "1s"}"#)
        .expect_err("no commands");
    assert!(
        e.contains("does not let commands change the interval"),
        "{e}"
    );
    assert!(e.contains("takes no commands"), "{e}");
}

#[test]
fn lifecycle_messages_are_sent_at_start_and_stop() {
    let t = ty_with(json!({"name": "p", "fields": {"v": 1},
        "on_start": {"fields": {"status": "online", "s": "sequence"}},
        "on_stop": {"fields": {"status": "offline", "s": "sequence"}}}));
    let c = ctx("d", 0);
    let mut d = t.device(&c);
    let mut out = Vec::new();
    d.on_start(&c, T0, &mut out);
    let v: Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(v["lifecycle"], "start");
    assert_eq!(v["ts"], T0);
    assert_eq!(v["data"], json!({"status": "online", "s": 0}));
    send(&mut d, &c, 41);
    out.clear();
    d.on_stop(&c, T0 + 5, &mut out);
    let v: Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(v["lifecycle"], "stop");
    assert_eq!(v["data"], json!({"status": "offline", "s": 41}));

    out.clear();
    ty(json!({"v": 1})).device(&c).on_start(&c, T0, &mut out);
    assert!(out.is_empty(), "no on_start, no message");
}

#[test]
fn raw_payloads_carry_seq_and_time() {
    let t = ty_with(json!({"name": "raw", "payload": {"bytes": 64}}));
    let c = ctx("d", 0);
    let mut out = Vec::new();
    t.device(&c).telemetry(&c, &tick(9), &mut out);
    assert_eq!(out.len(), 64);
    assert_eq!(out[..8], 9u64.to_be_bytes());
    assert_eq!(out[8..16], (T0 + 9000).to_be_bytes());
    let tiny = ty_with(json!({"name": "raw", "payload": {"bytes": 4}}));
    out.clear();
    tiny.device(&c).telemetry(&c, &tick(9), &mut out);
    assert_eq!(out, [0, 0, 0, 0]);
}

#[test]
fn builtins_produce_valid_json() {
    for (name, _) in pluribus_common::profile::builtin() {
        let p = pluribus_common::profile::builtin_profile(name).expect("valid");
        let options = serde_json::to_value(&p).expect("json");
        let t = ProfileFactory.build(&options).expect("builds");
        assert_eq!(t.name(), Some(*name));
        let c = DeviceCtx {
            device_type: name,
            ..ctx("dev-00001", 42)
        };
        let mut d = t.create(&c);
        let mut out = Vec::new();
        d.on_start(&c, T0, &mut out);
        let mut events = 0;
        for seq in 0..3000 {
            if !out.is_empty() {
                let v: Value = serde_json::from_slice(&out)
                    .unwrap_or_else(|e| panic!("{name}: {e}: {}", String::from_utf8_lossy(&out)));
                assert_eq!(v["device_type"], *name);
                assert!(v["data"].is_object(), "{name}: {v}");
            }
            out.clear();
            d.telemetry(&c, &tick(seq), &mut out);
            let v: Value = serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(v["seq"], seq);
            out.clear();
            while d.extra(&c, &tick(seq), &mut out) {
                let v: Value =
                    serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(v["event"].is_string());
                events += 1;
                out.clear();
            }
        }
        if !p.events.is_empty() && name != &"smart-meter" {
            assert!(events > 0, "{name}: no event in 3000 ticks");
        }
        d.on_stop(&c, T0, &mut out);
        if !out.is_empty() {
            serde_json::from_slice::<Value>(&out).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

#[test]
fn bad_options_are_refused_with_the_field() {
    let e = ProfileFactory
        .build(&json!({"name": "p", "fields": {"v": {"normal": {"mean": 1, "stddev": -1}}}}))
        .err()
        .expect("invalid");
    assert!(
        e.starts_with("device.options.fields.v.normal.stddev:"),
        "{e}"
    );
}

#[test]
fn the_registry_knows_profile_devices() {
    let r = crate::Registry::builtin();
    let f = r.device("profile").expect("registered");
    let t = f
        .build(&json!({"name": "thermo", "fields": {"t": 1}}))
        .expect("builds");
    assert_eq!(t.name(), Some("thermo"));
    assert!(pluribus_common::spec::BUILTIN_DEVICES.contains(&"profile"));
}
