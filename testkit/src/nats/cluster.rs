//! Several real nats-servers routed into one JetStream cluster, each on its own free ports.

use super::{server_binary, ClusterNode, NatsServer};
use crate::ports::free_port;

/// A cluster of nats-servers (JetStream on every node), all killed on drop.
pub struct NatsCluster {
    /// The nodes, `n1`, `n2`, ... in order.
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `n` servers routed to each other and waits until every one reports JetStream
    /// ready (a meta leader elected). Panics with the log tail of a node that does not.
    pub fn start(n: usize) -> NatsCluster {
        let bin = server_binary();
        let routes: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut nodes: Vec<NatsServer> = (0..n)
            .map(|i| {
                let mut s = NatsServer::unstarted(Some(ClusterNode {
                    name: format!("n{}", i + 1),
                    port: routes[i],
                    routes: routes.iter().copied().filter(|p| *p != routes[i]).collect(),
                }));
                s.port = free_port();
                s.monitor_port = free_port();
                s
            })
            .collect();
        // All at once: a node is healthy only once the cluster has a quorum.
        let children: Vec<_> = nodes.iter().map(|s| s.spawn_child(bin)).collect();
        for (node, child) in nodes.iter_mut().zip(children) {
            if node.await_ready(child).is_err() {
                node.fail("did not join the cluster");
            }
        }
        NatsCluster { nodes }
    }

    /// Every node's client URL, comma-separated (what `--nats-url` takes).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}
