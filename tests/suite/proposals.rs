//! Concurrent writes share Raft entries (the leader's proposer batches them), yet each client
//! gets exactly the answer its own write would have had alone.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use ahnlich_raft::proto::ahnlich::db::query as q;
use ahnlich_raft::proto::ahnlich::keyval::{DbStoreEntry, StoreKey, StoreValue};
use ahnlich_raft::proto::ahnlich::metadata::{MetadataValue, metadata_value};
use ahnlich_raft::proto::ahnlich::services::db_service::db_service_client::DbServiceClient;
use ahnlich_raft::server::node::{Node, NodeConfig};
use tonic::Code;
use tonic::transport::Channel;

const CLIENTS: usize = 64;
const WRITES_EACH: usize = 8;

fn entry(client: usize, i: usize) -> DbStoreEntry {
    let tag = MetadataValue { value: Some(metadata_value::Value::RawString(format!("c{client}"))) };
    DbStoreEntry {
        key: Some(StoreKey { key: vec![client as f32, i as f32] }),
        value: Some(StoreValue { value: BTreeMap::from([("tag".to_string(), tag)]) }),
    }
}

async fn client(node: &Node) -> DbServiceClient<Channel> {
    DbServiceClient::connect(format!("http://{}", node.addr())).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_entries_and_each_gets_its_own_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(NodeConfig::new(dir.path(), SocketAddr::from(([127, 0, 0, 1], 0)))).await.expect("start");
    node.wait_leader(Duration::from_secs(10)).await.expect("leader");

    // Many clients create the same store at once, each asking for an error if it exists:
    // exactly one is told it created it, every other gets upstream's AlreadyExists.
    let mut racers = Vec::new();
    for _ in 0..32 {
        let mut c = client(&node).await;
        racers.push(tokio::spawn(async move {
            c.create_store(q::CreateStore {
                store: "race".into(),
                dimension: 2,
                create_predicates: vec!["tag".into()],
                error_if_exists: true,
                ..Default::default()
            })
            .await
        }));
    }
    let mut created = 0;
    for r in racers {
        match r.await.expect("task") {
            Ok(_) => created += 1,
            Err(e) => {
                assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
                assert_eq!(e.message(), r#"Store StoreName { value: "race" } already exists"#);
            }
        }
    }
    assert_eq!(created, 1, "exactly one CreateStore made the store");

    // 64 clients each write 8 new entries; each Set reports its own single insert.
    let before = node.status().last_log_index.expect("log index");
    let mut writers = Vec::new();
    for c in 0..CLIENTS {
        let mut db = client(&node).await;
        writers.push(tokio::spawn(async move {
            for i in 0..WRITES_EACH {
                let set = q::Set { store: "race".into(), inputs: vec![entry(c, i)], ..Default::default() };
                let reply = db.set(set).await.expect("set").into_inner();
                let upsert = reply.upsert.expect("upsert counts");
                assert_eq!((upsert.inserted, upsert.updated), (1, 0), "client {c} write {i}");
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    let entries_used = node.status().last_log_index.expect("log index") - before;
    let writes = (CLIENTS * WRITES_EACH) as u64;
    assert!(entries_used < writes, "{writes} concurrent writes took {entries_used} log entries: none were batched");
    // Operators see it too: writes proposed (the sum) outnumber the entries that carried them.
    let text = node.metrics_text();
    let value = |name: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in\n{text}"));
        line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("unreadable: {line}"))
    };
    let (proposed, carried_by) =
        (value("ahnlich_raft_raft_proposal_commands_sum "), value("ahnlich_raft_raft_proposal_commands_count "));
    assert!(proposed >= writes as f64 && carried_by < proposed, "{proposed} writes in {carried_by} entries");

    // Every write is there once, under its own client's tag.
    let mut db = client(&node).await;
    let info =
        db.get_store(q::GetStore { store: "race".into(), ..Default::default() }).await.expect("get store").into_inner();
    assert_eq!(info.len, writes);
    for c in [0, 17, CLIENTS - 1] {
        let keys = (0..WRITES_EACH).map(|i| entry(c, i).key.expect("key")).collect();
        let got =
            db.get_key(q::GetKey { store: "race".into(), keys, ..Default::default() }).await.expect("get").into_inner();
        assert_eq!(got.entries.len(), WRITES_EACH, "client {c}");
    }
    node.shutdown().await.expect("shutdown");
}
