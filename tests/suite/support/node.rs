//! A single ahnlich-raft node for tests, driven through openraft directly: the WAL log store,
//! the engine state machine and the gRPC network (which a single node never uses).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ahnlich_raft::engine::Limits;
use ahnlich_raft::raft::config::RaftSettings;
use ahnlich_raft::raft::log_store::LogStore;
use ahnlich_raft::raft::network::{Channels, GrpcNetwork};
use ahnlich_raft::raft::state_machine::StateMachine;
use ahnlich_raft::raft::types::TypeConfig;
use ahnlich_raft::wal::WalOptions;
use openraft::Raft;

/// Starts the node; also returns what the state machine restored, before Raft replays anything.
pub async fn start(dir: &Path) -> (Raft<TypeConfig, StateMachine>, StateMachine, Option<u64>) {
    // openraft's tasks drop their log readers shortly after `shutdown` returns; the directory
    // lock is free once the last one is gone (a new process would not wait at all).
    let mut attempts = 0;
    let log = loop {
        match LogStore::<TypeConfig>::open(
            dir.join("log"),
            WalOptions { segment_size: 64 << 10, preallocate: true, ..WalOptions::default() },
        ) {
            Ok(log) => break log,
            Err(ahnlich_raft::wal::WalError::Locked { .. }) if attempts < 200 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(e) => panic!("open log: {e}"),
        }
    };
    let purged = log.wal().bounds().purged.map(|p| p.index);
    let sm = StateMachine::open(&dir.join("snapshots"), Limits::default(), purged).expect("open state machine");
    let restored = sm.last_applied().map(|l| l.index);
    // Snapshots only when a test triggers them; purge everything behind a snapshot.
    // A single voter waits one election timeout after each restart: keep it short.
    let settings = RaftSettings {
        snapshot_every: 0,
        snapshot_log_percent: 0,
        snapshot_log_bytes: 0,
        keep_behind_snapshot: 0,
        keep_behind_snapshot_bytes: 0,
        heartbeat_ms: 50,
        election_timeout_ms: (150, 300),
    };
    let config = settings.to_config().expect("config");
    let raft = Raft::new(1, Arc::new(config), network(), log, sm.clone()).await.expect("raft");
    (raft, sm, restored)
}

fn network() -> GrpcNetwork {
    GrpcNetwork::new(1, Arc::new(Channels::default()), 64 << 20, None, Default::default())
}
