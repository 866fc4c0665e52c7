//! A `pluribus-agent` process for tests: on a harness NATS server, in a namespace, with a
//! fast heartbeat (500 ms) so tests see it quickly.

use crate::{bin_path, NatsServer, Proc};

/// Starts `pluribus-agent --name NAME` in namespace `ns`, with `extra` flags.
pub fn spawn_agent(nats: &NatsServer, ns: &str, name: &str, extra: &[&str]) -> Proc {
    spawn_agent_at(&nats.url(), ns, name, extra)
}

/// Starts `pluribus-agent --name NAME` on NATS at `url` (a comma-separated list is fine).
pub fn spawn_agent_at(url: &str, ns: &str, name: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "--nats-url",
        url,
        "--namespace",
        ns,
        "--name",
        name,
        "--heartbeat",
        "500ms",
    ];
    args.extend_from_slice(extra);
    Proc::spawn(
        &bin_path("pluribus-agent"),
        &args,
        &[("RUST_LOG", "info,async_nats=warn")],
    )
}
