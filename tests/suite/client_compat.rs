//! Wire compatibility with the published Rust client, `ahnlich_client_rs =0.4.5` (tonic 0.12,
//! prost 0.13, its own generated types): a real server of ours answers it correctly.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::rust_client::{entry, text};
use ahnlich_client_rs::db::DbClient;
use ahnlich_raft::server::node::{Node, NodeConfig};
use ahnlich_types::algorithm::algorithms::Algorithm;
use ahnlich_types::algorithm::nonlinear::{HnswConfig, NonLinearIndex, non_linear_index};
use ahnlich_types::db::query as q;
use ahnlich_types::keyval::StoreKey;
use ahnlich_types::predicates::{Equals, Predicate, PredicateCondition, predicate, predicate_condition};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_published_rust_client_works_against_our_server() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let node = Node::start(NodeConfig::new(dir.path(), SocketAddr::from(([127, 0, 0, 1], 0)))).await.expect("start");
    node.wait_leader(Duration::from_secs(10)).await.expect("leader");
    let client = DbClient::new(node.addr().to_string()).await.expect("connect");

    client.ping(None).await.expect("ping");
    let hnsw = NonLinearIndex { index: Some(non_linear_index::Index::Hnsw(HnswConfig::default())) };
    client
        .create_store(
            q::CreateStore {
                store: "compat".into(),
                dimension: 3,
                create_predicates: vec!["tag".into()],
                non_linear_indices: vec![hnsw],
                error_if_exists: true,
                schema: None,
            },
            None,
        )
        .await
        .expect("create store");
    let set = q::Set {
        store: "compat".into(),
        inputs: vec![entry(vec![1.0, 0.0, 0.0], "x"), entry(vec![0.0, 1.0, 0.0], "y"), entry(vec![0.0, 0.0, 1.0], "x")],
        schema: None,
    };
    let upsert = client.set(set, None).await.expect("set").upsert.expect("counts");
    assert_eq!((upsert.inserted, upsert.updated), (3, 0));

    let sim = q::GetSimN {
        store: "compat".into(),
        search_input: Some(StoreKey { key: vec![0.9, 0.1, 0.0] }),
        closest_n: 2,
        algorithm: Algorithm::EuclideanDistance as i32,
        condition: None,
        schema: None,
        ef_search: None,
    };
    let found = client.get_sim_n(sim, None).await.expect("get sim n").entries;
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].key.as_ref().map(|k| k.key.clone()), Some(vec![1.0, 0.0, 0.0]));
    assert!(
        found[0].similarity.as_ref().is_some_and(|s| s.value < found[1].similarity.as_ref().map_or(0.0, |t| t.value))
    );

    let condition = PredicateCondition {
        kind: Some(predicate_condition::Kind::Value(Predicate {
            kind: Some(predicate::Kind::Equals(Equals { key: "tag".into(), value: Some(text("x")) })),
        })),
    };
    let by_tag = client
        .get_pred(q::GetPred { store: "compat".into(), condition: Some(condition), schema: None }, None)
        .await
        .expect("get pred");
    assert_eq!(by_tag.entries.len(), 2);

    let err = client
        .set(q::Set { store: "compat".into(), inputs: vec![entry(vec![1.0], "z")], schema: None }, None)
        .await
        .expect_err("wrong dimension");
    match err {
        ahnlich_client_rs::error::AhnlichError::ServerError(status) => {
            // tonic 0.12's code, compared by its gRPC number (3 = INVALID_ARGUMENT).
            assert_eq!(status.code() as i32, 3, "{status:?}");
            assert_eq!(status.message(), "Store dimension is [3], input dimension of [1] was specified");
        }
        other => panic!("expected a server error, got {other}"),
    }

    let stores = client.list_stores(None).await.expect("list stores").stores;
    assert_eq!(
        stores.iter().map(|s| (s.name.as_str(), s.len, s.dimension)).collect::<Vec<_>>(),
        vec![("compat", 3, 3)]
    );
    let info = client.info_server(None).await.expect("info");
    assert_eq!(info.address, node.addr().to_string());

    let deleted = client
        .del_key(
            q::DelKey { store: "compat".into(), keys: vec![StoreKey { key: vec![0.0, 1.0, 0.0] }], schema: None },
            None,
        )
        .await
        .expect("del key");
    assert_eq!(deleted.deleted_count, 1);
    drop(client);
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_published_python_client_works_against_our_server() {
    if !crate::support::python::client_installed_or_skip() {
        return;
    }
    let dir = tempfile::TempDir::new().expect("tempdir");
    let node = Node::start(NodeConfig::new(dir.path(), SocketAddr::from(([127, 0, 0, 1], 0)))).await.expect("start");
    node.wait_leader(Duration::from_secs(10)).await.expect("leader");
    crate::support::python::run_checks(&node.addr().to_string(), "the Python client failed").await;
    node.shutdown().await.expect("shutdown");
}
