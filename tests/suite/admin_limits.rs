//! Adding a learner at an address that does not answer is refused within the add-learner
//! timeout, without holding up other membership changes, and addresses callers supply are
//! not kept in the peer channel cache.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ahnlich_raft::proto::admin::cluster_admin_client::ClusterAdminClient;
use ahnlich_raft::proto::admin::{NodeIds, NodeSpec};
use ahnlich_raft::server::node::{Node, NodeConfig};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_learner_is_refused_in_time_and_holds_nothing_up() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let mut config = NodeConfig::new(dir.path(), SocketAddr::from(([127, 0, 0, 1], 0)));
    config.add_learner_timeout = Duration::from_millis(500);
    let node = Node::start(config).await.expect("start");
    node.wait_leader(Duration::from_secs(10)).await.expect("leader");
    let admin = ClusterAdminClient::connect(format!("http://{}", node.addr())).await.expect("connect");

    // Nothing listens: refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_addr = closed.local_addr().expect("addr").to_string();
    drop(closed);
    let refused = admin.clone().add_learner(NodeSpec { id: 9, addr: closed_addr }).await.expect_err("nothing there");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");

    // A port that accepts connections and never answers: refused after the timeout, while
    // another membership change goes through meanwhile.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_addr = silent.local_addr().expect("addr").to_string();
    let started = Instant::now();
    let mut hanging = admin.clone();
    let spec = NodeSpec { id: 10, addr: silent_addr };
    let hanging = tokio::spawn(async move { hanging.add_learner(spec).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    admin.clone().promote(NodeIds { ids: vec![node.id()] }).await.expect("a membership change meanwhile");
    assert!(!hanging.is_finished(), "the silent address was not waited on");
    let timed_out = hanging.await.expect("task").expect_err("silent address");
    assert_eq!(timed_out.code(), Code::DeadlineExceeded, "{timed_out:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());

    // Many addresses tried: none kept, and the membership is as it was.
    for i in 0..20u64 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        drop(l);
        let _ = admin.clone().add_learner(NodeSpec { id: 100 + i, addr }).await;
    }
    assert_eq!(node.cached_peer_channels(), 0, "a caller's addresses were cached");
    let members = node.status().members;
    assert_eq!(members.iter().map(|m| m.id).collect::<Vec<_>>(), vec![node.id()], "{members:?}");
    drop((admin, silent));
    node.shutdown().await.expect("shutdown");
}
