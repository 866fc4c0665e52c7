//! Running counts, blockers and agent rows, from hand-made KV contents.

use super::fixtures::hb;
use super::*;
use pluribus_common::record::RecordKind;
use pluribus_common::spec::FleetSpec;
use std::time::Duration;

fn lease(agent: &str, devices: u64, generation: u64) -> LeaseRecord {
    LeaseRecord {
        v: 1,
        agent_id: agent.into(),
        agent_name: format!("n-{agent}"),
        devices,
        generation,
        since_ms: 1,
        epoch: 0,
    }
}

fn record(count: u64, shard_size: u32) -> FleetRecord {
    let mut s = FleetSpec::counted("f", count);
    s.shard_size = shard_size;
    FleetRecord::new(RecordKind::Fleet, s, 1_000, Duration::from_secs(2))
}

#[test]
fn running_counts_current_generation_shards_only() {
    let mut r = record(1050, 100);
    r.generation = 2;
    let mut leases = LeaseMap::new();
    leases.insert(0, lease("a", 100, 2));
    leases.insert(1, lease("b", 100, 2));
    leases.insert(2, lease("b", 100, 1)); // old generation
    leases.insert(10, lease("a", 50, 2)); // the short last shard
    leases.insert(11, lease("a", 100, 2)); // past the end (a shrink in progress)
    let run = running(&r, &leases);
    assert_eq!(run.devices, 250);
    assert_eq!(run.shards_held, 3);
    assert_eq!(
        run.agents,
        vec![
            Share {
                agent_id: "a".into(),
                agent_name: "n-a".into(),
                devices: 150,
                alive: true,
            },
            Share {
                agent_id: "b".into(),
                agent_name: "n-b".into(),
                devices: 100,
                alive: true,
            },
        ]
    );
}

#[test]
fn stopped_devices_do_not_count_as_running() {
    let mut r = record(10, 5);
    r.stopped.insert(7);
    let mut leases = LeaseMap::new();
    leases.insert(1, lease("a", 4, 1));
    assert_eq!(running(&r, &leases).devices, 4);
    let st = fleet_status(&r, &leases, &[]);
    assert_eq!((st.desired, st.assigned, st.pending), (9, 4, 5));
    // Its holder is not alive: stale, and nothing active.
    assert_eq!((st.stale, st.active, st.running), (4, 0, 4));
    assert!(!st.agents[0].alive);
    assert_eq!(st.reason.as_deref(), Some("no live agent"));
}

#[test]
fn devices_of_an_agent_that_stopped_heartbeating_are_stale_with_a_reason() {
    let r = record(10, 5);
    let mut leases = LeaseMap::new();
    leases.insert(0, lease("a", 5, 1));
    leases.insert(1, lease("b", 5, 1));
    let mut a = hb("a", 5, None);
    a.fleets.insert(
        "f".into(),
        pluribus_common::messages::FleetCounters {
            devices: 5,
            ..Default::default()
        },
    );
    let mut dead = hb("b", 5, None);
    dead.ts_ms = 50_000;
    let now = 100_000;
    let st = State {
        now_ms: now,
        fleets: [("f".to_string(), r.clone())].into(),
        leases: [("f".to_string(), leases)].into(),
        lease_expiry: [("f".to_string(), [(0, now + 9_000), (1, now + 5_500)].into())].into(),
        agents: vec![a.clone(), dead],
        epochs: None,
    };
    let f = st.fleet_status(&r);
    assert_eq!((f.assigned, f.active, f.stale, f.pending), (10, 5, 5, 0));
    assert_eq!(
        f.reason.as_deref(),
        Some("5 on n-b, which stopped heartbeating; they move when its leases expire in ~6 s")
    );
    let rows = AgentRow::all(&st);
    assert_eq!((rows[0].assigned, rows[0].active), (5, 5));
    assert_eq!((rows[1].assigned, rows[1].alive), (5, false));

    // An agent killed 3 s ago: its last heartbeat still looks fresh, but its epoch record
    // is gone (its liveness keys expired). It is not alive, and its devices, which the
    // others run by now, are not counted active twice.
    let mut killed = hb("b", 5, None);
    killed.ts_ms = now - 3_000;
    killed.fleets = a.fleets.clone();
    let mut st = st;
    st.agents = vec![a, killed];
    st.epochs = Some(["a".to_string(), "b".to_string()].into());
    assert_eq!(
        st.fleet_status(&r).active,
        10,
        "both alive while b's record stands"
    );
    st.epochs = Some(["a".to_string()].into());
    let f = st.fleet_status(&r);
    assert_eq!((f.active, f.stale), (5, 5));
    let rows = AgentRow::all(&st);
    assert_eq!((rows[0].alive, rows[1].alive), (true, false));
    assert_eq!(st.live_agents().len(), 1);
}

#[test]
fn blockers_name_the_missing_requirement() {
    let mut spec = FleetSpec::counted("f", 100);
    let a = hb("a", 0, None);
    let live = vec![&a];
    assert_eq!(blocker(&spec, &live, 0), None);
    assert_eq!(blocker(&spec, &[], 5), Some(Blocker::NoAgent));
    assert_eq!(blocker(&spec, &live, 5), None);

    spec.device.kind = "thermostat".into();
    assert_eq!(
        blocker(&spec, &live, 5),
        Some(Blocker::NoFit(
            "no live agent runs device type thermostat (agents know: generic)".into()
        ))
    );
    spec.device.kind = "generic".into();
    spec.sink.kind = "kafka".into();
    assert_eq!(
        fit_problem(&spec, &live).as_deref(),
        Some("no live agent has sink type kafka (agents know: console, nats)")
    );
    spec.sink.kind = "console".into();
    spec.placement.insert("zone".into(), "a".into());
    assert_eq!(
        fit_problem(&spec, &live).as_deref(),
        Some("no live agent has labels zone=a")
    );
}

#[test]
fn mqtt_fleets_count_against_the_connection_capacity() {
    let mut a = hb("a", 0, Some(100));
    a.connection_capacity = Some(30);
    a.connection_devices = 10;
    assert_eq!(a.spare_for(false), Some(100));
    assert_eq!(a.spare_for(true), Some(20));
    let mut b = hb("b", 0, None);
    b.connection_capacity = Some(50);
    assert_eq!(b.spare_for(true), Some(50));
    assert_eq!(b.spare_for(false), None);
}

#[test]
fn blockers_see_capacity_and_draining() {
    let spec = FleetSpec::counted("f", 100);
    let a = hb("a", 90, Some(100));
    let mut b = hb("b", 0, Some(50));
    assert_eq!(
        blocker(&spec, &[&a, &b], 100),
        Some(Blocker::Capacity { spare: 60 })
    );
    assert_eq!(blocker(&spec, &[&a, &b], 60), None);
    b.draining = true;
    assert_eq!(
        blocker(&spec, &[&a, &b], 60),
        Some(Blocker::Capacity { spare: 10 })
    );
    let mut c = hb("c", 0, None);
    assert_eq!(blocker(&spec, &[&a, &c], 1_000_000), None);
    c.draining = true;
    let mut a2 = a.clone();
    a2.draining = true;
    assert_eq!(blocker(&spec, &[&a2, &c], 1), Some(Blocker::AllDraining));
}

#[test]
fn agent_rows_show_liveness_and_age() {
    let h = hb("a", 3, None);
    let row = AgentRow::new(&h, 101_530);
    assert!(row.alive);
    assert_eq!(row.heartbeat_age_s, 1.5);
    assert!(!AgentRow::new(&h, 200_000).alive);
}
