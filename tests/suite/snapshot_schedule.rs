//! When a node snapshots on its own: every `--snapshot-every` entries while its state is small,
//! but with a large state only once the log since the last snapshot is a share of that
//! snapshot's size or a set number of bytes, so small writes never rewrite a large state. The
//! same holds after a restart. A log of the set bytes is enough before the entry count too, so
//! large batches cannot grow the log past it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ahnlich_raft::proto::ahnlich::db::query as q;
use ahnlich_raft::proto::ahnlich::keyval::{DbStoreEntry, StoreKey};
use ahnlich_raft::proto::ahnlich::services::db_service::db_service_client::DbServiceClient;
use ahnlich_raft::server::node::{Node, NodeConfig};
use tonic::transport::Channel;

const STORE: &str = "s";
const DIM: usize = 128;
const EVERY: u64 = 20;

/// A node snapshotting after `EVERY` entries, once the log since the last snapshot is half its
/// size or `log_bytes`.
fn config(dir: &std::path::Path, log_bytes: u64) -> NodeConfig {
    let mut c = NodeConfig::new(dir, SocketAddr::from(([127, 0, 0, 1], 0)));
    c.raft.snapshot_every = EVERY;
    c.raft.snapshot_log_percent = 50;
    c.raft.snapshot_log_bytes = log_bytes;
    c
}

async fn start(dir: &std::path::Path, log_bytes: u64) -> (Node, DbServiceClient<Channel>) {
    let node = Node::start(config(dir, log_bytes)).await.expect("start");
    node.wait_leader(Duration::from_secs(10)).await.expect("leader");
    let db = DbServiceClient::connect(format!("http://{}", node.addr())).await.expect("connect");
    (node, db)
}

/// Sets `n` vectors from `first` on, in one request (one log entry).
async fn set(db: &mut DbServiceClient<Channel>, first: u32, n: u32) {
    let inputs = (first..first + n)
        .map(|i| DbStoreEntry { key: Some(StoreKey { key: vec![i as f32; DIM] }), value: None })
        .collect();
    db.set(q::Set { store: STORE.into(), inputs, ..Default::default() }).await.expect("set");
}

/// The node's snapshot index once it has applied its whole log and the scheduler has had a
/// moment to react (a snapshot it asks for is built within milliseconds at these sizes).
async fn settled_snapshot(node: &Node) -> Option<u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.status().last_applied < node.status().last_log_index {
        assert!(Instant::now() < deadline, "the node did not apply its log");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    node.status().snapshot_index
}

async fn snapshot_after(node: &Node, after: Option<u64>, what: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match node.status().snapshot_index {
            Some(s) if Some(s) > after => return s,
            _ => assert!(Instant::now() < deadline, "no snapshot after {after:?}: {what}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts a node, writes about 1 MB of vectors in one entry and then small entries up to the
/// entry count, and returns the node, a client and the first snapshot's index.
async fn start_with_a_large_snapshot(dir: &std::path::Path, log_bytes: u64) -> (Node, DbServiceClient<Channel>, u64) {
    let (node, mut db) = start(dir, log_bytes).await;
    db.create_store(q::CreateStore { store: STORE.into(), dimension: DIM as u32, ..Default::default() })
        .await
        .expect("create store");
    set(&mut db, 0, 2_000).await;
    for i in 0..EVERY as u32 {
        set(&mut db, 10_000 + i, 1).await;
    }
    let first = snapshot_after(&node, None, "the first snapshot is due after the entry count").await;
    let size = node.state().current_snapshot().expect("a snapshot").bytes().len();
    assert!(size > 1_000_000, "the snapshot holds the large state: {size} bytes");
    (node, db, first)
}

/// Writes `n` vectors in one entry, asserts that a snapshot after `first` and holding that entry
/// follows (`why`), and stops the node.
async fn a_write_takes_a_snapshot(node: Node, mut db: DbServiceClient<Channel>, first: u64, n: u32, why: &str) {
    set(&mut db, 40_000, n).await;
    let write = node.status().last_log_index.expect("a log");
    let next = snapshot_after(&node, Some(first), why).await;
    assert!(next >= write, "snapshot {next} does not hold the write at {write}");
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_writes_do_not_rewrite_a_large_state_until_the_log_is_a_share_of_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, mut db, first) = start_with_a_large_snapshot(dir.path(), 1 << 30).await;
    let size = node.state().current_snapshot().expect("a snapshot").bytes().len();

    // Five times the entry count of small writes: far less log than half the snapshot.
    for i in 0..5 * EVERY as u32 {
        set(&mut db, 20_000 + i, 1).await;
    }
    assert_eq!(settled_snapshot(&node).await, Some(first), "small writes rewrote a {size}-byte state");

    // A restart knows the snapshot's size too.
    node.shutdown().await.expect("shutdown");
    let (node, mut db) = start(dir.path(), 1 << 30).await;
    for i in 0..2 * EVERY as u32 {
        set(&mut db, 30_000 + i, 1).await;
    }
    assert_eq!(settled_snapshot(&node).await, Some(first), "after a restart, small writes rewrote the state");

    // A large write brings the log past half the snapshot: the next one is taken.
    a_write_takes_a_snapshot(node, db, first, 2_000, "the log since the snapshot passed half its size").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_of_the_set_bytes_is_enough_however_large_the_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, mut db, first) = start_with_a_large_snapshot(dir.path(), 256 << 10).await;
    for i in 0..EVERY as u32 {
        set(&mut db, 20_000 + i, 1).await;
    }
    assert_eq!(settled_snapshot(&node).await, Some(first), "small writes rewrote the state");
    // About 300 KB of log: past the set bytes, short of half the snapshot.
    a_write_takes_a_snapshot(node, db, first, 600, "the log since the snapshot passed the set bytes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_of_the_set_bytes_is_enough_before_the_entry_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, mut db) = start(dir.path(), 256 << 10).await;
    db.create_store(q::CreateStore { store: STORE.into(), dimension: DIM as u32, ..Default::default() })
        .await
        .expect("create store");
    // Two entries of about 300 KB each: far fewer than the entry count, more than the set bytes.
    set(&mut db, 0, 600).await;
    set(&mut db, 1_000, 600).await;
    let write = node.status().last_log_index.expect("a log");
    assert!(write < EVERY, "the log holds {write} entries, fewer than the entry count {EVERY}");
    let taken = snapshot_after(&node, None, "a log past the set bytes").await;
    assert!(taken + 1 >= write, "snapshot {taken} does not hold the large writes up to {write}");
    node.shutdown().await.expect("shutdown");
}
