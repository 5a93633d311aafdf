//! Sizes a client chooses never reach an allocation or a loop unbounded: absurd `closest_n`
//! on every algorithm, `ef_search` and `limit` at their maximum, each answered with the right
//! status or a correct, bounded answer, after which the node still takes a write.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use ahnlich_raft::proto::ahnlich::algorithm::algorithms::Algorithm;
use ahnlich_raft::proto::ahnlich::algorithm::nonlinear::{HnswConfig, KdTreeConfig, NonLinearIndex, non_linear_index};
use ahnlich_raft::proto::ahnlich::db::pipeline as pl;
use ahnlich_raft::proto::ahnlich::db::query as q;
use ahnlich_raft::proto::ahnlich::keyval::{DbStoreEntry, StoreKey, StoreValue};
use ahnlich_raft::proto::ahnlich::services::db_service::db_service_client::DbServiceClient;
use ahnlich_raft::server::node::{Node, NodeConfig};
use tonic::Code;
use tonic::transport::Channel;

const ENTRIES: usize = 5;

fn entry(i: usize) -> DbStoreEntry {
    let key = vec![i as f32 + 1.0, 1.0, -(i as f32), 0.5];
    DbStoreEntry { key: Some(StoreKey { key }), value: Some(StoreValue { value: BTreeMap::new() }) }
}

async fn store(db: &mut DbServiceClient<Channel>, name: &str, index: Option<non_linear_index::Index>) {
    let create = q::CreateStore {
        store: name.into(),
        dimension: 4,
        non_linear_indices: index.into_iter().map(|i| NonLinearIndex { index: Some(i) }).collect(),
        error_if_exists: true,
        ..Default::default()
    };
    db.create_store(create).await.expect("create store");
    let inputs = (0..ENTRIES).map(entry).collect();
    db.set(q::Set { store: name.into(), inputs, schema: None }).await.expect("set");
}

fn sim(store: &str, closest_n: u64, algorithm: Algorithm, ef_search: Option<u32>) -> q::GetSimN {
    q::GetSimN {
        store: store.into(),
        search_input: Some(StoreKey { key: vec![1.0, 1.0, 0.0, 0.5] }),
        closest_n,
        algorithm: algorithm as i32,
        ef_search,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_sizes_get_a_bounded_answer_or_a_clear_refusal() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let node = Node::start(NodeConfig::new(dir.path(), SocketAddr::from(([127, 0, 0, 1], 0)))).await.expect("start");
    node.wait_leader(Duration::from_secs(10)).await.expect("leader");
    let mut db = DbServiceClient::connect(format!("http://{}", node.addr())).await.expect("connect");
    store(&mut db, "linear", None).await;
    store(&mut db, "kd", Some(non_linear_index::Index::Kdtree(KdTreeConfig {}))).await;
    store(&mut db, "hnsw", Some(non_linear_index::Index::Hnsw(HnswConfig::default()))).await;
    let empty = q::CreateStore { store: "empty".into(), dimension: 4, ..Default::default() };
    db.create_store(empty).await.expect("empty store");

    let cases = [
        ("linear", Algorithm::CosineSimilarity),
        ("linear", Algorithm::EuclideanDistance),
        ("linear", Algorithm::DotProductSimilarity),
        ("kd", Algorithm::KdTree),
        ("hnsw", Algorithm::Hnsw),
    ];
    for (name, algorithm) in cases {
        for closest_n in [1 << 40, u64::MAX] {
            let found = db.get_sim_n(sim(name, closest_n, algorithm, None)).await;
            let found = found.unwrap_or_else(|s| panic!("{name} {algorithm:?} closest_n {closest_n}: {s:?}"));
            assert_eq!(found.into_inner().entries.len(), ENTRIES, "{name} {algorithm:?}: the whole store, no more");
        }
    }
    let none = db.get_sim_n(sim("empty", u64::MAX, Algorithm::EuclideanDistance, None)).await.expect("empty store");
    assert!(none.into_inner().entries.is_empty());

    for ef in [u32::MAX, 0] {
        let refused = db.get_sim_n(sim("hnsw", 3, Algorithm::Hnsw, Some(ef))).await.expect_err("ef out of range");
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().contains("ef_search must be in 1..=10000"), "{refused:?}");
    }
    let bounded = db.get_sim_n(sim("hnsw", 3, Algorithm::Hnsw, Some(10_000))).await.expect("largest ef");
    assert_eq!(bounded.into_inner().entries.len(), 3);

    let page = q::ListStoreEntries { store: "linear".into(), limit: Some(u32::MAX), ..Default::default() };
    let page = db.list_store_entries(page).await.expect("list entries").into_inner();
    assert_eq!(page.entries.len(), ENTRIES);
    assert_eq!(page.next_cursor, None, "everything fit in one page");

    let after = db.set(q::Set { store: "linear".into(), inputs: vec![entry(99)], schema: None }).await;
    assert_eq!(after.expect("the node still takes writes").into_inner().upsert.map(|u| u.inserted), Some(1));
    drop(db);
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_past_the_memory_cap_are_refused_whole_and_info_server_reports_the_cap() {
    const CAP: usize = 400_000;
    let dir = tempfile::TempDir::new().expect("tempdir");
    let mut config = NodeConfig::new(dir.path(), SocketAddr::from(([127, 0, 0, 1], 0)));
    config.limits.max_memory_bytes = Some(CAP);
    let node = Node::start(config).await.expect("start");
    node.wait_leader(Duration::from_secs(10)).await.expect("leader");
    let mut db = DbServiceClient::connect(format!("http://{}", node.addr())).await.expect("connect");
    let info = |db: &mut DbServiceClient<Channel>| {
        let mut db = db.clone();
        async move { db.info_server(q::InfoServer {}).await.expect("info").into_inner().info.expect("server info") }
    };
    let before = info(&mut db).await;
    assert_eq!((before.limit, before.remaining), (CAP as u64, CAP as u64), "the cap, and all of it left");
    db.create_store(q::CreateStore { store: "m".into(), dimension: 4, ..Default::default() }).await.expect("create");
    let batch =
        |first: usize| q::Set { store: "m".into(), inputs: (first..first + 100).map(entry).collect(), schema: None };
    let mut stored = 0;
    let refused = loop {
        match db.set(batch(stored)).await {
            Ok(_) => stored += 100,
            Err(s) => break s,
        }
        assert!(stored < 1_000_000, "the cap never refused a write");
    };
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let store = db.get_store(q::GetStore { store: "m".into(), schema: None }).await.expect("store").into_inner();
    assert_eq!(store.len as usize, stored, "the refused Set added nothing");
    let after = info(&mut db).await;
    assert_eq!(after.limit, CAP as u64);
    assert!(after.remaining < CAP as u64 / 2, "remaining shrinks with the data: {after:?}");
    db.drop_store(q::DropStore { store: "m".into(), error_if_not_exists: true, schema: None }).await.expect("drop");
    assert_eq!(info(&mut db).await.remaining, CAP as u64, "dropping the store gave its memory back");
    db.create_store(q::CreateStore { store: "n".into(), dimension: 4, ..Default::default() }).await.expect("create");
    db.set(batch(0)).await.expect_err("into the dropped store");
    db.set(q::Set { store: "n".into(), inputs: vec![entry(1)], schema: None }).await.expect("room again");
    drop(db);
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_larger_than_a_message_is_refused_up_front_with_how_to_ask_for_less() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let mut config = NodeConfig::new(dir.path(), SocketAddr::from(([127, 0, 0, 1], 0)));
    config.max_message_bytes = 64 << 10;
    let node = Node::start(config).await.expect("start");
    node.wait_leader(Duration::from_secs(10)).await.expect("leader");
    let mut db = DbServiceClient::connect(format!("http://{}", node.addr())).await.expect("connect");
    let wide = |i: usize| DbStoreEntry {
        key: Some(StoreKey { key: (0..128).map(|d| (i * 131 + d) as f32).collect() }),
        value: Some(StoreValue { value: BTreeMap::new() }),
    };
    db.create_store(q::CreateStore { store: "w".into(), dimension: 128, ..Default::default() }).await.expect("create");
    for batch in 0..10 {
        let inputs = (batch * 50..(batch + 1) * 50).map(wide).collect();
        db.set(q::Set { store: "w".into(), inputs, schema: None }).await.expect("set");
    }
    // 500 entries of 512 bytes of key each: about 256 KB, four times the 64 KiB limit.
    let search = |n: u64| q::GetSimN {
        store: "w".into(),
        search_input: Some(StoreKey { key: vec![1.0; 128] }),
        closest_n: n,
        algorithm: Algorithm::EuclideanDistance as i32,
        ..Default::default()
    };
    let refused = db.get_sim_n(search(500)).await.expect_err("too large");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("65536-byte message limit") && refused.message().contains("closest_n"),
        "{refused:?}"
    );
    assert_eq!(db.get_sim_n(search(50)).await.expect("fits").into_inner().entries.len(), 50);

    let page = |limit: u32| q::ListStoreEntries { store: "w".into(), limit: Some(limit), ..Default::default() };
    let refused = db.list_store_entries(page(500)).await.expect_err("too large");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("smaller limit"), "{refused:?}");
    assert_eq!(db.list_store_entries(page(50)).await.expect("fits").into_inner().entries.len(), 50);

    // A pipeline's answers share one message: each read gets what the answers before it left.
    let get_sim_n = |n| pl::DbQuery { query: Some(pl::db_query::Query::GetSimN(search(n))) };
    let answered = db
        .pipeline(pl::DbRequestPipeline { queries: (0..6).map(|_| get_sim_n(50)).collect() })
        .await
        .expect("a pipeline whose answers would not all fit is still answered")
        .into_inner()
        .responses;
    let outcomes: Vec<Result<usize, (i32, String)>> = answered
        .into_iter()
        .map(|r| match r.response {
            Some(pl::db_server_response::Response::GetSimN(a)) => Ok(a.entries.len()),
            Some(pl::db_server_response::Response::Error(e)) => Err((e.code, e.message)),
            other => panic!("unexpected pipeline answer {other:?}"),
        })
        .collect();
    assert_eq!(outcomes[..2], [Ok(50), Ok(50)], "the first two answers (about 26 KB each) fit");
    for refused in &outcomes[2..] {
        let Err((code, message)) = refused else { panic!("an answer past the limit: {outcomes:?}") };
        assert_eq!(*code, Code::ResourceExhausted as i32, "{message}");
        assert!(message.contains("message limit") && message.contains("another pipeline"), "{message}");
    }

    db.set(q::Set { store: "w".into(), inputs: vec![wide(1000)], schema: None }).await.expect("still takes writes");
    drop(db);
    node.shutdown().await.expect("shutdown");
}
