//! A real single-node Raft (openraft with the WAL log store and the engine state machine):
//! every committed command answers with the engine's own result, user errors included, and
//! after restarts at random points, with snapshots and log purges in between, the recovered
//! state equals that of an engine that never restarted.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::support::node::start;
use ahnlich_raft::engine::{
    Command, Condition, Engine, Entry, HnswConfig, Metadata, MetadataValue, NonLinearIndex, Predicate, StoreRef,
};
use ahnlich_raft::raft::logged::LoggedCommand;
use ahnlich_raft::wal::sim_fs::SimRng;
use openraft::{BasicNode, ServerState};

/// The last log index covered by the newest snapshot file in `dir`.
fn newest_snapshot_index(dir: &Path) -> Option<u64> {
    let names = std::fs::read_dir(dir).ok()?;
    names.filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".snap")?.split('-').next()?.parse().ok()).max()
}

fn random_command(rng: &mut SimRng) -> Command {
    let store = StoreRef::public(["a", "b"][rng.below(2) as usize]);
    let key = |rng: &mut SimRng| (0..3).map(|_| rng.below(7) as f32 - 3.0).collect::<Vec<f32>>();
    let value =
        |rng: &mut SimRng| Metadata::from([("c".to_string(), MetadataValue::RawString(rng.below(3).to_string()))]);
    let cond = |rng: &mut SimRng| {
        Condition::Value(Predicate::Equals {
            key: "c".into(),
            value: MetadataValue::RawString(rng.below(3).to_string()),
        })
    };
    match rng.below(9) {
        0 => Command::CreateStore {
            store,
            dimension: 3,
            predicates: vec!["c".into()],
            non_linear: vec![NonLinearIndex::Hnsw(HnswConfig { m: 4, ef_construction: 16, ..HnswConfig::default() })],
            error_if_exists: rng.coin(),
        },
        1..=4 => Command::Set {
            store,
            entries: (0..rng.below(10)).map(|_| Entry { key: key(rng), value: value(rng) }).collect(),
        },
        // A wrong dimension: a user error that must come back as the response.
        5 => Command::Set { store, entries: vec![Entry { key: vec![1.0], value: Metadata::new() }] },
        6 => Command::DelKey { store, keys: (0..3).map(|_| key(rng)).collect() },
        7 => Command::Upsert {
            store,
            condition: cond(rng),
            new_key: None,
            new_value: Some(value(rng)),
            merge_metadata: true,
        },
        _ => Command::DelPred { store, condition: cond(rng) },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_with_snapshots_recover_the_state_of_a_node_that_never_restarted() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let reference = Engine::default();
    let mut rng = SimRng::new(2024);
    let mut user_errors = 0;
    let mut last_index = 0;
    let mut snapshot_at: Option<u64> = None;
    for round in 0..8 {
        let (raft, sm, restored) = start(dir.path()).await;
        // Opening restores the newest snapshot on disk before openraft replays the log after it.
        let newest = newest_snapshot_index(&dir.path().join("snapshots"));
        assert_eq!(restored, newest, "round {round}: restored from the newest snapshot");
        assert!(newest >= snapshot_at, "round {round}: a triggered snapshot is on disk");
        if round == 0 {
            raft.initialize(BTreeMap::from([(1u64, BasicNode::default())])).await.expect("initialize");
        }
        raft.wait(Some(Duration::from_secs(10))).state(ServerState::Leader, "leader").await.expect("leader");
        raft.wait(Some(Duration::from_secs(10)))
            .applied_index_at_least(Some(last_index), "replayed")
            .await
            .expect("replay committed entries");
        assert_eq!(sm.engine().digest(), reference.digest(), "round {round}: recovered state differs");

        for _ in 0..200 + rng.below(300) {
            let cmd = random_command(&mut rng);
            let response = raft.client_write(LoggedCommand::shared(cmd.clone())).await.expect("client write");
            let expected = reference.apply(&cmd);
            user_errors += usize::from(expected.is_err());
            assert_eq!(response.data, expected, "round {round}: {cmd}");
            last_index = response.log_id.index;
            if rng.below(25) == 0 {
                raft.trigger().snapshot().await.expect("trigger snapshot");
                raft.wait(Some(Duration::from_secs(10)))
                    .metrics(|m| m.snapshot.is_some_and(|s| s.index == last_index), "snapshot built")
                    .await
                    .expect("snapshot");
                snapshot_at = Some(last_index);
            }
        }
        assert_eq!(sm.engine().digest(), reference.digest());
        // A duplicate CreateStore with error_if_exists answers AlreadyExists, and the next
        // command applies normally.
        let dup = Command::CreateStore {
            store: StoreRef::public("dup"),
            dimension: 2,
            predicates: vec![],
            non_linear: vec![],
            error_if_exists: true,
        };
        let first = raft.client_write(LoggedCommand::shared(dup.clone())).await.expect("write").data;
        let second = raft.client_write(LoggedCommand::shared(dup.clone())).await.expect("write").data;
        assert_eq!(first.is_ok(), round == 0, "round {round}");
        assert_eq!(second.map_err(|e| e.code()), Err(ahnlich_raft::engine::ErrorCode::AlreadyExists));
        reference.apply(&dup).ok();
        let next = Command::Set {
            store: StoreRef::public("dup"),
            entries: vec![Entry { key: vec![round as f32, 0.0], value: Metadata::new() }],
        };
        let applied = raft.client_write(LoggedCommand::shared(next.clone())).await.expect("write");
        assert_eq!(applied.data, reference.apply(&next));
        last_index = applied.log_id.index;
        raft.shutdown().await.expect("shutdown");
        drop((raft, sm));
    }
    assert!(user_errors > 10, "the run mixed in user errors ({user_errors})");
    let snapshots = std::fs::read_dir(dir.path().join("snapshots")).expect("dir").count();
    assert!(snapshots >= 1, "snapshots were taken");
}
