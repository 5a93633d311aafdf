//! SIGKILL of a whole single-node Raft: a child process runs the node and applies a fixed
//! command sequence, printing each command it saw acknowledged; the parent kills it at random
//! moments (also mid-snapshot), reopens the node and checks that the state equals a reference
//! engine that applied exactly the recovered prefix, which holds every acknowledged command.
//!
//! Resuming: each data command `i` is followed by a marker command that records `i + 1` in a
//! `progress` store, so a reopened node knows where it stands. A kill between the two leaves
//! command `i` applied and unmarked: it is issued again, right after itself, and every command
//! of this workload leaves the same state when repeated back to back.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::child::{AckingChild, ack};
use crate::support::node::start;
use ahnlich_raft::engine::{
    Command, Condition, Engine, Entry, HnswConfig, Metadata, MetadataValue, NonLinearIndex, Predicate, Query, Response,
    StoreRef,
};
use ahnlich_raft::raft::logged::LoggedCommand;
use ahnlich_raft::wal::sim_fs::SimRng;
use openraft::{BasicNode, ServerState};

const DIR_ENV: &str = "AHNLICH_RAFT_CRASH_DIR";
const KILLS: usize = 12;

/// Data command `i` of the workload, the same in every process.
fn command(i: u64) -> Command {
    let mut rng = SimRng::new(i.wrapping_mul(0x9e37_79b9) ^ 0x5eed);
    let store = StoreRef::public(["a", "b"][rng.below(2) as usize]);
    let key = |rng: &mut SimRng| (0..3).map(|_| rng.below(7) as f32 - 3.0).collect::<Vec<f32>>();
    let value = |v: u64| Metadata::from([("c".to_string(), MetadataValue::RawString(v.to_string()))]);
    if i < 2 {
        return Command::CreateStore {
            store: StoreRef::public(["a", "b"][i as usize]),
            dimension: 3,
            predicates: vec!["c".into()],
            non_linear: vec![NonLinearIndex::Hnsw(HnswConfig { m: 4, ef_construction: 16, ..HnswConfig::default() })],
            error_if_exists: true,
        };
    }
    match rng.below(6) {
        0..=2 => Command::Set {
            store,
            entries: (0..1 + rng.below(8)).map(|_| Entry { key: key(&mut rng), value: value(rng.below(3)) }).collect(),
        },
        3 => Command::DelKey { store, keys: (0..3).map(|_| key(&mut rng)).collect() },
        4 => Command::DelPred {
            store,
            condition: Condition::Value(Predicate::Equals {
                key: "c".into(),
                value: MetadataValue::RawString(rng.below(3).to_string()),
            }),
        },
        // A user error, repeated harmlessly.
        _ => Command::Set { store, entries: vec![Entry { key: vec![0.0], value: Metadata::new() }] },
    }
}

fn progress_store() -> StoreRef {
    StoreRef::public("progress")
}

/// The marker recording that commands `0..n` were applied.
fn marker(n: u64) -> Command {
    Command::Set {
        store: progress_store(),
        entries: vec![Entry {
            key: vec![0.0],
            value: Metadata::from([("n".into(), MetadataValue::RawString(n.to_string()))]),
        }],
    }
}

fn progress(e: &Engine) -> u64 {
    let q = Query::GetKey { store: progress_store(), keys: vec![vec![0.0]] };
    match e.query(&q) {
        Ok(Response::Entries(v)) => match v.first().and_then(|x| x.value.get("n")) {
            Some(MetadataValue::RawString(n)) => n.parse().unwrap_or(0),
            _ => 0,
        },
        _ => 0,
    }
}

fn setup() -> Command {
    Command::CreateStore {
        store: progress_store(),
        dimension: 1,
        predicates: vec![],
        non_linear: vec![],
        error_if_exists: false,
    }
}

/// The child's body: a no-op unless started by the parent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child_node() {
    let Some(dir) = std::env::var_os(DIR_ENV) else { return };
    let dir = std::path::PathBuf::from(dir);
    let fresh = !dir.join("log").exists();
    let (raft, sm, _) = start(&dir).await;
    if fresh {
        raft.initialize(BTreeMap::from([(1u64, BasicNode::default())])).await.expect("initialize");
    }
    raft.wait(Some(Duration::from_secs(20))).state(ServerState::Leader, "leader").await.expect("leader");
    raft.client_write(LoggedCommand::shared(setup())).await.expect("setup");
    let mut next = progress(&sm.engine());
    let mut rng = SimRng::new(next ^ 0xabcdef);
    loop {
        raft.client_write(LoggedCommand::shared(command(next))).await.expect("command");
        raft.client_write(LoggedCommand::shared(marker(next + 1))).await.expect("marker");
        next += 1;
        ack(next);
        if rng.below(20) == 0 {
            raft.trigger().snapshot().await.expect("snapshot");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_node_never_loses_an_acknowledged_command() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let mut rng = SimRng::new(77);
    let mut acked_total = 0u64;
    for kill in 0..KILLS {
        let child = AckingChild::spawn(module_path!(), "crash_child_node", &[(DIR_ENV, dir.path().as_os_str())]);
        tokio::time::sleep(Duration::from_millis(400 + rng.below(600))).await;
        acked_total = acked_total.max(child.kill());

        let (raft, sm, _) = start(dir.path()).await;
        raft.wait(Some(Duration::from_secs(20))).state(ServerState::Leader, "leader").await.expect("leader");
        // Wait until every committed entry is applied: a blank entry of the new term commits
        // behind all of them.
        let blank = raft.write_blank().await.expect("blank").log_id.index;
        raft.wait(Some(Duration::from_secs(20))).applied_index_at_least(Some(blank), "applied").await.expect("applied");
        let engine = sm.engine();
        let n = progress(&engine);
        assert!(n >= acked_total, "kill {kill}: recovered progress {n} but {acked_total} were acknowledged");
        let reference = Engine::default();
        reference.apply(&setup()).expect("setup");
        for i in 0..n {
            let _ = reference.apply(&command(i));
            reference.apply(&marker(i + 1)).expect("marker");
        }
        // Command `n` may have been applied without its marker; then it runs again next time.
        let applied_one_more = {
            let with_next = Engine::default();
            with_next.apply(&setup()).expect("setup");
            for i in 0..n {
                let _ = with_next.apply(&command(i));
                with_next.apply(&marker(i + 1)).expect("marker");
            }
            let _ = with_next.apply(&command(n));
            with_next.digest()
        };
        let got = engine.digest();
        assert!(
            got == reference.digest() || got == applied_one_more,
            "kill {kill}: the state after {n} commands differs from the reference"
        );
        raft.shutdown().await.expect("shutdown");
        drop((raft, sm, engine));
    }
    assert!(acked_total > 50, "the children made progress: {acked_total}");
}
