//! `pluribus-agent --wake-grid`: devices due within one grid step go out together, at the
//! step, and none is skipped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashSet;
use std::time::Duration;

use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_coarse_wake_grid_sends_in_bursts_and_skips_nothing() {
    let mut c = Cluster::new("wgrid");
    c.agent("g1", &["--wake-grid", "50ms"]);
    c.wait_agents(1).await;
    let client = c.client().await;
    let mut sub = client.subscribe("wgrid-tel.>").await.expect("sub");
    c.ctl(&[
        "deploy-fleet",
        "wg",
        "--count",
        "100",
        "--interval",
        "100ms",
        "--sink",
        "nats",
        "--subject",
        "wgrid-tel.{fleet}.{device_id}",
    ])
    .ok();
    // Every device sending.
    collect_until(
        &mut sub,
        "all 100 devices sending",
        Duration::from_secs(30),
        Duration::ZERO,
        |s| s.seqs.len() == 100,
    )
    .await;
    let seen = collect(&mut sub, Duration::from_secs(3)).await;
    // 100 devices × 10 msg/s, phases spread over the interval: without a grid they go out
    // at ~60 distinct milliseconds per 100 ms; on a 50 ms grid at ~2 (more only when a
    // wake-up comes late and the batch runs at a later millisecond).
    let n = seen.payloads.len();
    assert!(n >= 2000, "only {n} messages in 3 s (3000 scheduled)");
    let instants: HashSet<u64> = seen
        .payloads
        .iter()
        .filter_map(|v| v["ts"].as_u64())
        .collect();
    assert!(
        instants.len() * 5 <= n,
        "{n} messages went out at {} distinct milliseconds: not in bursts",
        instants.len()
    );
    // A grid delays slots, it never drops one.
    let gaps = seen.gaps();
    assert!(gaps.is_empty(), "gaps: {:?}", &gaps[..gaps.len().min(3)]);
    c.ctl(&["delete-fleet", "wg"]).ok();
}
