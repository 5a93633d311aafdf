//! Reopening the Raft log store after truncation and purge restores exactly the same state:
//! log state, entries, vote and committed log id; purged segments are really deleted.

use std::collections::{BTreeMap, BTreeSet};

use crate::support::wal_util::segment_files;
use ahnlich_raft::engine::{Command, StoreRef};
use ahnlich_raft::raft::codec::log_id;
use ahnlich_raft::raft::log_store::LogStore;
use ahnlich_raft::raft::logged::LoggedCommand;
use ahnlich_raft::raft::types::TypeConfig;
use ahnlich_raft::wal::WalOptions;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::type_config::TypeConfigExt;
use openraft::type_config::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::vote::leader_id_std::LeaderId;
use openraft::{BasicNode, Entry, EntryPayload, LogState, Membership, RaftLogReader, Vote};

type Store = LogStore<TypeConfig>;

fn opts() -> WalOptions {
    WalOptions { segment_size: 4096, preallocate: true, ..WalOptions::default() }
}

fn normal(term: u64, index: u64) -> EntryOf<TypeConfig> {
    let store = StoreRef::public(format!("store-{index}-of-term-{term}"));
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(LoggedCommand::shared(Command::ClearStore { store })),
    }
}

async fn append(store: &mut Store, entries: Vec<EntryOf<TypeConfig>>) {
    let (tx, rx) = TypeConfig::oneshot();
    store.append(entries, IOFlushed::signal(tx)).await.expect("append");
    rx.await.expect("flush callback").expect("flushed");
}

type Snapshot =
    (LogState<TypeConfig>, Vec<EntryOf<TypeConfig>>, Option<VoteOf<TypeConfig>>, Option<LogIdOf<TypeConfig>>);

async fn observe(store: &mut Store) -> Snapshot {
    let state = store.get_log_state().await.expect("log state");
    let entries = store.try_get_log_entries(0..u64::MAX).await.expect("entries");
    let vote = store.read_vote().await.expect("vote");
    let committed = store.read_committed().await.expect("committed");
    (state, entries, vote, committed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_after_truncate_and_purge_restores_the_same_state() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let mut store = Store::open(dir.path(), opts()).expect("open");

    let members = Membership::new(
        vec![BTreeSet::from([1, 2, 3])],
        BTreeMap::from([
            (1, BasicNode { addr: "127.0.0.1:1".into() }),
            (2, BasicNode::default()),
            (3, BasicNode::default()),
        ]),
    )
    .expect("membership");
    append(&mut store, vec![Entry { log_id: log_id(0, 0), payload: EntryPayload::Membership(members) }]).await;
    append(&mut store, vec![Entry { log_id: log_id(1, 1), payload: EntryPayload::Blank }]).await;
    append(&mut store, (2..=200).map(|i| normal(1, i)).collect()).await;
    store.save_vote(&Vote { leader_id: LeaderId { term: 2, voted_for: 3 }, committed: true }).await.expect("vote");
    store.truncate_after(Some(log_id(1, 150))).await.expect("truncate");
    append(&mut store, (151..=260).map(|i| normal(2, i)).collect()).await;
    store.save_committed(Some(log_id(2, 240))).await.expect("committed");
    let segments_before_purge = segment_files(dir.path()).len();
    store.purge(log_id(1, 120)).await.expect("purge");
    // A last append waits for everything before it, purge included.
    append(&mut store, vec![normal(2, 261)]).await;

    let before = observe(&mut store).await;
    assert_eq!(before.0.last_purged_log_id, Some(log_id(1, 120)));
    assert_eq!(before.0.last_log_id, Some(log_id(2, 261)));
    assert_eq!(before.1.first().map(|e| e.log_id), Some(log_id(1, 121)));
    assert_eq!(before.1.len(), 141);
    assert_eq!(before.1[30], normal(2, 151), "the truncated tail was replaced");
    assert_eq!(before.3, Some(log_id(2, 240)));
    // Segment deletion follows the durable purge point on the writer thread: wait for it.
    let mut segments_after_purge = segment_files(dir.path()).len();
    for _ in 0..200 {
        if segments_after_purge < segments_before_purge {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        segments_after_purge = segment_files(dir.path()).len();
    }
    assert!(
        segments_after_purge < segments_before_purge,
        "purge deleted no segment ({segments_before_purge} before, {segments_after_purge} after)"
    );
    drop(store);

    let mut store = Store::open(dir.path(), opts()).expect("reopen");
    assert_eq!(observe(&mut store).await, before);
    drop(store);

    // Purging everything keeps the purge point as the last log id across a reopen.
    let mut store = Store::open(dir.path(), opts()).expect("reopen");
    store.purge(log_id(2, 261)).await.expect("purge all");
    store.save_vote(&Vote { leader_id: LeaderId { term: 3, voted_for: 1 }, committed: false }).await.expect("vote");
    let all_purged = observe(&mut store).await;
    assert_eq!(all_purged.0.last_log_id, Some(log_id(2, 261)));
    assert!(all_purged.1.is_empty());
    drop(store);
    let mut store = Store::open(dir.path(), opts()).expect("reopen");
    assert_eq!(observe(&mut store).await, all_purged);
    append(&mut store, vec![normal(3, 262)]).await;
}
