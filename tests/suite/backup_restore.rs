//! Online backup and restore with the real binary: a three-node cluster is backed up while a
//! writer keeps writing, the backup is restored into a fresh directory that serves as a new
//! single-node cluster, and its stores equal the source's at the backup's log index (the
//! writer's writes are serial, so that state is a prefix of them). A truncated or corrupted
//! backup is refused, naming the file and where it fails.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::procs::{Proc, ProcRoot, free_addr, start_three, voters};
use ahnlich_raft::proto::ahnlich::db::query as q;
use ahnlich_raft::proto::ahnlich::keyval::{DbStoreEntry, StoreKey, StoreValue};
use ahnlich_raft::proto::ahnlich::metadata::{MetadataValue, metadata_value};
use ahnlich_raft::server::node::{Node, NodeConfig};

fn ahnlich_raft(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ahnlich-raft")).args(args).output().expect("run ahnlich-raft")
}

fn entry(i: usize) -> DbStoreEntry {
    let tag = MetadataValue { value: Some(metadata_value::Value::RawString(format!("w{i}"))) };
    DbStoreEntry {
        key: Some(StoreKey { key: vec![i as f32, 1.0, 2.0] }),
        value: Some(StoreValue { value: BTreeMap::from([("tag".to_string(), tag)]) }),
    }
}

/// Every entry of store `w` on the node at `addr`: key's first component → tag.
async fn written(addr: SocketAddr) -> HashMap<usize, String> {
    let mut c = ahnlich_raft::proto::ahnlich::services::db_service::db_service_client::DbServiceClient::new(
        crate::support::procs::channel(addr).await,
    );
    let page =
        q::ListStoreEntries { store: "w".into(), cursor: None, limit: Some(1_000_000), condition: None, schema: None };
    let entries = c.list_store_entries(page).await.expect("list entries").into_inner().entries;
    entries
        .into_iter()
        .map(|e| {
            let i = e.key.expect("key").key[0] as usize;
            let tag = match e.value.and_then(|v| v.value.get("tag").cloned()).and_then(|m| m.value) {
                Some(metadata_value::Value::RawString(s)) => s,
                other => panic!("entry {i} lost its tag: {other:?}"),
            };
            (i, tag)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_write_load_restores_to_the_state_at_its_index() {
    let root = ProcRoot::new();
    let nodes: [Proc; 3] = start_three(root.path(), &[]);
    voters(&nodes[0], 3).await;
    let mut c = nodes[0].db().await;
    let create = |store: &str, predicates: Vec<String>| q::CreateStore {
        store: store.into(),
        dimension: 3,
        create_predicates: predicates,
        non_linear_indices: vec![],
        error_if_exists: true,
        schema: None,
    };
    c.create_store(create("w", vec!["tag".into()])).await.expect("create w");
    c.create_store(create("still", vec![])).await.expect("create still");
    c.set(q::Set { store: "still".into(), inputs: (0..100).map(entry).collect(), schema: None }).await.expect("set");

    // One serial writer, acknowledged write by write, until told to stop.
    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop, mut c) = (acked.clone(), stop.clone(), c.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                c.set(q::Set { store: "w".into(), inputs: vec![entry(i)], schema: None }).await.expect("write");
                i += 1;
                acked.store(i, Ordering::SeqCst);
            }
        })
    };
    while acked.load(Ordering::SeqCst) < 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let dir = tempfile::TempDir::new().expect("tempdir");
    let file = dir.path().join("cluster.backup");
    let acked_before = acked.load(Ordering::SeqCst);
    let leader = nodes[0].addr.to_string();
    let out = tokio::task::spawn_blocking({
        let file = file.clone();
        move || ahnlich_raft(&["cluster", "--addr", &leader, "backup", "--out", file.to_str().expect("utf-8")])
    })
    .await
    .expect("backup");
    assert!(out.status.success(), "backup failed: {}", String::from_utf8_lossy(&out.stderr));
    let acked_after = acked.load(Ordering::SeqCst);
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    assert!(acked_after > acked_before, "the writer kept writing during the backup");

    let inspected = ahnlich_raft(&["snapshot", "inspect", file.to_str().expect("utf-8")]);
    let inspected = String::from_utf8_lossy(&inspected.stdout);
    assert!(inspected.contains("public.still: 100 entries, dimension 3"), "{inspected}");
    assert!(inspected.contains("predicate indexes [\"tag\"]"), "{inspected}");

    // Restore into a fresh directory and serve it: a new cluster of one.
    let data = dir.path().join("restored");
    let at = free_addr();
    let out = ahnlich_raft(&[
        "restore",
        "--from",
        file.to_str().expect("utf-8"),
        "--data-dir",
        data.to_str().expect("utf-8"),
        "--advertise",
        &at.to_string(),
    ]);
    assert!(out.status.success(), "restore failed: {}", String::from_utf8_lossy(&out.stderr));
    let node = Node::start(NodeConfig::new(&data, at)).await.expect("the restored directory starts");
    node.wait_leader(Duration::from_secs(10)).await.expect("it elects itself");
    let source_cluster = nodes[0].status().await.expect("status").cluster_id;
    assert_ne!(node.cluster_id().map(|c| c.to_string()), Some(source_cluster), "a restore is a new cluster");

    let restored = written(node.addr()).await;
    let k = restored.len();
    assert!(k >= acked_before, "the backup holds every write acknowledged before it began ({k} < {acked_before})");
    assert!(k <= acked_after, "and none that was never written ({k} > {acked_after})");
    for i in 0..k {
        assert_eq!(restored.get(&i).map(String::as_str), Some(format!("w{i}").as_str()), "write {i} of the first {k}");
    }
    let source = written(nodes[0].addr).await;
    assert!(source.len() >= k && (0..k).all(|i| source.get(&i) == restored.get(&i)), "the source's first {k} writes");

    // The restored node takes writes as a cluster of its own.
    let mut r = ahnlich_raft::proto::ahnlich::services::db_service::db_service_client::DbServiceClient::new(
        crate::support::procs::channel(at).await,
    );
    r.set(q::Set { store: "w".into(), inputs: vec![entry(k)], schema: None })
        .await
        .expect("a write to the restored node");
    node.shutdown().await.expect("shutdown");
    drop(nodes);
}

fn refused(file: &Path) -> String {
    let verify = ahnlich_raft(&["snapshot", "verify", file.to_str().expect("utf-8")]);
    assert!(!verify.status.success(), "verify passed a damaged file");
    let target = file.with_extension("restored");
    let restore = ahnlich_raft(&[
        "restore",
        "--from",
        file.to_str().expect("utf-8"),
        "--data-dir",
        target.to_str().expect("utf-8"),
    ]);
    assert!(!restore.status.success(), "restore took a damaged file");
    assert!(!target.join("snapshots").exists(), "a refused restore writes no state");
    let error = String::from_utf8_lossy(&restore.stderr).to_string();
    assert_eq!(error, String::from_utf8_lossy(&verify.stderr), "verify and restore refuse alike");
    error
}

#[test]
fn a_truncated_or_corrupted_backup_is_refused_naming_the_file_and_offset() {
    let root = tempfile::TempDir::new().expect("tempdir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let at = free_addr();
    let node = rt.block_on(Node::start(NodeConfig::new(root.path().join("n"), at))).expect("start");
    rt.block_on(node.wait_leader(Duration::from_secs(10))).expect("leader");
    rt.block_on(async {
        let mut c = ahnlich_raft::proto::ahnlich::services::db_service::db_service_client::DbServiceClient::new(
            crate::support::procs::channel(at).await,
        );
        let create = q::CreateStore {
            store: "w".into(),
            dimension: 3,
            create_predicates: vec![],
            non_linear_indices: vec![],
            error_if_exists: true,
            schema: None,
        };
        c.create_store(create).await.expect("create");
        c.set(q::Set { store: "w".into(), inputs: (0..50).map(entry).collect(), schema: None }).await.expect("set");
    });
    let good = root.path().join("good.backup");
    let out = ahnlich_raft(&["cluster", "--addr", &at.to_string(), "backup", "--out", good.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    rt.block_on(node.shutdown()).expect("shutdown");
    let bytes = std::fs::read(&good).expect("read");
    let ok = ahnlich_raft(&["snapshot", "verify", good.to_str().expect("utf-8")]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));

    for cut in [0, 100, 4096, bytes.len() / 2, bytes.len() - 1] {
        let f = root.path().join(format!("cut-{cut}.backup"));
        std::fs::write(&f, &bytes[..cut]).expect("write");
        let e = refused(&f);
        assert!(e.contains(&f.display().to_string()) && e.contains(&format!("offset {cut}")), "cut at {cut}: {e}");
    }
    for (at, what) in [(3, "bad magic at offset 0"), (40, "header checksum"), (bytes.len() - 10, "body checksum")] {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x40;
        let f = root.path().join(format!("flip-{at}.backup"));
        std::fs::write(&f, &damaged).expect("write");
        let e = refused(&f);
        assert!(e.contains(&f.display().to_string()) && e.contains(what) && e.contains("offset"), "flip at {at}: {e}");
    }
}
