//! openraft's storage conformance suite against the WAL-backed log store and the real state
//! machine (engine + rkyv snapshot files).

use ahnlich_raft::engine::Limits;
use ahnlich_raft::raft::log_store::LogStore;
use ahnlich_raft::raft::state_machine::StateMachine;
use ahnlich_raft::raft::types::TypeConfig;
use ahnlich_raft::wal::WalOptions;
use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use tempfile::TempDir;

struct Builder {
    opts: WalOptions,
}

impl StoreBuilder<TypeConfig, LogStore<TypeConfig>, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore<TypeConfig>, StateMachine), StorageError<TypeConfig>> {
        let err = |e: &dyn std::fmt::Display| StorageError::write(TypeConfig::err_from_string(e));
        let dir = TempDir::new().map_err(|e| err(&e))?;
        let log = LogStore::open(dir.path().join("log"), self.opts.clone()).map_err(|e| err(&e))?;
        let sm = StateMachine::open(&dir.path().join("snapshots"), Limits::default(), None).map_err(|e| err(&e))?;
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_suite_passes_with_default_segments() -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(Builder { opts: WalOptions { segment_size: 1 << 20, preallocate: true, ..WalOptions::default() } })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_suite_passes_with_tiny_segments() -> Result<(), StorageError<TypeConfig>> {
    // 4 KiB segments: the suite's logs span many segments, so purge really removes files.
    Suite::test_all(Builder { opts: WalOptions { segment_size: 4096, preallocate: false, ..WalOptions::default() } })
        .await
}
