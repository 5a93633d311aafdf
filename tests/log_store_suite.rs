//! openraft's own storage conformance suite against the WAL-backed log store.

mod support;

use ahnlich_raft::raft::log_store::LogStore;
use ahnlich_raft::wal::WalOptions;
use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use support::{CountingStateMachine, TestConfig};
use tempfile::TempDir;

struct Builder {
    opts: WalOptions,
}

impl StoreBuilder<TestConfig, LogStore<TestConfig>, CountingStateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore<TestConfig>, CountingStateMachine), StorageError<TestConfig>> {
        let dir = TempDir::new().map_err(|e| StorageError::write(TestConfig::err_from_error(&e)))?;
        let store = LogStore::open(dir.path(), self.opts.clone())
            .map_err(|e| StorageError::write(TestConfig::err_from_error(&e)))?;
        Ok((dir, store, CountingStateMachine::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_suite_passes_with_default_segments() -> Result<(), StorageError<TestConfig>> {
    Suite::test_all(Builder { opts: WalOptions { segment_size: 1 << 20, preallocate: true } }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_suite_passes_with_tiny_segments() -> Result<(), StorageError<TestConfig>> {
    // 4 KiB segments: the suite's logs span many segments, so purge really deletes files.
    Suite::test_all(Builder { opts: WalOptions { segment_size: 4096, preallocate: false } }).await
}
