//! Clusters of nodes running in this process, on loopback, optionally over a faulty network.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahnlich_raft::proto::ahnlich::services::db_service::db_service_client::DbServiceClient;
use ahnlich_raft::raft::net_faults::NetFaults;
use ahnlich_raft::server::node::{Node, NodeConfig};
use tonic::transport::Channel;

/// Nodes `1..=n` and their data directories.
pub struct Cluster {
    /// The running nodes (index `i` is node `i + 1`); `None` once stopped.
    pub nodes: Vec<Option<Node>>,
    /// The shared fault injector.
    pub faults: Arc<NetFaults>,
    /// Data directories live as long as the cluster.
    pub dir: tempfile::TempDir,
}

/// A node's configuration in `dir`, on a free loopback port.
pub fn config(dir: &std::path::Path, id: u64, faults: &Arc<NetFaults>) -> NodeConfig {
    let mut c = NodeConfig::new(dir.join(format!("n{id}")), SocketAddr::from(([127, 0, 0, 1], 0)));
    c.node_id = Some(id);
    c.faults = Some(faults.clone());
    c
}

impl Cluster {
    /// Starts node 1 (bootstrapping), then nodes `2..=n` joining through it, and waits until
    /// all `n` are voters.
    pub async fn start(n: u64) -> Cluster {
        Self::start_with(n, |_| {}).await
    }

    /// As [`Cluster::start`], with every node's configuration adjusted by `tweak`.
    pub async fn start_with(n: u64, tweak: impl Fn(&mut NodeConfig)) -> Cluster {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let faults = Arc::new(NetFaults::default());
        let mut c1 = config(dir.path(), 1, &faults);
        tweak(&mut c1);
        let first = Node::start(c1).await.expect("start node 1");
        let seed = first.addr().to_string();
        let mut nodes = vec![Some(first)];
        for id in 2..=n {
            let mut c = config(dir.path(), id, &faults);
            tweak(&mut c);
            c.join = Some(seed.clone());
            nodes.push(Some(Node::start(c).await.expect("start node")));
        }
        let cluster = Cluster { nodes, faults, dir };
        // Settled, not just every node a voter: a joint membership already counts every node
        // as one, and the entry that ends it would land after whatever a test writes next.
        cluster
            .wait_for(Duration::from_secs(30), "every node a voter, in a settled membership every node applied", |c| {
                let s = c.node(1).status();
                s.members.iter().filter(|m| m.voter).count() == n as usize
                    && !s.joint
                    && c.nodes.iter().flatten().all(|node| node.status().last_applied >= s.last_log_index)
            })
            .await;
        cluster
    }

    /// Node `id`.
    pub fn node(&self, id: u64) -> &Node {
        self.nodes[id as usize - 1].as_ref().expect("node is running")
    }

    /// The leader as node 1 (or the first running node) sees it.
    pub fn leader(&self) -> Option<u64> {
        self.nodes.iter().flatten().find_map(|n| n.status().leader_id)
    }

    /// A node that is not the leader.
    pub fn follower(&self) -> u64 {
        let leader = self.leader();
        self.nodes.iter().flatten().map(|n| n.id()).find(|id| Some(*id) != leader).expect("a follower")
    }

    /// Polls `check` every 20 ms, panicking with `what` after `limit`.
    pub async fn wait_for(&self, limit: Duration, what: &str, check: impl Fn(&Cluster) -> bool) {
        let deadline = Instant::now() + limit;
        while !check(self) {
            assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A DB API client to node `id`.
    pub async fn db(&self, id: u64) -> DbServiceClient<Channel> {
        DbServiceClient::connect(format!("http://{}", self.node(id).addr())).await.expect("connect")
    }

    /// Waits (up to `limit`) until the nodes agree on a leader whose whole log every node has
    /// applied, then asserts that the replicas' states are equal.
    pub async fn converged(&self, limit: Duration) {
        self.wait_for(limit, "one leader, and every node applied its log", |cl| {
            let status: Vec<_> = cl.nodes.iter().flatten().map(|n| n.status()).collect();
            let Some(leader) = status[0].leader_id else { return false };
            let Some(lead) = status.iter().find(|s| s.id == leader) else { return false };
            lead.role == "leader"
                && status.iter().all(|s| s.leader_id == Some(leader) && s.last_applied == lead.last_log_index)
        })
        .await;
        let digests: Vec<u64> = self.nodes.iter().flatten().map(|n| n.state().engine().digest()).collect();
        assert!(digests.windows(2).all(|w| w[0] == w[1]), "replicas differ: {digests:?}");
    }

    /// Stops every node.
    pub async fn shutdown(mut self) {
        for n in self.nodes.iter_mut() {
            if let Some(n) = n.take() {
                n.shutdown().await.expect("shutdown");
            }
        }
    }
}
