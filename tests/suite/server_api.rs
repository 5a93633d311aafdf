//! The Ahnlich DB API over gRPC on a real single-node server: every family of RPC, the status
//! codes and messages of errors, Pipeline, and data surviving a restart.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use ahnlich_raft::proto::ahnlich::algorithm::algorithms::Algorithm;
use ahnlich_raft::proto::ahnlich::algorithm::nonlinear::{HnswConfig, NonLinearIndex, non_linear_index};
use ahnlich_raft::proto::ahnlich::db::{pipeline as pl, query as q};
use ahnlich_raft::proto::ahnlich::keyval::{DbStoreEntry, StoreKey, StoreValue};
use ahnlich_raft::proto::ahnlich::metadata::{MetadataValue, metadata_value};
use ahnlich_raft::proto::ahnlich::predicates::{Equals, Predicate, PredicateCondition, predicate, predicate_condition};
use ahnlich_raft::proto::ahnlich::services::db_service::db_service_client::DbServiceClient;
use ahnlich_raft::proto::ahnlich::shared::cluster::{ClusterInfoQuery, NodeRole};
use ahnlich_raft::server::node::{Node, NodeConfig};
use tonic::Code;
use tonic::transport::Channel;

fn text(s: &str) -> MetadataValue {
    MetadataValue { value: Some(metadata_value::Value::RawString(s.into())) }
}

fn entry(key: &[f32], tag: &str) -> DbStoreEntry {
    DbStoreEntry {
        key: Some(StoreKey { key: key.to_vec() }),
        value: Some(StoreValue { value: BTreeMap::from([("tag".to_string(), text(tag))]) }),
    }
}

fn tag_is(tag: &str) -> PredicateCondition {
    PredicateCondition {
        kind: Some(predicate_condition::Kind::Value(Predicate {
            kind: Some(predicate::Kind::Equals(Equals { key: "tag".into(), value: Some(text(tag)) })),
        })),
    }
}

async fn start(dir: &std::path::Path) -> (Node, DbServiceClient<Channel>) {
    let node = Node::start(NodeConfig::new(dir, SocketAddr::from(([127, 0, 0, 1], 0)))).await.expect("start node");
    node.wait_leader(Duration::from_secs(10)).await.expect("leader");
    let client = DbServiceClient::connect(format!("http://{}", node.addr())).await.expect("connect");
    (node, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_db_api_works_end_to_end_and_survives_a_restart() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let (node, mut c) = start(dir.path()).await;
    c.ping(q::Ping {}).await.expect("ping");

    let hnsw = NonLinearIndex { index: Some(non_linear_index::Index::Hnsw(HnswConfig::default())) };
    let create = q::CreateStore {
        store: "docs".into(),
        dimension: 2,
        create_predicates: vec!["tag".into()],
        non_linear_indices: vec![hnsw],
        error_if_exists: true,
        schema: None,
    };
    c.create_store(create.clone()).await.expect("create");
    let dup = c.create_store(create).await.expect_err("duplicate");
    assert_eq!(dup.code(), Code::AlreadyExists, "{dup:?}");

    let set =
        q::Set { store: "docs".into(), inputs: vec![entry(&[1.0, 0.0], "a"), entry(&[0.0, 1.0], "b")], schema: None };
    let upsert = c.set(set).await.expect("set").into_inner().upsert.expect("counts");
    assert_eq!((upsert.inserted, upsert.updated), (2, 0));

    let wrong = q::Set { store: "docs".into(), inputs: vec![entry(&[1.0], "x")], schema: None };
    let err = c.set(wrong).await.expect_err("dimension");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "Store dimension is [2], input dimension of [1] was specified");
    let missing = c.get_store(q::GetStore { store: "nope".into(), schema: None }).await.expect_err("missing");
    assert_eq!(missing.code(), Code::NotFound);

    let sim = q::GetSimN {
        store: "docs".into(),
        search_input: Some(StoreKey { key: vec![0.9, 0.1] }),
        closest_n: 1,
        algorithm: Algorithm::CosineSimilarity as i32,
        condition: None,
        schema: None,
        ef_search: None,
    };
    let found = c.get_sim_n(sim.clone()).await.expect("sim").into_inner().entries;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].key.as_ref().map(|k| k.key.clone()), Some(vec![1.0, 0.0]));
    let hnsw_sim = q::GetSimN { algorithm: Algorithm::Hnsw as i32, ef_search: Some(16), ..sim };
    assert_eq!(c.get_sim_n(hnsw_sim).await.expect("hnsw").into_inner().entries.len(), 1);

    let by_tag = c.get_pred(q::GetPred { store: "docs".into(), condition: Some(tag_is("b")), schema: None }).await;
    assert_eq!(by_tag.expect("pred").into_inner().entries.len(), 1);
    let no_condition = c.get_pred(q::GetPred { store: "docs".into(), condition: None, schema: None }).await;
    assert_eq!(no_condition.expect_err("no condition").code(), Code::InvalidArgument);

    let pipeline = pl::DbRequestPipeline {
        queries: vec![
            pl::DbQuery { query: Some(pl::db_query::Query::Ping(q::Ping {})) },
            pl::DbQuery {
                query: Some(pl::db_query::Query::GetStore(q::GetStore { store: "nope".into(), schema: None })),
            },
            pl::DbQuery {
                query: Some(pl::db_query::Query::DelKey(q::DelKey {
                    store: "docs".into(),
                    keys: vec![StoreKey { key: vec![0.0, 1.0] }],
                    schema: None,
                })),
            },
        ],
    };
    let responses = c.pipeline(pipeline).await.expect("pipeline").into_inner().responses;
    use pl::db_server_response::Response as R;
    assert!(matches!(responses[0].response, Some(R::Pong(_))));
    assert!(
        matches!(&responses[1].response, Some(R::Error(e)) if e.code == Code::NotFound as i32),
        "{:?}",
        responses[1]
    );
    assert!(
        matches!(&responses[2].response, Some(R::Del(d)) if d.deleted_count == 1),
        "a failure does not stop the rest"
    );

    let info = c.info_server(q::InfoServer {}).await.expect("info").into_inner().info.expect("info");
    assert_eq!(info.address, node.addr().to_string());
    let cluster = c.cluster_info(ClusterInfoQuery {}).await.expect("cluster").into_inner();
    assert_eq!(cluster.nodes.len(), 1);
    assert_eq!(cluster.nodes[0].role, NodeRole::Leader as i32);
    let stores = c.list_stores(q::ListStores { schema: None }).await.expect("list").into_inner().stores;
    assert_eq!((stores.len(), stores[0].len), (1, 1));
    assert!(!c.list_clients(q::ListClients {}).await.expect("clients").into_inner().clients.is_empty());

    drop(c);
    node.shutdown().await.expect("shutdown");
    let (node, mut c) = start(dir.path()).await;
    let keys = q::GetKey {
        store: "docs".into(),
        keys: vec![StoreKey { key: vec![1.0, 0.0] }, StoreKey { key: vec![0.0, 1.0] }],
        schema: None,
    };
    let after = c.get_key(keys).await.expect("get after restart").into_inner().entries;
    assert_eq!(after.len(), 1, "the set entry survived and the deleted one stayed deleted");
    drop(c);
    node.shutdown().await.expect("shutdown");
}
