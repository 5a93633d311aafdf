//! Linearizability, checked on recorded histories (the method of Jepsen's Knossos): concurrent
//! clients write, read, delete and compare-and-set a few keys through every node of an
//! in-process cluster while a seeded schedule cuts, delays and drops its Raft messages; every
//! operation's invocation, completion and outcome is recorded (unknown when the client could
//! not tell), and a checker searches for one order of all of them that a single register per
//! key would explain.
//!
//! Each key is a store holding at most one entry, its value in the entry's metadata; a
//! compare-and-set is an Upsert conditioned on the current value.
//!
//! `AHNLICH_RAFT_HISTORY_SECONDS` (default 8) sets each history's length and
//! `AHNLICH_RAFT_HISTORY_SEEDS` (default 1) how many seeded histories run; `…_SEED=N` replays one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::cluster::Cluster;
use crate::support::linearizability::{Call, Op, Outcome, check};
use ahnlich_raft::proto::ahnlich::db::query as q;
use ahnlich_raft::proto::ahnlich::keyval::{DbStoreEntry, StoreKey, StoreValue};
use ahnlich_raft::proto::ahnlich::metadata::{MetadataValue, metadata_value};
use ahnlich_raft::proto::ahnlich::predicates::{Equals, Predicate, PredicateCondition, predicate, predicate_condition};
use ahnlich_raft::proto::ahnlich::services::db_service::db_service_client::DbServiceClient;
use ahnlich_raft::raft::net_faults::NetFaults;
use ahnlich_raft::wal::sim_fs::SimRng as Rng;
use tonic::transport::Channel;

const KEYS: usize = 3;
const CLIENTS: usize = 8;
const OP_TIMEOUT: Duration = Duration::from_secs(2);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn store(key: usize) -> String {
    format!("k{key}")
}

/// The one entry's key vector in every store.
fn entry_key() -> StoreKey {
    StoreKey { key: vec![1.0, 1.0] }
}

fn text(v: u64) -> MetadataValue {
    MetadataValue { value: Some(metadata_value::Value::RawString(v.to_string())) }
}

fn holding(v: u64) -> StoreValue {
    StoreValue { value: HashMap::from([("v".to_string(), text(v))]) }
}

fn timed<T>(message: T, local: bool) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.set_timeout(OP_TIMEOUT);
    if local {
        r.metadata_mut().insert("x-ahnlich-read-consistency", "local".parse().expect("ascii"));
    }
    r
}

/// Every operation the clients issued, with times since the history began.
struct Recorder {
    began: Instant,
    ops: Mutex<Vec<Op>>,
}

impl Recorder {
    fn new() -> Self {
        Self { began: Instant::now(), ops: Mutex::new(Vec::new()) }
    }

    fn now(&self) -> Duration {
        self.began.elapsed()
    }

    fn record(&self, op: Op) {
        self.ops.lock().expect("history").push(op);
    }

    fn history(&self) -> Vec<Op> {
        self.ops.lock().expect("history").clone()
    }
}

/// Sends `call` on `key` through `db` and returns what the client can tell of its outcome
/// (`None`: a read that failed, which changed nothing and is left out of the history).
async fn perform(db: &mut DbServiceClient<Channel>, key: usize, call: Call, local_reads: bool) -> Option<Outcome> {
    let store = store(key);
    match call {
        Call::Write(v) => {
            let entry = DbStoreEntry { key: Some(entry_key()), value: Some(holding(v)) };
            let set = q::Set { store, inputs: vec![entry], ..Default::default() };
            Some(db.set(timed(set, false)).await.map_or(Outcome::Unknown, |_| Outcome::Done))
        }
        Call::Read => {
            let get = q::GetKey { store, keys: vec![entry_key()], ..Default::default() };
            let found = db.get_key(timed(get, local_reads)).await.ok()?.into_inner().entries;
            let value =
                found.first().and_then(|e| e.value.as_ref()).and_then(|v| v.value.get("v")).map(|m| match &m.value {
                    Some(metadata_value::Value::RawString(s)) => s.parse::<u64>().expect("a number was written"),
                    other => panic!("unexpected value {other:?}"),
                });
            Some(Outcome::Value(value))
        }
        Call::Delete => {
            let del = q::DelKey { store, keys: vec![entry_key()], ..Default::default() };
            Some(match db.del_key(timed(del, false)).await {
                Ok(r) => Outcome::Deleted(r.into_inner().deleted_count == 1),
                Err(_) => Outcome::Unknown,
            })
        }
        Call::Cas { expected, new } => {
            let equals = Predicate {
                kind: Some(predicate::Kind::Equals(Equals { key: "v".into(), value: Some(text(expected)) })),
            };
            let condition = PredicateCondition { kind: Some(predicate_condition::Kind::Value(equals)) };
            let upsert =
                q::Upsert { store, condition: Some(condition), new_value: Some(holding(new)), ..Default::default() };
            Some(match db.upsert(timed(upsert, false)).await {
                Ok(_) => Outcome::Done,
                // The engine's definite refusal: nothing matched, nothing changed.
                Err(s) if s.message().contains("matched 0") => Outcome::NotMatched,
                Err(_) => Outcome::Unknown,
            })
        }
    }
}

/// One client: random operations on random keys through random nodes until `stop`.
#[allow(clippy::too_many_arguments)]
async fn client(
    id: usize,
    nodes: Vec<(u64, SocketAddr)>,
    seed: u64,
    stop: Arc<AtomicBool>,
    recorder: Arc<Recorder>,
    last_written: Arc<Vec<AtomicU64>>,
    local_reads: bool,
) {
    let mut rng = Rng::new(seed ^ (id as u64).wrapping_mul(0x9E37_79B9));
    let mut dbs = Vec::new();
    for (node, addr) in &nodes {
        let ch = Channel::from_shared(format!("http://{addr}")).expect("uri").connect_lazy();
        dbs.push((*node, DbServiceClient::new(ch)));
    }
    let mut counter = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = rng.below(KEYS as u64) as usize;
        counter += 1;
        let fresh = (id as u64 + 1) * 1_000_000 + counter;
        let call = match rng.below(10) {
            0..=2 => Call::Write(fresh),
            3..=6 => Call::Read,
            7 => Call::Delete,
            _ => Call::Cas { expected: last_written[key].load(Ordering::Relaxed), new: fresh },
        };
        if let Call::Write(v) | Call::Cas { new: v, .. } = call {
            last_written[key].store(v, Ordering::Relaxed);
        }
        let (node, db) = &mut dbs[rng.below(nodes.len() as u64) as usize];
        let invoked = recorder.now();
        let outcome = perform(db, key, call, local_reads).await;
        let completed = recorder.now();
        if let Some(outcome) = outcome {
            recorder.record(Op { client: id, node: *node, key, call, outcome, invoked, completed });
        }
    }
}

/// What the fault schedule did, for the report.
#[derive(Debug, Default)]
struct FaultCounts {
    leader_isolated: u32,
    split: u32,
    one_way: u32,
    flapping: u32,
    slow_lossy: u32,
}

/// Injects a seeded sequence of network faults until `stop`, then heals.
async fn faults(
    cluster_leader: impl Fn() -> Option<u64>,
    faults: Arc<NetFaults>,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> FaultCounts {
    let mut rng = Rng::new(seed);
    let mut counts = FaultCounts::default();
    let pause = |rng: &mut Rng, lo: u64, hi: u64| Duration::from_millis(lo + rng.below(hi - lo));
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(pause(&mut rng, 200, 600)).await;
        let victim = cluster_leader().unwrap_or(1 + rng.below(3));
        let others: Vec<u64> = (1..=3).filter(|n| *n != victim).collect();
        match rng.below(5) {
            0 => {
                counts.leader_isolated += 1;
                faults.isolate(victim, &others);
                tokio::time::sleep(pause(&mut rng, 800, 2500)).await;
            }
            1 => {
                counts.split += 1;
                let lone = 1 + rng.below(3);
                faults.isolate(lone, &(1..=3).filter(|n| *n != lone).collect::<Vec<_>>());
                tokio::time::sleep(pause(&mut rng, 500, 2000)).await;
            }
            2 => {
                counts.one_way += 1;
                faults.cut_one_way(victim, others[rng.below(2) as usize]);
                tokio::time::sleep(pause(&mut rng, 500, 2000)).await;
            }
            3 => {
                counts.flapping += 1;
                for _ in 0..(3 + rng.below(5)) {
                    faults.isolate(victim, &others);
                    tokio::time::sleep(pause(&mut rng, 50, 300)).await;
                    faults.heal();
                    tokio::time::sleep(pause(&mut rng, 50, 300)).await;
                }
            }
            _ => {
                counts.slow_lossy += 1;
                faults.set_delay(pause(&mut rng, 5, 60));
                faults.set_drop_per_mille(50 + rng.below(200));
                tokio::time::sleep(pause(&mut rng, 500, 2000)).await;
            }
        }
        faults.heal();
    }
    faults.heal();
    counts
}

/// A history of `length` with `CLIENTS` clients under the seeded faults; returns it with the
/// fault counts once the cluster has healed, converged, and every key was read through every
/// node at the end (those final reads are part of the history).
async fn record_history(seed: u64, length: Duration, local_reads: bool) -> (Vec<Op>, FaultCounts) {
    let cluster = Arc::new(Cluster::start_with(3, |c| c.commit_wait = Duration::from_millis(1500)).await);
    let nodes: Vec<(u64, SocketAddr)> = (1..=3).map(|id| (id, cluster.node(id).addr())).collect();
    let mut setup = DbServiceClient::connect(format!("http://{}", nodes[0].1)).await.expect("connect");
    for key in 0..KEYS {
        let create = q::CreateStore { store: store(key), dimension: 2, error_if_exists: true, ..Default::default() };
        setup.create_store(create).await.expect("create a key's store");
    }
    let recorder = Arc::new(Recorder::new());
    let stop = Arc::new(AtomicBool::new(false));
    let last_written = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect::<Vec<_>>());
    let mut clients = Vec::new();
    for id in 0..CLIENTS {
        let (nodes, stop, recorder, last) = (nodes.clone(), stop.clone(), recorder.clone(), last_written.clone());
        clients.push(tokio::spawn(client(id, nodes, seed, stop, recorder, last, local_reads)));
    }
    let in_faults = cluster.clone();
    let fault_task = tokio::spawn(faults(move || in_faults.leader(), cluster.faults.clone(), seed, stop.clone()));
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client");
    }
    let counts = fault_task.await.expect("faults");
    cluster.faults.heal();

    // Healed: the replicas converge, and a final read of every key through every node joins
    // the history (so every acknowledged write must be present or explained by a later one).
    cluster
        .wait_for(Duration::from_secs(30), "the replicas to converge after healing", |c| {
            let status: Vec<_> = (1..=3).map(|id| c.node(id).status()).collect();
            let Some(leader) = status[0].leader_id else { return false };
            let lead = &status[leader as usize - 1];
            lead.role == "leader"
                && status.iter().all(|s| s.leader_id == Some(leader) && s.last_applied == lead.last_log_index)
        })
        .await;
    let digests: Vec<u64> = (1..=3).map(|id| cluster.node(id).state().engine().digest()).collect();
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "seed {seed}: the replicas differ after healing: {digests:?}");
    for (node, addr) in &nodes {
        let mut db = DbServiceClient::connect(format!("http://{addr}")).await.expect("connect");
        for key in 0..KEYS {
            let invoked = recorder.now();
            let outcome = perform(&mut db, key, Call::Read, false).await.expect("a final read after healing");
            recorder.record(Op {
                client: usize::MAX,
                node: *node,
                key,
                call: Call::Read,
                outcome,
                invoked,
                completed: recorder.now(),
            });
        }
    }
    let history = recorder.history();
    match Arc::try_unwrap(cluster) {
        Ok(cluster) => cluster.shutdown().await,
        Err(_) => panic!("the cluster is still shared"),
    }
    (history, counts)
}

fn summary(history: &[Op]) -> String {
    let count = |f: &dyn Fn(&Op) -> bool| history.iter().filter(|op| f(op)).count();
    format!(
        "{} operations: {} writes, {} reads, {} deletes, {} compare-and-sets ({} swapped, {} refused); {} unknown",
        history.len(),
        count(&|op| matches!(op.call, Call::Write(_))),
        count(&|op| op.call == Call::Read),
        count(&|op| op.call == Call::Delete),
        count(&|op| matches!(op.call, Call::Cas { .. })),
        count(&|op| matches!(op.call, Call::Cas { .. }) && op.outcome == Outcome::Done),
        count(&|op| op.outcome == Outcome::NotMatched),
        count(&|op| op.outcome == Outcome::Unknown),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_under_network_faults_are_linearizable() {
    let length = Duration::from_secs(env_u64("AHNLICH_RAFT_HISTORY_SECONDS", 8));
    let seeds: Vec<u64> = match std::env::var("AHNLICH_RAFT_HISTORY_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(one) => vec![one],
        None => (1..=env_u64("AHNLICH_RAFT_HISTORY_SEEDS", 1)).collect(),
    };
    for seed in seeds {
        let (history, faults) = record_history(seed, length, false).await;
        let checked = Instant::now();
        let verdict = check(&history);
        eprintln!("seed {seed}: {}; faults {faults:?}; checked in {:?}", summary(&history), checked.elapsed());
        if let Err(violation) = verdict {
            panic!("seed {seed} (replay with AHNLICH_RAFT_HISTORY_SEED={seed}): {violation}");
        }
        let swapped = history.iter().filter(|op| matches!(op.call, Call::Cas { .. }) && op.outcome == Outcome::Done);
        assert!(history.len() > 100 && swapped.count() > 0, "seed {seed}: too little happened: {}", summary(&history));
    }
}

/// The checker is worth something only if it fails: reads answered from a follower's local
/// state while it is cut off from the leader see stale values, and the checker must say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_catches_stale_local_reads_from_a_partitioned_follower() {
    let cluster = Cluster::start_with(3, |c| c.commit_wait = Duration::from_millis(1500)).await;
    let leader = cluster.leader().expect("leader");
    let follower = cluster.follower();
    let recorder = Recorder::new();
    let mut via_leader =
        DbServiceClient::connect(format!("http://{}", cluster.node(leader).addr())).await.expect("connect");
    let mut via_follower =
        DbServiceClient::connect(format!("http://{}", cluster.node(follower).addr())).await.expect("connect");
    via_leader
        .create_store(q::CreateStore { store: store(0), dimension: 2, ..Default::default() })
        .await
        .expect("create");
    let run = async |db: &mut DbServiceClient<Channel>, node: u64, call: Call, local: bool| {
        let invoked = recorder.now();
        let outcome = perform(db, 0, call, local).await.expect("answered");
        recorder.record(Op { client: node as usize, node, key: 0, call, outcome, invoked, completed: recorder.now() });
        outcome
    };
    assert_eq!(run(&mut via_leader, leader, Call::Write(1), false).await, Outcome::Done);
    cluster
        .wait_for(Duration::from_secs(10), "the follower to apply the first write", |c| {
            c.node(follower).status().last_applied == c.node(leader).status().last_applied
        })
        .await;
    cluster.faults.isolate(follower, &(1..=3).filter(|n| *n != follower).collect::<Vec<_>>());
    for v in 2..5 {
        assert_eq!(
            run(&mut via_leader, leader, Call::Write(v), false).await,
            Outcome::Done,
            "the majority takes writes"
        );
        run(&mut via_follower, follower, Call::Read, true).await;
    }
    let history = recorder.history();
    let violation = check(&history).expect_err("stale local reads are not linearizable");
    assert_eq!(violation.key, 0);
    assert_eq!(violation.stuck_on.call, Call::Read, "{violation}");
    eprintln!("as it should, the checker refused this history:\n{violation}");
    cluster.faults.heal();
    cluster.shutdown().await;
}

/// Hand-made histories with a known answer.
mod checker {
    use super::*;

    fn op(client: usize, call: Call, outcome: Outcome, from_ms: u64, to_ms: u64) -> Op {
        let ms = Duration::from_millis;
        Op { client, node: 1, key: 0, call, outcome, invoked: ms(from_ms), completed: ms(to_ms) }
    }

    #[test]
    fn sequential_and_overlapping_histories() {
        use Call::*;
        use Outcome::*;
        let ok = |h: Vec<Op>| assert!(check(&h).is_ok(), "{h:?}");
        let bad = |h: Vec<Op>| assert!(check(&h).is_err(), "{h:?}");
        ok(vec![op(1, Write(1), Done, 0, 10), op(2, Read, Value(Some(1)), 20, 30)]);
        bad(vec![op(1, Write(1), Done, 0, 10), op(2, Read, Value(None), 20, 30)]);
        // Overlapping: the read may come before or after the write.
        ok(vec![op(1, Write(1), Done, 0, 30), op(2, Read, Value(None), 10, 20)]);
        ok(vec![op(1, Write(1), Done, 0, 30), op(2, Read, Value(Some(1)), 10, 20)]);
        // Two reads in order cannot see the new value and then the old one.
        bad(vec![op(1, Write(1), Done, 0, 100), op(2, Read, Value(Some(1)), 10, 20), op(3, Read, Value(None), 30, 40)]);
        // An unknown write may have happened, or not, even long after.
        ok(vec![
            op(1, Write(1), Unknown, 0, 10),
            op(2, Read, Value(None), 20, 30),
            op(2, Read, Value(Some(1)), 40, 50),
        ]);
        bad(vec![
            op(1, Write(1), Unknown, 0, 10),
            op(2, Read, Value(Some(1)), 20, 30),
            op(2, Read, Value(None), 40, 50),
        ]);
        // Compare-and-set and delete.
        ok(vec![
            op(1, Write(1), Done, 0, 10),
            op(2, Cas { expected: 1, new: 2 }, Done, 20, 30),
            op(3, Cas { expected: 1, new: 3 }, NotMatched, 40, 50),
            op(1, Delete, Deleted(true), 60, 70),
            op(2, Delete, Deleted(false), 80, 90),
        ]);
        bad(vec![op(1, Write(1), Done, 0, 10), op(2, Cas { expected: 1, new: 2 }, NotMatched, 20, 30)]);
        bad(vec![op(1, Delete, Deleted(true), 0, 10)]);
        // Keys are checked separately: a history fine on each key is fine.
        let mut other_key = op(2, Read, Value(None), 20, 30);
        other_key.key = 1;
        ok(vec![op(1, Write(1), Done, 0, 10), other_key]);
    }
}
