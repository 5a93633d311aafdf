//! The state machine's use of snapshot files: an installed snapshot is what a restart finds,
//! and a damaged newest snapshot falls back only while the log covers the gap.

use ahnlich_raft::engine::{Command, Engine, Entry, Limits, Metadata, StoreRef};
use ahnlich_raft::raft::codec::log_id;
use ahnlich_raft::raft::logged::LoggedCommand;
use ahnlich_raft::raft::state_machine::{StartError, StateMachine};
use futures_util::stream;
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder};
use tempfile::TempDir;

fn set(n: usize, base: f32) -> Command {
    Command::Set {
        store: StoreRef::public("s"),
        entries: (0..n).map(|i| Entry { key: vec![base + i as f32, 1.0], value: Metadata::new() }).collect(),
    }
}

/// Applies commands at indexes `first..` of term 1.
async fn apply(sm: &mut StateMachine, first: u64, cmds: Vec<Command>) {
    let entries = cmds.into_iter().enumerate().map(|(i, c)| {
        Ok((
            openraft::Entry {
                log_id: log_id(1, first + i as u64),
                payload: EntryPayload::Normal(LoggedCommand::shared(c)),
            },
            None,
        ))
    });
    sm.apply(stream::iter(entries)).await.expect("apply");
}

fn create() -> Command {
    Command::CreateStore {
        store: StoreRef::public("s"),
        dimension: 2,
        predicates: vec![],
        non_linear: vec![],
        error_if_exists: true,
    }
}

async fn snapshot(sm: &mut StateMachine) {
    sm.get_snapshot_builder().await.build_snapshot().await.expect("build snapshot");
}

fn damage_newest(dir: &std::path::Path) -> std::path::PathBuf {
    let mut snaps: Vec<_> = std::fs::read_dir(dir).expect("dir").map(|e| e.expect("entry").path()).collect();
    snaps.sort();
    let newest = snaps.pop().expect("a snapshot");
    let mut bytes = std::fs::read(&newest).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&newest, bytes).expect("damage");
    newest
}

#[tokio::test]
async fn an_installed_snapshot_is_what_a_restart_finds() {
    let (a_dir, b_dir) = (TempDir::new().expect("tempdir"), TempDir::new().expect("tempdir"));
    let mut a = StateMachine::open(a_dir.path(), Limits::default(), None).expect("open a");
    apply(&mut a, 1, vec![create(), set(100, 0.0)]).await;
    let built = a.get_snapshot_builder().await.build_snapshot().await.expect("build");
    let mut b = StateMachine::open(b_dir.path(), Limits::default(), None).expect("open b");
    apply(&mut b, 1, vec![create(), set(3, 500.0)]).await;
    b.install_snapshot(&built.meta, built.snapshot).await.expect("install");
    assert_eq!(b.engine().digest(), a.engine().digest());
    drop(b);
    let b = StateMachine::open(b_dir.path(), Limits::default(), Some(2)).expect("reopen b");
    assert_eq!(b.engine().digest(), a.engine().digest(), "the install is durable");
    assert_eq!(b.last_applied(), Some(log_id(1, 2)));
}

#[tokio::test]
async fn a_damaged_newest_snapshot_falls_back_only_when_the_log_covers_the_gap() {
    let dir = TempDir::new().expect("tempdir");
    let mut sm = StateMachine::open(dir.path(), Limits::default(), None).expect("open");
    apply(&mut sm, 1, vec![create(), set(10, 0.0)]).await;
    snapshot(&mut sm).await; // covers index 2
    let at_two = sm.engine().digest();
    apply(&mut sm, 3, vec![set(10, 100.0)]).await;
    snapshot(&mut sm).await; // covers index 3
    drop(sm);
    let damaged = damage_newest(dir.path());

    // The log was purged up to 3: entry 3 is gone, so the older snapshot cannot stand in.
    match StateMachine::open(dir.path(), Limits::default(), Some(3)) {
        Err(e @ StartError::NoFallback(_)) => {
            assert!(e.to_string().contains(&damaged.display().to_string()), "the error names the file: {e}")
        }
        Err(e) => panic!("expected a refusal naming the file, got {e}"),
        Ok(_) => panic!("started from a snapshot that misses purged entries"),
    }
    // Purged only up to 2: the log still holds entry 3, so the older snapshot is fine.
    let sm = StateMachine::open(dir.path(), Limits::default(), Some(2)).expect("fallback");
    assert_eq!(sm.last_applied(), Some(log_id(1, 2)));
    assert_eq!(sm.engine().digest(), at_two);
    let reference = Engine::default();
    reference.apply(&create()).expect("create");
    reference.apply(&set(10, 0.0)).expect("set");
    assert_eq!(sm.engine().digest(), reference.digest());
}

#[tokio::test]
async fn a_snapshot_holds_exactly_the_state_at_capture() {
    let dir = TempDir::new().expect("tempdir");
    let mut sm = StateMachine::open(dir.path(), Limits::default(), None).expect("open");
    apply(&mut sm, 1, vec![create(), set(50, 0.0)]).await;
    let at_capture = sm.engine().digest();
    let mut builder = sm.get_snapshot_builder().await;
    // Writes applied while the snapshot is still to be written must not leak into it.
    apply(&mut sm, 3, vec![set(50, 1000.0), Command::ClearStore { store: StoreRef::public("s") }]).await;
    let after = sm.engine().digest();
    assert_ne!(after, at_capture);
    let built = builder.build_snapshot().await.expect("build");
    assert_eq!(built.meta.last_log_id, Some(log_id(1, 2)));
    let restored = Engine::restore(built.snapshot.image().expect("image"), Limits::default()).expect("restore");
    assert_eq!(restored.digest(), at_capture, "the snapshot is the state at capture");
    assert_eq!(sm.engine().digest(), after, "the live state kept the later writes");
}
