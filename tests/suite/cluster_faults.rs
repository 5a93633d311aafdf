//! Nodes in one process over a network that cuts links, delays and drops Raft messages: an
//! isolated leader acknowledges nothing, the majority goes on, and after healing every replica
//! holds exactly the acknowledged writes.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::cluster::Cluster;
use ahnlich_raft::engine::StoreRef;
use ahnlich_raft::proto::ahnlich::db::query as q;
use ahnlich_raft::proto::ahnlich::keyval::{DbStoreEntry, StoreKey, StoreValue};
use ahnlich_raft::proto::ahnlich::services::db_service::db_service_client::DbServiceClient;
use tonic::transport::Channel;

fn set_one(i: u32) -> tonic::Request<q::Set> {
    let entry = DbStoreEntry {
        key: Some(StoreKey { key: vec![i as f32, 0.0] }),
        value: Some(StoreValue { value: BTreeMap::new() }),
    };
    let mut r = tonic::Request::new(q::Set { store: "s".into(), inputs: vec![entry], ..Default::default() });
    r.set_timeout(Duration::from_secs(2));
    r
}

fn get_one(i: u32) -> tonic::Request<q::GetKey> {
    let mut r = tonic::Request::new(q::GetKey {
        store: "s".into(),
        keys: vec![StoreKey { key: vec![i as f32, 0.0] }],
        ..Default::default()
    });
    r.set_timeout(Duration::from_secs(2));
    r
}

async fn create(db: &mut DbServiceClient<Channel>) {
    db.create_store(q::CreateStore { store: "s".into(), dimension: 2, error_if_exists: true, ..Default::default() })
        .await
        .expect("create store");
}

fn len_on(cluster: &Cluster, id: u64) -> Option<usize> {
    let engine = cluster.node(id).state().engine();
    match engine.query(&ahnlich_raft::engine::Query::GetStore { store: StoreRef::public("s") }) {
        Ok(ahnlich_raft::engine::Response::Store(info)) => Some(info.len),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_acknowledges_nothing_and_the_majority_goes_on() {
    let cluster = Cluster::start_with(3, |c| c.commit_wait = Duration::from_secs(1)).await;
    let old = cluster.leader().expect("leader");
    let mut to_old = cluster.db(old).await;
    create(&mut to_old).await;
    to_old.set(set_one(0)).await.expect("write before the partition");

    let others: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
    cluster.faults.isolate(old, &others);
    // The cut-off leader can neither commit a write nor confirm a linearizable read.
    // No client deadline: the node itself answers that the write is in doubt.
    let mut no_deadline = set_one(1);
    no_deadline.metadata_mut().remove("grpc-timeout");
    let lost = to_old.set(no_deadline).await.expect_err("an isolated leader acknowledged a write");
    assert_eq!(lost.code(), tonic::Code::Unavailable, "{lost:?}");
    // Either the node's commit wait ran out, or it stepped down meanwhile: both say "in doubt".
    assert!(lost.message().contains("not committed") || lost.message().contains("may not have been"), "{lost:?}");
    let stale = to_old.get_key(get_one(0)).await;
    assert!(stale.is_err(), "an isolated leader served a linearizable read: {stale:?}");
    // A local read is still answered, from what the node holds.
    let mut local = get_one(0);
    local.metadata_mut().insert("x-ahnlich-read-consistency", "local".parse().expect("ascii"));
    let held = to_old.get_key(local).await.expect("a local read on an isolated node");
    assert_eq!(held.into_inner().entries.len(), 1);

    // The majority elects a leader and takes writes.
    cluster
        .wait_for(Duration::from_secs(10), "a new leader on the majority side", |cl| {
            cl.node(others[0]).status().leader_id.is_some_and(|l| l != old)
        })
        .await;
    let mut to_majority = cluster.db(others[0]).await;
    for i in 2..12 {
        to_majority.set(set_one(i)).await.expect("write on the majority side");
    }

    cluster.faults.heal();
    cluster.converged(Duration::from_secs(20)).await;
    cluster
        .wait_for(Duration::from_secs(10), "the old leader to follow", |cl| cl.node(old).status().role == "follower")
        .await;
    // Key 1 was never acknowledged and never reached a majority: it is gone everywhere.
    for id in 1..=3 {
        assert_eq!(len_on(&cluster, id), Some(11), "node {id}");
        let engine = cluster.node(id).state().engine();
        let got = engine
            .query(&ahnlich_raft::engine::Query::GetKey { store: StoreRef::public("s"), keys: vec![vec![1.0, 0.0]] });
        assert!(
            matches!(got, Ok(ahnlich_raft::engine::Response::Entries(ref e)) if e.is_empty()),
            "node {id}: {got:?}"
        );
    }
    drop((to_old, to_majority));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_a_lossy_slow_network() {
    let cluster = Cluster::start(3).await;
    let mut first = cluster.db(cluster.leader().expect("leader")).await;
    create(&mut first).await;
    cluster.faults.set_delay(Duration::from_millis(2));
    cluster.faults.set_drop_per_mille(100);
    let mut clients = Vec::new();
    for id in 1..=3 {
        clients.push(cluster.db(id).await);
    }
    let mut acked = Vec::new();
    for i in 0..120u32 {
        let c = &mut clients[i as usize % 3];
        if c.set(set_one(i)).await.is_ok() {
            acked.push(i);
        }
    }
    assert!(acked.len() > 60, "too few writes got through a 10% loss: {}", acked.len());
    cluster.faults.heal();
    cluster.converged(Duration::from_secs(20)).await;
    for id in 1..=3 {
        let engine = cluster.node(id).state().engine();
        for i in &acked {
            let got = engine.query(&ahnlich_raft::engine::Query::GetKey {
                store: StoreRef::public("s"),
                keys: vec![vec![*i as f32, 0.0]],
            });
            assert!(
                matches!(got, Ok(ahnlich_raft::engine::Response::Entries(ref e)) if e.len() == 1),
                "node {id} lost acknowledged key {i}"
            );
        }
    }
    drop((first, clients));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_near_the_message_limit_replicates_without_an_election() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().expect("leader");
    let term = cluster.node(leader).status().term;
    let mut db = cluster.db(cluster.follower()).await;
    db.create_store(q::CreateStore { store: "big".into(), dimension: 128, ..Default::default() })
        .await
        .expect("create store");
    // 96,000 entries of 128 floats: about 48 MiB on the wire, under the 64 MiB limit.
    let inputs: Vec<DbStoreEntry> = (0..96_000u32)
        .map(|i| DbStoreEntry { key: Some(StoreKey { key: vec![i as f32; 128] }), value: None })
        .collect();
    let mut db = db.max_encoding_message_size(64 << 20);
    let reply = db.set(q::Set { store: "big".into(), inputs, ..Default::default() }).await.expect("big set");
    assert_eq!(reply.into_inner().upsert.map(|u| u.inserted), Some(96_000));
    db.set(set_one_in("big", 128)).await.expect("a small write right after");
    cluster.converged(Duration::from_secs(20)).await;
    for id in 1..=3 {
        let s = cluster.node(id).status();
        assert_eq!((s.term, s.leader_id), (term, Some(leader)), "node {id}: an election happened");
    }
    cluster.shutdown().await;
}

fn set_one_in(store: &str, dim: usize) -> q::Set {
    let entry = DbStoreEntry { key: Some(StoreKey { key: vec![-1.0; dim] }), value: None };
    q::Set { store: store.into(), inputs: vec![entry], ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_cut_off_past_a_purge_catches_up_from_a_multi_chunk_snapshot() {
    let cluster = Cluster::start_with(3, |c| {
        c.raft.snapshot_every = 0;
        c.raft.keep_behind_snapshot = 0;
        c.raft.keep_behind_snapshot_bytes = 0;
    })
    .await;
    let leader = cluster.leader().expect("leader");
    let behind = cluster.follower();
    let others: Vec<u64> = (1..=3).filter(|id| *id != behind).collect();
    let mut db = cluster.db(leader).await;
    db.create_store(q::CreateStore { store: "big".into(), dimension: 256, ..Default::default() })
        .await
        .expect("create store");
    cluster.faults.isolate(behind, &others);
    // About 5 MB of vectors: the snapshot file spans several 1 MiB chunks.
    for batch in 0..5u32 {
        let inputs: Vec<DbStoreEntry> = (0..1000u32)
            .map(|i| DbStoreEntry { key: Some(StoreKey { key: vec![(batch * 1000 + i) as f32; 256] }), value: None })
            .collect();
        db.set(q::Set { store: "big".into(), inputs, ..Default::default() }).await.expect("set");
    }
    let raft = cluster.node(leader).raft();
    raft.trigger().snapshot().await.expect("snapshot");
    cluster
        .wait_for(Duration::from_secs(10), "the leader to purge its log behind the snapshot", |cl| {
            let s = cl.node(leader).status();
            s.purged_index.is_some() && s.purged_index == s.snapshot_index
        })
        .await;
    let snapshot = cluster.node(leader).status().snapshot_index;
    cluster.faults.heal();
    cluster.converged(Duration::from_secs(20)).await;
    let s = cluster.node(behind).status();
    assert!(s.snapshot_index >= snapshot, "node {behind} caught up without the snapshot: {s:?}");
    let engine = cluster.node(behind).state().engine();
    let info = engine.query(&ahnlich_raft::engine::Query::GetStore { store: StoreRef::public("big") });
    assert!(matches!(info, Ok(ahnlich_raft::engine::Response::Store(ref i)) if i.len == 5000), "{info:?}");
    // The received file became the node's snapshot; nothing temporary is left behind.
    let files: Vec<String> = std::fs::read_dir(cluster.node(behind).state().snapshot_dir())
        .expect("snapshot dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.iter().all(|f| f.ends_with(".snap")) && !files.is_empty(), "{files:?}");
    cluster.shutdown().await;
}
