//! Three (and four) real `ahnlich-raft serve` processes on loopback: forming a cluster by
//! joining all at once, writes through followers, linearizable follower reads, SIGKILL of the
//! leader, restart and catch-up from disk, catch-up by snapshot install after the log was
//! purged, removal, rejected writes, and a clean SIGTERM restart.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::procs::{Proc, ProcRoot, eventually, start_three, voters};
use ahnlich_raft::proto::admin::{NodeIds, NodeSpec};
use ahnlich_raft::proto::ahnlich::db::query as q;
use ahnlich_raft::proto::ahnlich::keyval::{DbStoreEntry, StoreKey, StoreValue};
use ahnlich_raft::proto::ahnlich::metadata::{MetadataValue, metadata_value};
use ahnlich_raft::proto::ahnlich::predicates::{
    Equals, In, Predicate, PredicateCondition, predicate, predicate_condition,
};
use ahnlich_raft::proto::ahnlich::services::db_service::db_service_client::DbServiceClient;
use tonic::transport::Channel;

const STORE: &str = "vectors";
const DIM: usize = 4;

fn key(i: u64) -> Vec<f32> {
    vec![i as f32, 1.0, (i % 7) as f32, 0.5]
}

fn entry(i: u64) -> DbStoreEntry {
    let tag = MetadataValue { value: Some(metadata_value::Value::RawString(format!("t{}", i % 3))) };
    DbStoreEntry {
        key: Some(StoreKey { key: key(i) }),
        value: Some(StoreValue { value: BTreeMap::from([("tag".to_string(), tag)]) }),
    }
}

fn local<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert("x-ahnlich-read-consistency", "local".parse().expect("ascii"));
    r
}

async fn create_store(db: &mut DbServiceClient<Channel>) {
    db.create_store(q::CreateStore {
        store: STORE.into(),
        dimension: DIM as u32,
        create_predicates: vec!["tag".into()],
        error_if_exists: true,
        ..Default::default()
    })
    .await
    .expect("create store");
}

/// Sets entries `range` in one request, retrying while no leader is known.
async fn set(db: &mut DbServiceClient<Channel>, range: std::ops::Range<u64>) {
    let inputs: Vec<_> = range.clone().map(entry).collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = db.set(q::Set { store: STORE.into(), inputs: inputs.clone(), ..Default::default() }).await;
        match r {
            Ok(_) => return,
            Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(s) => panic!("set {range:?}: {s}"),
        }
    }
}

async fn has_key(db: &mut DbServiceClient<Channel>, i: u64, consistency_local: bool) -> bool {
    let msg = q::GetKey { store: STORE.into(), keys: vec![StoreKey { key: key(i) }], ..Default::default() };
    let r = if consistency_local { db.get_key(local(msg)).await } else { db.get_key(msg).await };
    r.map(|r| r.into_inner().entries.len() == 1).unwrap_or(false)
}

async fn store_size(p: &Proc) -> Option<u64> {
    let mut db = p.db().await;
    let info = db.get_store(local(q::GetStore { store: STORE.into(), ..Default::default() })).await.ok()?;
    Some(info.into_inner().len)
}

/// The id of a node that says it leads (waits up to 15 s for one; a killed node is skipped).
async fn current_leader(procs: &[Proc]) -> u64 {
    eventually(Duration::from_secs(15), "a leader", || async {
        for p in procs {
            if let Some(s) = p.status().await
                && s.role == "leader"
            {
                return Some(s.id);
            }
        }
        None
    })
    .await
}

/// Every key in the store on `p` (a local read), or `None` while it does not answer.
async fn all_keys(p: &Proc) -> Option<std::collections::BTreeSet<u64>> {
    let tags =
        (0..3).map(|t| MetadataValue { value: Some(metadata_value::Value::RawString(format!("t{t}"))) }).collect();
    let any_tag = PredicateCondition {
        kind: Some(predicate_condition::Kind::Value(Predicate {
            kind: Some(predicate::Kind::In(In { key: "tag".into(), values: tags })),
        })),
    };
    let mut db = p.db().await;
    let got =
        db.get_pred(local(q::GetPred { store: STORE.into(), condition: Some(any_tag), ..Default::default() })).await;
    let entries = got.ok()?.into_inner().entries;
    Some(entries.iter().filter_map(|e| e.key.as_ref().map(|k| k.key[0] as u64)).collect())
}

/// Waits until `p` reports `n` voters and a leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_replicate_fail_over_catch_up_and_shrink() {
    let root = ProcRoot::new();
    // Small snapshots and nothing kept behind them, so a late joiner must be sent a snapshot.
    let flags = ["--snapshot-every", "40", "--keep-behind-snapshot", "0"];
    // Two nodes join through the same member at the same moment.
    let [n1, n2, n3] = start_three(root.path(), &flags);
    let status = voters(&n1, 3).await;
    assert_eq!(status.members.len(), 3, "{status:?}");

    // Writes through a follower.
    let follower = [&n1, &n2, &n3].into_iter().find(|p| Some(p.id) != status.leader_id).expect("a follower");
    let mut via_follower = follower.db().await;
    create_store(&mut via_follower).await;
    set(&mut via_follower, 0..10).await;
    for p in [&n1, &n2, &n3] {
        eventually(Duration::from_secs(10), "the first writes on every node", || async {
            (store_size(p).await == Some(10)).then_some(())
        })
        .await;
    }

    // A linearizable read from one follower sees a write acknowledged by another node just before.
    let others: Vec<&Proc> = [&n1, &n2, &n3].into_iter().filter(|p| p.id != follower.id).collect();
    let mut reader = others[0].db().await;
    for i in 10..30 {
        set(&mut via_follower, i..i + 1).await;
        assert!(has_key(&mut reader, i, false).await, "linearizable read on node {} missed key {i}", others[0].id);
    }

    // SIGKILL the leader; a new one is elected and writes go on.
    let leader_id = n1.status().await.and_then(|s| s.leader_id).expect("leader");
    let mut procs = vec![n1, n2, n3];
    let killed = procs.iter().position(|p| p.id == leader_id).expect("leader is ours");
    procs[killed].kill();
    let killed_at = Instant::now();
    let survivor = if killed == 0 { 1 } else { 0 };
    let new_leader = eventually(Duration::from_secs(10), "a new leader", || async {
        let s = procs[survivor].status().await?;
        s.leader_id.filter(|l| *l != leader_id)
    })
    .await;
    println!("new leader {new_leader} elected {:?} after SIGKILL of leader {leader_id}", killed_at.elapsed());
    let mut db = procs[survivor].db().await;
    for i in 30..130 {
        set(&mut db, i..i + 1).await;
    }

    // The killed node restarts from disk and catches up.
    procs[killed].restart();
    eventually(Duration::from_secs(20), "the restarted node to catch up", || async {
        (store_size(&procs[killed]).await == Some(130)).then_some(())
    })
    .await;

    // A node joining after the log was purged is sent a snapshot.
    let leader_status = procs[survivor].status().await.expect("status");
    assert!(leader_status.purged_index.is_some(), "the log should have been purged: {leader_status:?}");
    let n4 = Proc::start(root.path(), 4, Some(procs[survivor].addr), &flags);
    voters(&procs[survivor], 4).await;
    eventually(Duration::from_secs(20), "the late joiner to hold everything", || async {
        (store_size(&n4).await == Some(130)).then_some(())
    })
    .await;
    let s4 = n4.status().await.expect("status");
    assert!(s4.snapshot_index.is_some(), "node 4 should have installed a snapshot: {s4:?}");
    let mut db4 = n4.db().await;
    assert!(has_key(&mut db4, 0, true).await && has_key(&mut db4, 129, true).await);

    // `remove` shrinks the cluster back to three.
    let mut admin = procs[survivor].admin().await;
    let after = admin.remove(NodeIds { ids: vec![4] }).await.expect("remove").into_inner();
    assert!(!after.members.iter().any(|m| m.id == 4), "{after:?}");
    voters(&procs[survivor], 3).await;
    drop(n4);

    // A graceful stop of every node exits 0; a restart of all of them serves everything.
    for p in procs.iter_mut() {
        let status = p.terminate();
        assert!(status.success(), "node {} exited with {status}", p.id);
    }
    for p in procs.iter_mut() {
        p.restart();
    }
    voters(&procs[0], 3).await;
    let mut db = procs[2].db().await;
    set(&mut db, 130..131).await;
    for p in &procs {
        eventually(Duration::from_secs(10), "every write after a full restart", || async {
            (store_size(p).await == Some(131)).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_writes_get_clear_errors_and_the_cluster_keeps_serving() {
    let root = ProcRoot::new();
    let flags = ["--max-message-bytes", "1048576"];
    let [n1, n2, n3] = start_three(root.path(), &flags);
    let status = voters(&n1, 3).await;
    let follower = [&n1, &n2, &n3].into_iter().find(|p| Some(p.id) != status.leader_id).expect("a follower");
    let mut db = follower.db().await;
    create_store(&mut db).await;

    // The `cluster` command line reports the same cluster.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ahnlich-raft"))
        .args(["cluster", "--addr", &follower.addr.to_string(), "status"])
        .output()
        .expect("run cluster status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("node {} at {}: follower", follower.id, follower.addr)), "{text}");
    let members: Vec<&str> = text.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(members.len(), 3, "{text}");
    assert_eq!(members.iter().filter(|l| l.contains(" leader ")).count(), 1, "{text}");

    let dup = db
        .create_store(q::CreateStore { store: STORE.into(), dimension: 4, error_if_exists: true, ..Default::default() })
        .await
        .expect_err("duplicate store");
    assert_eq!(dup.code(), tonic::Code::AlreadyExists, "{dup:?}");
    let missing = db
        .set(q::Set { store: "nope".into(), inputs: vec![entry(1)], ..Default::default() })
        .await
        .expect_err("missing store");
    assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");
    let wrong_dim = DbStoreEntry { key: Some(StoreKey { key: vec![1.0, 2.0] }), value: entry(1).value };
    let dim = db
        .set(q::Set { store: STORE.into(), inputs: vec![wrong_dim], ..Default::default() })
        .await
        .expect_err("wrong dimension");
    assert_eq!(dim.code(), tonic::Code::InvalidArgument, "{dim:?}");
    assert!(dim.message().contains('4') && dim.message().contains('2'), "names both dimensions: {dim:?}");
    let no_value = Predicate { kind: Some(predicate::Kind::Equals(Equals { key: "tag".into(), value: None })) };
    let bad_pred = db
        .del_pred(q::DelPred {
            store: STORE.into(),
            condition: Some(PredicateCondition { kind: Some(predicate_condition::Kind::Value(no_value)) }),
            ..Default::default()
        })
        .await
        .expect_err("malformed predicate");
    assert_eq!(bad_pred.code(), tonic::Code::InvalidArgument, "{bad_pred:?}");
    // 3,000 entries of 128 floats: about 1.6 MB, over the 1 MiB limit.
    let big: Vec<DbStoreEntry> =
        (0..3000).map(|i| DbStoreEntry { key: Some(StoreKey { key: vec![i as f32; 128] }), value: None }).collect();
    let oversize =
        db.set(q::Set { store: STORE.into(), inputs: big, ..Default::default() }).await.expect_err("oversize");
    assert!(
        matches!(oversize.code(), tonic::Code::OutOfRange | tonic::Code::ResourceExhausted),
        "oversize: {oversize:?}"
    );

    // A node that bootstrapped a cluster of its own is not added to this one.
    let loner = Proc::start(root.path(), 9, None, &flags);
    voters(&loner, 1).await;
    let mut admin = follower.admin().await;
    let foreign = admin
        .add_learner(NodeSpec { id: 9, addr: loner.addr.to_string() })
        .await
        .expect_err("a node of another cluster");
    assert_eq!(foreign.code(), tonic::Code::FailedPrecondition, "{foreign:?}");
    assert!(foreign.message().contains("another cluster"), "{foreign:?}");
    drop(loner);

    // A node started without bootstrapping is added by hand: `cluster add-learner`, `promote`.
    let manual = Proc::start(root.path(), 5, None, &["--max-message-bytes", "1048576", "--no-bootstrap"]);
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ahnlich-raft"))
            .args(["cluster", "--addr", &follower.addr.to_string()])
            .args(args)
            .output()
            .expect("run cluster");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{args:?}: {text}{}", String::from_utf8_lossy(&out.stderr));
        text
    };
    let outside = |p: &Proc| {
        let addr = p.addr;
        async move {
            let mut db = DbServiceClient::new(crate::support::procs::channel(addr).await);
            db.get_store(local(q::GetStore { store: STORE.into(), ..Default::default() })).await.err()
        }
    };
    eventually(Duration::from_secs(10), "node 5 to answer", || manual.status()).await;
    let not_yet = outside(&manual).await.expect("a node outside the cluster refuses reads");
    assert_eq!(not_yet.code(), tonic::Code::Unavailable, "{not_yet:?}");
    assert!(not_yet.message().contains("not part of a cluster yet"), "{not_yet:?}");
    let added = cli(&["add-learner", "--id", "5", "--node-addr", &manual.addr.to_string()]);
    assert!(added.contains(&format!("5  learner {}", manual.addr)), "{added}");
    let promoted = cli(&["promote", "5"]);
    assert!(promoted.contains(&format!("5  voter   {}", manual.addr)), "{promoted}");
    let removed = cli(&["remove", "5"]);
    assert!(!removed.contains(&manual.addr.to_string()), "{removed}");
    // The removed node no longer answers, not even a local read from its stale state.
    let gone = eventually(Duration::from_secs(10), "node 5 to know it was removed", || async {
        outside(&manual).await.filter(|e| e.code() == tonic::Code::FailedPrecondition)
    })
    .await;
    assert!(gone.message().contains("node 5 was removed"), "{gone:?}");
    println!("a removed node answers: {}", gone.message());
    let status = manual.status().await.expect("status");
    assert!(status.outside.contains("node 5 was removed"), "{status:?}");
    // Added back, it serves again.
    cli(&["add-learner", "--id", "5", "--node-addr", &manual.addr.to_string()]);
    eventually(Duration::from_secs(10), "node 5 to serve again", || async {
        outside(&manual).await.is_none().then_some(())
    })
    .await;
    cli(&["remove", "5"]);
    drop(manual);

    // Nothing was applied, and good writes still go through.
    set(&mut db, 0..5).await;
    for p in [&n1, &n2, &n3] {
        eventually(Duration::from_secs(10), "exactly the good writes", || async {
            (store_size(p).await == Some(5)).then_some(())
        })
        .await;
    }
    // SIGTERM of the leader hands leadership over before it exits.
    let leader = n1.status().await.and_then(|s| s.leader_id).expect("leader");
    let mut nodes = [n1, n2, n3];
    nodes.sort_by_key(|p| p.id != leader);
    let status = nodes[0].terminate();
    assert!(status.success(), "the leader exited with {status}");
    let said = nodes[0].stdout();
    assert!(said.contains("stopping: handed leadership to node"), "{said}");
    let next = eventually(Duration::from_secs(10), "a new leader", || async {
        nodes[1].status().await?.leader_id.filter(|l| *l != leader)
    })
    .await;
    assert!(said.contains(&format!("handed leadership to node {next}")), "{said} (now led by {next})");
    for p in nodes[1..].iter_mut() {
        let status = p.terminate();
        assert!(status.success(), "node {} exited with {status}", p.id);
    }
    for p in nodes.iter_mut() {
        p.restart();
    }
    let [n1, n2, n3] = &nodes;
    voters(n2, 3).await;
    for p in [n1, n2, n3] {
        eventually(Duration::from_secs(10), "state after a clean restart", || async {
            (store_size(p).await == Some(5)).then_some(())
        })
        .await;
    }
}

/// Writers keep sending single-key Sets through every node while the leader is SIGKILLed and
/// restarted, six times (`AHNLICH_RAFT_KILL_ROUNDS` for more); half of the time it comes back
/// at once, before anyone else could be elected. Then all three are SIGKILLed together and
/// restarted. Every acknowledged key must be on every node at
/// the end, and the nodes must hold exactly the same keys (an unacknowledged write may or may not
/// have landed).
///
/// This caught openraft's default "leader restore": a leader restarted into its old term
/// reused (term, index) ids that its followers already held with other entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_repeated_leader_kills() {
    let root = ProcRoot::new();
    let mut procs = start_three(root.path(), &["--snapshot-every", "150", "--snapshot-log-percent", "0"]);
    voters(&procs[0], 3).await;
    create_store(&mut procs[0].db().await).await;
    let addrs = procs.each_ref().map(|p| p.addr);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3u64 {
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = 1_000_000 * (w + 1) + i;
                i += 1;
                let addr = addrs[(i % 3) as usize];
                let Ok(ch) =
                    tonic::transport::Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await
                else {
                    continue;
                };
                let mut req =
                    tonic::Request::new(q::Set { store: STORE.into(), inputs: vec![entry(key)], ..Default::default() });
                req.set_timeout(Duration::from_secs(3));
                if DbServiceClient::new(ch).set(req).await.is_ok() {
                    acked.push(key);
                }
            }
            acked
        }));
    }
    // Odd rounds bring the killed leader back at once, before the others can elect (so it
    // restarts into the term it led); even rounds wait until another node leads.
    let rounds = std::env::var("AHNLICH_RAFT_KILL_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(6u32);
    let mut leaders = Vec::new();
    for round in 0..rounds {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let leader = current_leader(&procs).await;
        leaders.push(leader);
        let ix = procs.iter().position(|p| p.id == leader).expect("ours");
        procs[ix].kill();
        if round % 2 == 0 {
            eventually(Duration::from_secs(15), "another leader", || async {
                let next = current_leader(&procs).await;
                (next != leader).then_some(())
            })
            .await;
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        procs[ix].restart();
    }
    // Last, the whole cluster dies at once mid-write, and comes back.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for p in procs.iter_mut() {
        p.kill();
    }
    for p in procs.iter_mut() {
        p.restart();
    }
    current_leader(&procs).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.expect("writer"));
    }
    println!("{} writes acknowledged across leader kills of nodes {leaders:?}", acked.len());
    assert!(acked.len() > 30, "too few writes were acknowledged: {}", acked.len());

    // Writes a client gave up on may still be in the log; wait until nothing is pending: every
    // node has applied the whole of the same log. Then every node must hold the same keys,
    // including every acknowledged one.
    let applied = eventually(Duration::from_secs(30), "the nodes to apply the same whole log", || async {
        let mut applied = Vec::new();
        for p in procs.iter() {
            let s = p.status().await?;
            s.leader_id?;
            (s.last_log_index == s.last_applied).then_some(())?;
            applied.push(s.last_applied?);
        }
        applied.windows(2).all(|w| w[0] == w[1]).then_some(applied[0])
    })
    .await;
    let mut replicas = Vec::new();
    for p in procs.iter() {
        replicas.push(all_keys(p).await.expect("read every key"));
    }
    let acked: std::collections::BTreeSet<u64> = acked.into_iter().collect();
    for (p, keys) in procs.iter().zip(&replicas) {
        let lost: Vec<_> = acked.difference(keys).collect();
        assert!(lost.is_empty(), "node {} lost acknowledged writes {lost:?} (applied {applied})", p.id);
    }
    for (p, keys) in procs.iter().zip(&replicas).skip(1) {
        let only_here: Vec<_> = keys.symmetric_difference(&replicas[0]).collect();
        assert!(only_here.is_empty(), "nodes 1 and {} differ in {only_here:?} (applied {applied})", p.id);
    }
}
