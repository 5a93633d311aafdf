//! Every one of the 23 DB API RPCs called through the published Rust client
//! (`ahnlich_client_rs =0.4.5`), with every answer checked.

use std::collections::HashMap;

use ahnlich_client_rs::db::DbClient;
use ahnlich_types::algorithm::algorithms::Algorithm;
use ahnlich_types::algorithm::nonlinear::{HnswConfig, NonLinearAlgorithm, NonLinearIndex, non_linear_index};
use ahnlich_types::db::pipeline::db_server_response::Response as PipelineResponse;
use ahnlich_types::db::query as q;
use ahnlich_types::keyval::{DbStoreEntry, StoreKey, StoreValue};
use ahnlich_types::metadata::{MetadataValue, metadata_value};
use ahnlich_types::predicates::{Equals, Predicate, PredicateCondition, predicate, predicate_condition};
use ahnlich_types::services::db_service::db_service_client::DbServiceClient;
use ahnlich_types::shared::cluster::ClusterInfoQuery;

/// A metadata text value.
pub fn text(s: &str) -> MetadataValue {
    MetadataValue { value: Some(metadata_value::Value::RawString(s.into())) }
}

/// An entry whose metadata is `tag` = `tag`.
pub fn entry(key: Vec<f32>, tag: &str) -> DbStoreEntry {
    DbStoreEntry {
        key: Some(StoreKey { key }),
        value: Some(StoreValue { value: HashMap::from([("tag".to_string(), text(tag))]) }),
    }
}

fn tag_is(tag: &str) -> PredicateCondition {
    PredicateCondition {
        kind: Some(predicate_condition::Kind::Value(Predicate {
            kind: Some(predicate::Kind::Equals(Equals { key: "tag".into(), value: Some(text(tag)) })),
        })),
    }
}

fn hnsw() -> NonLinearIndex {
    NonLinearIndex { index: Some(non_linear_index::Index::Hnsw(HnswConfig::default())) }
}

/// `message` as a request carrying `auth` (`user:key`) as a bearer credential, if given.
pub fn with_auth<T>(message: T, auth: Option<&str>) -> tonic012::Request<T> {
    let mut r = tonic012::Request::new(message);
    if let Some(auth) = auth {
        r.metadata_mut().insert("authorization", format!("Bearer {auth}").parse().expect("ascii credentials"));
    }
    r
}

/// Calls all 23 RPCs with `c` on the node at `addr` of a 3-node cluster (ClusterInfo, which
/// the client has no method for, through `raw`: `ahnlich_types`' generated stub on the same
/// kind of channel, with `auth` as its credentials), checking every answer. Leaves no store
/// behind.
pub async fn call_all_23_rpcs(
    c: &DbClient,
    raw: &mut DbServiceClient<tonic012::transport::Channel>,
    addr: &str,
    auth: Option<&str>,
) {
    // 1 Ping, 2 CreateStore, 3 Set
    c.ping(None).await.expect("ping");
    let create = q::CreateStore {
        store: "s".into(),
        dimension: 3,
        create_predicates: vec![],
        non_linear_indices: vec![],
        error_if_exists: true,
        schema: None,
    };
    c.create_store(create, None).await.expect("create store");
    let inputs =
        vec![entry(vec![1.0, 0.0, 0.0], "x"), entry(vec![0.0, 1.0, 0.0], "y"), entry(vec![0.0, 0.0, 1.0], "x")];
    let set = c.set(q::Set { store: "s".into(), inputs, schema: None }, None).await.expect("set");
    let counts = set.upsert.expect("counts");
    assert_eq!((counts.inserted, counts.updated), (3, 0));

    // 4 CreatePredIndex, 5 CreateNonLinearAlgorithmIndex
    let created = c
        .create_pred_index(q::CreatePredIndex { store: "s".into(), predicates: vec!["tag".into()], schema: None }, None)
        .await
        .expect("create pred index");
    assert_eq!(created.created_indexes, 1);
    let created = c
        .create_non_linear_algorithm_index(
            q::CreateNonLinearAlgorithmIndex { store: "s".into(), non_linear_indices: vec![hnsw()], schema: None },
            None,
        )
        .await
        .expect("create hnsw");
    assert_eq!(created.created_indexes, 1);

    // 6 GetKey, 7 GetPred, 8 GetSimN (linear and HNSW)
    let got = c
        .get_key(q::GetKey { store: "s".into(), keys: vec![StoreKey { key: vec![0.0, 1.0, 0.0] }], schema: None }, None)
        .await
        .expect("get key");
    assert_eq!(got.entries.len(), 1);
    assert_eq!(got.entries[0].value.as_ref().and_then(|v| v.value.get("tag")), Some(&text("y")));
    let got = c
        .get_pred(q::GetPred { store: "s".into(), condition: Some(tag_is("x")), schema: None }, None)
        .await
        .expect("get pred");
    assert_eq!(got.entries.len(), 2);
    for (algorithm, ef) in [(Algorithm::CosineSimilarity, None), (Algorithm::Hnsw, Some(16))] {
        let sim = q::GetSimN {
            store: "s".into(),
            search_input: Some(StoreKey { key: vec![0.9, 0.1, 0.0] }),
            closest_n: 1,
            algorithm: algorithm as i32,
            condition: None,
            schema: None,
            ef_search: ef,
        };
        let found = c.get_sim_n(sim, None).await.expect("get sim n").entries;
        assert_eq!(found.len(), 1, "{algorithm:?}");
        assert_eq!(found[0].key.as_ref().map(|k| k.key.clone()), Some(vec![1.0, 0.0, 0.0]), "{algorithm:?}");
    }

    // 9 Upsert: retag every "y" entry as "z".
    let upserted = c
        .upsert(
            q::Upsert {
                store: "s".into(),
                condition: Some(tag_is("y")),
                new_key: None,
                new_value: Some(StoreValue { value: HashMap::from([("tag".to_string(), text("z"))]) }),
                merge_metadata: true,
                schema: None,
            },
            None,
        )
        .await
        .expect("upsert");
    assert_eq!(upserted.upsert.map(|u| u.updated), Some(1));

    // 10 GetStore, 11 ListStores, 12 ListStoreEntries
    let info = c.get_store("s".into(), None).await.expect("get store");
    assert_eq!((info.len, info.dimension, info.predicate_indices.clone()), (3, 3, vec!["tag".to_string()]));
    let stores = c.list_stores(None).await.expect("list stores").stores;
    assert_eq!(stores.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), vec!["s"]);
    let page = c
        .list_store_entries(
            q::ListStoreEntries { store: "s".into(), cursor: None, limit: Some(2), condition: None, schema: None },
            None,
        )
        .await
        .expect("list entries");
    assert_eq!(page.entries.len(), 2);
    assert!(page.next_cursor.is_some());

    // 13 InfoServer, 14 ListClients, 15 ClusterInfo (the client has no method: its generated stub)
    let server = c.info_server(None).await.expect("info server");
    assert_eq!(server.address, addr);
    let clients = c.list_clients(None).await.expect("list clients").clients;
    assert!(!clients.is_empty());
    let nodes = raw.cluster_info(with_auth(ClusterInfoQuery {}, auth)).await.expect("cluster info").into_inner().nodes;
    assert_eq!(nodes.len(), 3);
    assert_eq!(nodes.iter().filter(|n| n.role == 1).count(), 1, "one leader: {nodes:?}");
    assert!(nodes.iter().all(|n| n.term.is_some_and(|t| t >= 1)), "{nodes:?}");

    // 16 Pipeline, with a write in it (so forwarded whole) and reads after it.
    let mut p = c.pipeline(None);
    p.set(q::Set { store: "s".into(), inputs: vec![entry(vec![5.0, 5.0, 5.0], "p")], schema: None });
    p.get_key(q::GetKey { store: "s".into(), keys: vec![StoreKey { key: vec![5.0, 5.0, 5.0] }], schema: None });
    p.get_store(q::GetStore { store: "missing".into(), schema: None });
    p.ping();
    let responses: Vec<_> = p.exec().await.expect("pipeline").responses.into_iter().map(|r| r.response).collect();
    assert!(matches!(&responses[0], Some(PipelineResponse::Set(_))), "{responses:?}");
    assert!(matches!(&responses[1], Some(PipelineResponse::Get(g)) if g.entries.len() == 1), "{responses:?}");
    assert!(matches!(&responses[2], Some(PipelineResponse::Error(e)) if e.code == 5), "not found: {responses:?}");
    assert!(matches!(&responses[3], Some(PipelineResponse::Pong(_))), "{responses:?}");

    // 17 DelKey, 18 DelPred, 19 DropPredIndex, 20 DropNonLinearAlgorithmIndex
    let del = c
        .del_key(q::DelKey { store: "s".into(), keys: vec![StoreKey { key: vec![5.0, 5.0, 5.0] }], schema: None }, None)
        .await
        .expect("del key");
    assert_eq!(del.deleted_count, 1);
    let del = c
        .del_pred(q::DelPred { store: "s".into(), condition: Some(tag_is("z")), schema: None }, None)
        .await
        .expect("del pred");
    assert_eq!(del.deleted_count, 1);
    let dropped = c
        .drop_pred_index(
            q::DropPredIndex {
                store: "s".into(),
                predicates: vec!["tag".into()],
                error_if_not_exists: true,
                schema: None,
            },
            None,
        )
        .await
        .expect("drop pred index");
    assert_eq!(dropped.deleted_count, 1);
    let dropped = c
        .drop_non_linear_algorithm_index(
            q::DropNonLinearAlgorithmIndex {
                store: "s".into(),
                non_linear_indices: vec![NonLinearAlgorithm::Hnsw as i32],
                error_if_not_exists: true,
                schema: None,
            },
            None,
        )
        .await
        .expect("drop hnsw");
    assert_eq!(dropped.deleted_count, 1);

    // 21 ClearStore, 22 DropStore, 23 DropSchema
    let cleared = c.clear_store(q::ClearStore { store: "s".into(), schema: None }, None).await.expect("clear");
    assert_eq!(cleared.deleted_count, 2);
    let dropped = c
        .drop_store(q::DropStore { store: "s".into(), error_if_not_exists: true, schema: None }, None)
        .await
        .expect("drop store");
    assert_eq!(dropped.deleted_count, 1);
    let create = q::CreateStore {
        store: "t".into(),
        dimension: 2,
        create_predicates: vec![],
        non_linear_indices: vec![],
        error_if_exists: true,
        schema: Some("tenant".into()),
    };
    c.create_store(create, None).await.expect("create store in a schema");
    let dropped = c.drop_schema("tenant".into(), None).await.expect("drop schema");
    assert_eq!(dropped.deleted_count, 1);
}
