//! The seed's example as a scenario (examples/scenarios/seed-mqtt.yaml): real nats-server
//! and mosquitto, a seed-mqtt-agent, the real `pluribusctl scenario run`; the devices'
//! reports must arrive, none twice, none lost.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use pluribus_testkit::{bin_path, run, Mosquitto, NatsServer, Proc};

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_scenario_passes() {
    let nats = NatsServer::start();
    let mqtt = Mosquitto::start();
    let broker = mqtt.url();
    let url = nats.url();
    let _agent = Proc::spawn(
        &bin_path("seed-mqtt-agent"),
        &[
            "--nats-url",
            &url,
            "--namespace",
            "seedscen",
            "--name",
            "seed",
            "--heartbeat",
            "500ms",
        ],
        &[("SEED_MQTT_BROKER", broker.as_str()), ("RUST_LOG", "warn")],
    );
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/seed-mqtt.yaml");
    let set = format!("BROKER={broker}");
    let out = run(
        &bin_path("pluribusctl"),
        &[
            "scenario",
            "run",
            file.to_str().expect("utf-8"),
            "--set",
            &set,
            "--set",
            "HOLD=3s",
            "--json",
        ],
        &[
            ("PLURIBUS_NATS_URL", url.as_str()),
            ("PLURIBUS_NAMESPACE", "seedscen"),
        ],
        Duration::from_secs(120),
    );
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    let doc = out.json();
    assert_eq!(doc["verdict"], "passed", "{doc}");
    // The three devices reported, through the broker.
    assert!(
        doc["probes"]["reports"]["devices"].as_u64() == Some(3),
        "{doc}"
    );
    let cleanup: Vec<&str> = doc["cleanup"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        cleanup.contains(&"fleet fleet_1 deleted") && cleanup.contains(&"fleet feeder deleted"),
        "{doc}"
    );
}
