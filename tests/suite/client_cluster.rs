//! The published Rust client (`ahnlich_client_rs =0.4.5`) calls every one of the 23 DB API
//! RPCs on a follower of a 3-node cluster, and every answer is checked. Writes are forwarded
//! to the leader; reads are linearizable on the follower.

use crate::support::cluster::Cluster;
use crate::support::rust_client::call_all_23_rpcs;
use ahnlich_client_rs::db::DbClient;
use ahnlich_types::services::db_service::db_service_client::DbServiceClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_published_rust_client_calls_all_23_rpcs_through_a_follower() {
    let cluster = Cluster::start(3).await;
    let follower = cluster.node(cluster.follower());
    let addr = follower.addr().to_string();
    let c = DbClient::new(addr.clone()).await.expect("connect");
    let mut raw = DbServiceClient::connect(format!("http://{addr}")).await.expect("raw client");
    call_all_23_rpcs(&c, &mut raw, &addr, None).await;

    // Every node ends with the same state.
    let applied = cluster.node(cluster.leader().expect("leader")).status().last_applied;
    cluster
        .wait_for(std::time::Duration::from_secs(10), "every node applied everything", |cl| {
            (1..=3).all(|id| cl.node(id).status().last_applied >= applied)
        })
        .await;
    let digests: Vec<u64> = (1..=3).map(|id| cluster.node(id).state().engine().digest()).collect();
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "replicas differ: {digests:?}");
    drop(c);
    drop(raw);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_published_python_client_works_through_a_follower() {
    if !crate::support::python::client_installed_or_skip() {
        return;
    }
    let cluster = Cluster::start(3).await;
    let addr = cluster.node(cluster.follower()).addr().to_string();
    crate::support::python::run_checks(&addr, "the Python client failed through a follower").await;
    cluster.shutdown().await;
}
