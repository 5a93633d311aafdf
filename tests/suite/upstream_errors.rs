//! Upstream Ahnlich's exact answers, asked through the published Rust client's own stub
//! (`ahnlich_types =0.4.5`, tonic 0.12): the eleven erroneous requests of issue 11 get
//! upstream's gRPC code and its text word for word (clients match on them), InfoServer
//! reports this crate's version and a real memory limit, and ListClients lists the connections
//! open now.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::support::procs::eventually;
use crate::support::rust_client::{entry, text};
use ahnlich_raft::server::node::{Node, NodeConfig};
use ahnlich_types::algorithm::algorithms::Algorithm;
use ahnlich_types::algorithm::nonlinear::NonLinearAlgorithm;
use ahnlich_types::db::query as q;
use ahnlich_types::keyval::{StoreKey, StoreValue};
use ahnlich_types::predicates::{Equals, Predicate, PredicateCondition, predicate, predicate_condition};
use ahnlich_types::services::db_service::db_service_client::DbServiceClient;
use tonic012::Code;
use tonic012::transport::Channel;

async fn start(limits: Option<usize>) -> (tempfile::TempDir, Node) {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let mut config = NodeConfig::new(dir.path(), SocketAddr::from(([127, 0, 0, 1], 0)));
    config.limits.max_memory_bytes = limits;
    let node = Node::start(config).await.expect("start");
    node.wait_leader(Duration::from_secs(10)).await.expect("leader");
    (dir, node)
}

async fn connect(node: &Node) -> DbServiceClient<Channel> {
    DbServiceClient::connect(format!("http://{}", node.addr())).await.expect("connect")
}

fn tag_is(tag: &str) -> PredicateCondition {
    PredicateCondition {
        kind: Some(predicate_condition::Kind::Value(Predicate {
            kind: Some(predicate::Kind::Equals(Equals { key: "tag".into(), value: Some(text(tag)) })),
        })),
    }
}

fn create(store: &str, dimension: u32) -> q::CreateStore {
    q::CreateStore {
        store: store.into(),
        dimension,
        create_predicates: vec![],
        non_linear_indices: vec![],
        error_if_exists: true,
        schema: None,
    }
}

fn sim_n(store: &str, key: Vec<f32>, algorithm: Algorithm) -> q::GetSimN {
    q::GetSimN {
        store: store.into(),
        search_input: Some(StoreKey { key }),
        closest_n: 1,
        algorithm: algorithm as i32,
        condition: None,
        schema: None,
        ef_search: None,
    }
}

/// The code and text of an answer that must be an error.
fn refusal<T: std::fmt::Debug>(what: &str, answer: Result<tonic012::Response<T>, tonic012::Status>) -> (Code, String) {
    let status = answer.expect_err(what);
    (status.code(), status.message().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eleven_erroneous_requests_get_upstreams_code_and_text() {
    let (_dir, node) = start(None).await;
    let mut c = connect(&node).await;
    c.create_store(create("x", 2)).await.expect("create x");
    let set = q::Set {
        store: "x".into(),
        inputs: vec![entry(vec![1.0, 0.0], "a"), entry(vec![0.0, 1.0], "a")],
        schema: None,
    };
    c.set(set).await.expect("two entries tagged a");

    let store_missing = || (Code::NotFound, r#"Store StoreName { value: "nope" } not found"#.to_string());
    let wrong_dimension =
        || (Code::InvalidArgument, "Store dimension is [2], input dimension of [3] was specified".to_string());
    let kd_tree_missing =
        || (Code::NotFound, "Non linear algorithm KdTree not found in store, create store with support".to_string());

    assert_eq!(
        refusal("duplicate store", c.create_store(create("x", 2)).await),
        (Code::AlreadyExists, r#"Store StoreName { value: "x" } already exists"#.to_string())
    );
    let get = q::GetKey { store: "nope".into(), keys: vec![StoreKey { key: vec![1.0, 0.0] }], schema: None };
    assert_eq!(refusal("get on a missing store", c.get_key(get).await), store_missing());
    let set = q::Set { store: "nope".into(), inputs: vec![entry(vec![1.0, 0.0], "a")], schema: None };
    assert_eq!(refusal("set on a missing store", c.set(set).await), store_missing());
    let drop = q::DropStore { store: "nope".into(), error_if_not_exists: true, schema: None };
    assert_eq!(refusal("drop of a missing store", c.drop_store(drop).await), store_missing());
    let info = q::GetStore { store: "nope".into(), schema: None };
    assert_eq!(refusal("info on a missing store", c.get_store(info).await), store_missing());
    let set = q::Set { store: "x".into(), inputs: vec![entry(vec![1.0, 0.0, 0.0], "b")], schema: None };
    assert_eq!(refusal("set of the wrong dimension", c.set(set).await), wrong_dimension());
    let sim = sim_n("x", vec![1.0, 0.0, 0.0], Algorithm::CosineSimilarity);
    assert_eq!(refusal("search of the wrong dimension", c.get_sim_n(sim).await), wrong_dimension());
    let drop =
        q::DropPredIndex { store: "x".into(), predicates: vec!["k".into()], error_if_not_exists: true, schema: None };
    assert_eq!(
        refusal("drop of a missing predicate index", c.drop_pred_index(drop).await),
        (Code::NotFound, "Predicate k not found in store, attempt CREATEPREDINDEX with predicate".to_string())
    );
    let sim = sim_n("x", vec![1.0, 0.0], Algorithm::KdTree);
    assert_eq!(refusal("search on a missing k-d tree", c.get_sim_n(sim).await), kd_tree_missing());
    let drop = q::DropNonLinearAlgorithmIndex {
        store: "x".into(),
        non_linear_indices: vec![NonLinearAlgorithm::KdTree as i32],
        error_if_not_exists: true,
        schema: None,
    };
    assert_eq!(refusal("drop of a missing k-d tree", c.drop_non_linear_algorithm_index(drop).await), kd_tree_missing());
    let upsert = q::Upsert {
        store: "x".into(),
        condition: Some(tag_is("a")),
        new_key: None,
        new_value: Some(StoreValue { value: HashMap::from([("tag".to_string(), text("b"))]) }),
        merge_metadata: false,
        schema: None,
    };
    assert_eq!(
        refusal("upsert matching two", c.upsert(upsert).await),
        (Code::InvalidArgument, "Predicate condition found 2 entries, expected exactly 1 for UPSERT".to_string())
    );
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_server_reports_this_version_and_a_real_memory_limit() {
    for cap in [None, Some(64 << 20)] {
        let (_dir, node) = start(cap).await;
        let mut c = connect(&node).await;
        c.create_store(create("x", 2)).await.expect("create");
        let set = q::Set { store: "x".into(), inputs: vec![entry(vec![1.0, 0.0], "a")], schema: None };
        c.set(set).await.expect("set");
        let info = c.info_server(q::InfoServer {}).await.expect("info").into_inner().info.expect("info");
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(info.address, node.addr().to_string());
        assert!(info.limit < u64::MAX && info.limit > 0, "{info:?}");
        assert!(info.remaining < info.limit, "an entry is stored, so some memory is in use: {info:?}");
        if let Some(cap) = cap {
            assert_eq!(info.limit, cap as u64, "the cap is the limit");
            assert!(cap as u64 - info.remaining < 4096, "one small entry uses little: {info:?}");
        }
        node.shutdown().await.expect("shutdown");
    }
}

async fn listed(c: &mut DbServiceClient<Channel>) -> Vec<String> {
    let clients = c.list_clients(q::ListClients {}).await.expect("list clients").into_inner().clients;
    clients.into_iter().map(|c| c.address).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_clients_lists_the_connections_open_now() {
    let (_dir, node) = start(None).await;
    let me = connect(&node).await;
    assert_eq!(listed(&mut me.clone()).await.len(), 1, "a client alone sees itself only");
    let mut other = connect(&node).await;
    other.ping(q::Ping {}).await.expect("ping");
    let both = listed(&mut me.clone()).await;
    assert_eq!(both.len(), 2, "{both:?}");
    assert!(both.iter().all(|a| a.parse::<SocketAddr>().is_ok_and(|a| a.ip().is_loopback())), "{both:?}");
    drop(other);
    let left = eventually(Duration::from_secs(10), "the closed connection to leave the list", || {
        let mut me = me.clone();
        async move { Some(listed(&mut me).await).filter(|now| now.len() == 1) }
    })
    .await;
    assert!(both.contains(&left[0]), "the one left is one of the two: {left:?} of {both:?}");
    node.shutdown().await.expect("shutdown");
}
