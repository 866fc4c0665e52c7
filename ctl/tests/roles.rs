//! Roles on the bus: a real nats-server started with deploy/nats/roles.conf (rewritten
//! for the test's namespace), an agent with the agent credential, pluribusctl as operator
//! and as viewer, and an anonymous client.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use pluribus_common::subjects::Namespace;
use pluribus_testkit::{bin_path, run, spawn_agent, NatsServer, Output};
use support::fleet;

const NS: &str = "roles";

/// deploy/nats/roles.conf, for namespace [`NS`].
fn roles_config() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/nats/roles.conf");
    std::fs::read_to_string(path)
        .expect("deploy/nats/roles.conf")
        .replace("pluribus.v1.", &format!("{NS}.pluribus.v1."))
        .replace("KV_pluribus_", &format!("KV_{NS}_pluribus_"))
        .replace("$KV.pluribus_", &format!("$KV.{NS}_pluribus_"))
        .replace(".pluribus_events", &format!(".{NS}_pluribus_events"))
}

fn ctl_as(nats: &NatsServer, user: Option<(&str, &str)>, args: &[&str]) -> Output {
    let url = nats.url();
    let mut env = vec![
        ("PLURIBUS_NATS_URL", url.as_str()),
        ("PLURIBUS_NAMESPACE", NS),
    ];
    if let Some((u, p)) = user {
        env.push(("PLURIBUS_NATS_USER", u));
        env.push(("PLURIBUS_NATS_PASSWORD", p));
    }
    run(
        &bin_path("pluribusctl"),
        args,
        &env,
        Duration::from_secs(90),
    )
}

const OPERATOR: Option<(&str, &str)> = Some(("operator", "operator-example-password"));
const VIEWER: Option<(&str, &str)> = Some(("viewer", "viewer-example-password"));

async fn client_as(nats: &NatsServer, user: &str, password: &str) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .user_and_password(user.into(), password.into())
        .custom_inbox_prefix(format!("_INBOX_{user}"))
        .connect(nats.url())
        .await
        .expect("connect")
}

/// Polls operator `status --json` until `check` holds.
async fn wait_status(
    nats: &NatsServer,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = ctl_as(nats, OPERATOR, &["status", "--json"]);
        if out.code == 0 && check(&out.json()) {
            return out.json();
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {}{}",
            out.stdout,
            out.stderr
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_limit_what_each_credential_may_do() {
    let nats = NatsServer::start_with_config(&roles_config());
    let ns = Namespace::new(NS).expect("ns");

    // Anonymous clients are refused, with a message that says what to do.
    let out = ctl_as(&nats, None, &["status"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("refused this client"), "{}", out.stderr);

    // An agent with the agent credential creates the buckets it needs and runs fleets.
    let agent = spawn_agent(
        &nats,
        NS,
        "a1",
        &[
            "--nats-user",
            "agent",
            "--nats-password",
            "agent-example-password",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !agent.stderr().contains("agent started") {
        assert!(Instant::now() < deadline, "{}", agent.stderr());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let operator = client_as(&nats, "operator", "operator-example-password").await;
    let mut telemetry = operator
        .subscribe("pluribus.telemetry.ok.>")
        .await
        .expect("subscribe");
    let mut outside = operator.subscribe("outside.>").await.expect("subscribe");
    operator.flush().await.expect("flush");
    ctl_as(
        &nats,
        OPERATOR,
        &["deploy-fleet", "ok", "--count", "2", "--sink", "nats"],
    )
    .ok();
    // The operator's deploy waited for the devices, so they run; telemetry arrives.
    tokio::time::timeout(Duration::from_secs(15), telemetry.next())
        .await
        .expect("telemetry from the agent")
        .expect("subscription open");

    // A viewer reads status and watch ...
    let out = ctl_as(&nats, VIEWER, &["status", "--json"]);
    assert_eq!(fleet(&out.ok().json(), "ok")["running"], 2);
    ctl_as(
        &nats,
        VIEWER,
        &["watch", "--count", "1", "--interval", "200ms"],
    )
    .ok();
    // ... and the event history the agent's stream kept ...
    let out = ctl_as(&nats, VIEWER, &["events", "--since", "10m"]);
    assert!(out.ok().stdout.contains("fleet_created"), "{}", out.stdout);
    // ... and detached scenario runs (the operator's first list makes the bucket) ...
    ctl_as(&nats, OPERATOR, &["scenario", "list", "--json"]).ok();
    ctl_as(&nats, VIEWER, &["scenario", "list", "--json"]).ok();
    // ... and may change nothing: each refusal is quick and names the role.
    for args in [
        &["deploy-fleet", "v", "--count", "1"][..],
        &["delete-fleet", "ok"][..],
        &["drain", "a1"][..],
        &["stop", "ok-00000"][..],
    ] {
        let started = Instant::now();
        let out = ctl_as(&nats, VIEWER, args);
        assert_ne!(out.code, 0, "{args:?}: {}", out.stdout);
        assert!(
            out.stderr.contains("this NATS user may not") && out.stderr.contains("operator"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{args:?} took {:?}",
            started.elapsed()
        );
    }
    let s = wait_status(&nats, "ok still running", |s| {
        fleet(s, "ok")["running"] == 2
    })
    .await;
    assert!(
        s["fleets"].as_array().expect("fleets").len() == 1,
        "the viewer deployed something: {s}"
    );

    // The agent credential cannot write fleets.
    let agent_client = client_as(&nats, "agent", "agent-example-password").await;
    let js = async_nats::jetstream::new(agent_client);
    let fleets = js
        .get_key_value(ns.fleets_bucket())
        .await
        .expect("the agent may read fleets");
    let put =
        tokio::time::timeout(Duration::from_secs(10), fleets.put("forged", "{}".into())).await;
    assert!(
        !matches!(put, Ok(Ok(_))),
        "the agent wrote a fleet: {put:?}"
    );

    // An agent cannot publish telemetry outside its prefix, even if a spec asks.
    ctl_as(
        &nats,
        OPERATOR,
        &[
            "deploy-fleet",
            "out",
            "--count",
            "2",
            "--sink",
            "nats",
            "--subject",
            "outside.{device_id}",
        ],
    )
    .ok();
    let stray = tokio::time::timeout(Duration::from_secs(3), outside.next()).await;
    assert!(stray.is_err(), "telemetry outside the prefix: {stray:?}");
    drop(agent);
}
