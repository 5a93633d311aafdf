//! A node whose disk fails under its Raft log (a sync that fails with EIO, a full disk) while
//! it leads: it stops, says why in its status and to every client, and the other two elect a
//! leader and keep taking writes. Restarted once the disk works again, it catches up.
//!
//! Node 3's log lives on the simulated file system, which fails on demand; everything else is
//! real (gRPC on loopback, snapshots on disk).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::support::cluster::{Cluster, config};
use ahnlich_raft::proto::ahnlich::db::query as q;
use ahnlich_raft::proto::ahnlich::keyval::{DbStoreEntry, StoreKey, StoreValue};
use ahnlich_raft::raft::log_store::LogStore;
use ahnlich_raft::raft::types::TypeConfig;
use ahnlich_raft::server::node::{Node, NodeConfig};
use ahnlich_raft::wal::WalOptions;
use ahnlich_raft::wal::sim_fs::SimFs;
use tonic::Code;

const FAILING: u64 = 3;

#[derive(Clone, Copy, Debug)]
enum DiskFault {
    /// The next `fdatasync` fails with EIO.
    SyncFails,
    /// No byte more fits (ENOSPC).
    Full,
}

fn set_one(i: u32) -> tonic::Request<q::Set> {
    let entry = DbStoreEntry {
        key: Some(StoreKey { key: vec![i as f32, 0.0] }),
        value: Some(StoreValue { value: BTreeMap::new() }),
    };
    let mut r = tonic::Request::new(q::Set { store: "s".into(), inputs: vec![entry], ..Default::default() });
    r.set_timeout(Duration::from_secs(3));
    r
}

fn get_all(n: u32) -> tonic::Request<q::GetKey> {
    let keys = (0..n).map(|i| StoreKey { key: vec![i as f32, 0.0] }).collect();
    let mut r = tonic::Request::new(q::GetKey { store: "s".into(), keys, schema: None });
    r.set_timeout(Duration::from_secs(3));
    r
}

/// Writes key `i` through node `via` until a write is acknowledged, for at most `limit`
/// (a failed leader is being replaced meanwhile).
async fn write_until_acknowledged(cluster: &Cluster, via: u64, i: u32, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut db = cluster.db(via).await;
    loop {
        match db.set(set_one(i)).await {
            Ok(_) => return,
            Err(e) => assert!(Instant::now() < deadline, "write {i} through node {via} still refused: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn make_leader(cluster: &Cluster, to: u64) {
    let leader = cluster.leader().expect("a leader");
    if leader != to {
        cluster.node(leader).raft().trigger().transfer_leader(to).await.expect("transfer leadership");
    }
    cluster
        .wait_for(Duration::from_secs(10), "the chosen node to lead", |c| {
            (1..=3).all(|id| c.node(id).status().leader_id == Some(to)) && c.node(to).status().role == "leader"
        })
        .await;
}

/// Three nodes, node 3's log on `sim` (its config further changed by `failing`), node 3
/// leading, store "s" holding keys `0..writes`.
async fn failing_node_leads(sim: &SimFs, failing: impl Fn(&mut NodeConfig), writes: u32) -> Cluster {
    let fs = sim.clone();
    let cluster = Cluster::start_with(3, move |c| {
        c.commit_wait = Duration::from_secs(2);
        if c.node_id == Some(FAILING) {
            c.wal_fs = Some(Arc::new(fs.clone()));
            failing(c);
        }
    })
    .await;
    make_leader(&cluster, FAILING).await;
    let mut db = cluster.db(1).await;
    db.create_store(q::CreateStore { store: "s".into(), dimension: 2, error_if_exists: true, ..Default::default() })
        .await
        .expect("create store");
    for i in 0..writes {
        db.set(set_one(i)).await.expect("a write before the fault");
    }
    cluster
}

/// Waits until the failed node's stopped Raft has closed its log, then checks that its status
/// still says it stopped, naming `cause`.
async fn still_stopped_once_its_log_closes(cluster: &Cluster, cause: &str) {
    cluster
        .wait_for(Duration::from_secs(10), "node 3's stopped Raft to close its log", |c| c.node(FAILING).log_closed())
        .await;
    let status = cluster.node(FAILING).status();
    assert_eq!(status.role, "stopped", "after the log closed: {status:?}");
    assert!(status.stopped.contains(cause), "after the log closed: {status:?}");
}

async fn a_leader_whose_disk_fails_stops_and_the_others_go_on(fault: DiskFault) {
    let sim = SimFs::new(17);
    let cluster = failing_node_leads(&sim, |_| {}, 20).await;
    let term_before = cluster.node(1).status().term;

    match fault {
        DiskFault::SyncFails => sim.fail_sync_after(1),
        DiskFault::Full => sim.limit_space(0),
    }
    // The first write after the fault reaches the failing leader; whatever it is told, the
    // cluster must take writes again without node 3.
    write_until_acknowledged(&cluster, 1, 20, Duration::from_secs(20)).await;
    for i in 21..40 {
        write_until_acknowledged(&cluster, 2, i, Duration::from_secs(5)).await;
    }
    let new_leader = cluster.leader().expect("a new leader");
    assert_ne!(new_leader, FAILING, "the failed node still leads");
    assert!(cluster.node(1).status().term > term_before, "no new election");

    // The failed node says why, in its status and to clients, at once.
    let status = cluster.node(FAILING).status();
    let cause = match fault {
        DiskFault::SyncFails => "os error 5",
        DiskFault::Full => "os error 28",
    };
    assert_eq!(status.role, "stopped", "{status:?}");
    assert!(status.stopped.contains(cause), "{status:?}");
    let mut to_failed = cluster.db(FAILING).await;
    let started = Instant::now();
    let write = to_failed.set(set_one(99)).await.expect_err("a write to the stopped node");
    let read = to_failed.get_key(get_all(1)).await.expect_err("a read from the stopped node");
    for refusal in [write, read] {
        assert_eq!(refusal.code(), Code::Unavailable, "{refusal:?}");
        assert!(
            refusal.message().contains("has stopped") && refusal.message().contains(cause),
            "the refusal names the failure: {refusal:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(2), "refused without waiting: {:?}", started.elapsed());

    // It still says why once its stopped Raft has let go of the log.
    still_stopped_once_its_log_closes(&cluster, cause).await;

    // Restarted on a disk that works again (space freed), it catches up with every write.
    let addr = cluster.node(FAILING).addr();
    let mut cluster = cluster;
    let failed = cluster.nodes[FAILING as usize - 1].take().expect("node 3 runs");
    let _ = failed.shutdown().await; // its Raft already stopped on the error
    sim.limit_space(u64::MAX);
    let mut c = config(cluster.dir.path(), FAILING, &cluster.faults);
    c.listen = addr;
    c.wal_fs = Some(Arc::new(sim.clone()));
    cluster.nodes[FAILING as usize - 1] = Some(Node::start(c).await.expect("restart node 3"));
    write_until_acknowledged(&cluster, FAILING, 40, Duration::from_secs(20)).await;
    cluster
        .wait_for(Duration::from_secs(20), "node 3 to catch up", |c| {
            let digests: Vec<u64> = (1..=3).map(|id| c.node(id).state().engine().digest()).collect();
            let leader = c.node(1).status();
            c.node(FAILING).status().last_applied == leader.last_applied && digests.windows(2).all(|w| w[0] == w[1])
        })
        .await;
    let found = cluster.db(FAILING).await.get_key(get_all(41)).await.expect("a read on the restarted node");
    assert_eq!(found.into_inner().entries.len(), 41, "every acknowledged write, read through node 3");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_sync_fails_stops_and_catches_up_after_a_restart() {
    a_leader_whose_disk_fails_stops_and_the_others_go_on(DiskFault::SyncFails).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_disk_is_full_stops_and_catches_up_after_a_restart() {
    a_leader_whose_disk_fails_stops_and_the_others_go_on(DiskFault::Full).await;
}

/// The write that fails may be one openraft does not wait for: here the purge after a
/// snapshot, with no client write anywhere afterwards. The leader must still stop, so the
/// other two elect a leader without it and take writes.
///
/// Not in the default run: under the full suite's load openraft once had not purged within
/// 10 s of the snapshot, so the fault never fired. Run it with
/// `cargo test --release --test suite -- --ignored disk_failure::`.
#[ignore = "openraft may defer the purge under load; run with --ignored (see the doc comment)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_log_fails_on_a_purge_gives_way_with_no_write_to_notice() {
    let sim = SimFs::new(23);
    // A snapshot purges the whole log behind it.
    let purge_all = |c: &mut NodeConfig| {
        c.raft.keep_behind_snapshot = 0;
        c.raft.keep_behind_snapshot_bytes = 0;
    };
    let cluster = failing_node_leads(&sim, purge_all, 10).await;
    let term_before = cluster.node(1).status().term;

    sim.limit_space(0);
    cluster.node(FAILING).raft().trigger().snapshot().await.expect("trigger a snapshot");
    cluster
        .wait_for(Duration::from_secs(10), "node 3's log to fail on the purge", |c| {
            c.node(FAILING).status().role == "stopped"
        })
        .await;
    // The node stopped its Raft itself (openraft waited for no write that failed), so only the
    // log knows why; the node still says so once its Raft has let go of the log.
    still_stopped_once_its_log_closes(&cluster, "os error 28").await;
    cluster
        .wait_for(Duration::from_secs(10), "nodes 1 and 2 to elect a leader without node 3", |c| {
            let (one, two) = (c.node(1).status(), c.node(2).status());
            one.leader_id.is_some_and(|l| l != FAILING) && one.leader_id == two.leader_id && one.term > term_before
        })
        .await;
    write_until_acknowledged(&cluster, 2, 10, Duration::from_secs(10)).await;
    cluster.shutdown().await;
}

/// Why a log failed is still known after the log is closed: openraft lets go of a node's log
/// when its Raft stops (on the error itself, or when the node stops it for a failed write
/// openraft did not wait for), and the node's status and its refusals are asked for after that.
#[test]
fn a_failed_logs_reason_is_still_reported_after_the_log_is_closed() {
    let sim = SimFs::new(31);
    let opts = WalOptions { segment_size: 4096, preallocate: false, ..WalOptions::default() };
    let log = LogStore::<TypeConfig>::open_on(Arc::new(sim.clone()), Path::new("/n3/log"), opts).expect("open the log");
    let (watch, closed) = (log.watch(), log.closed_flag());
    assert_eq!(watch.failure(), None, "a log that has not failed");

    sim.limit_space(0);
    let (tx, rx) = std::sync::mpsc::channel();
    log.wal()
        .set_meta(7, vec![1; 100], Box::new(move |result| tx.send(result.map_err(|e| e.to_string())).expect("send")))
        .expect("queue a write");
    let refused = rx.recv().expect("the write completes").expect_err("a write to a full disk");
    assert!(refused.contains("os error 28"), "{refused}");
    let reason = watch.failure().expect("the failure, while the log is open");
    assert!(reason.contains("os error 28"), "{reason}");

    drop(log);
    assert!(closed.load(Ordering::Acquire), "the log is closed once its last holder lets go");
    assert_eq!(watch.tail_start_within(1, 1), None, "the watch no longer reaches the log");
    assert_eq!(watch.failure(), Some(reason), "the failure, after the log closed");
}
