//! A single ahnlich-raft node for tests: the WAL log store, the engine state machine and a
//! network that has no peers (a single node never sends an RPC).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ahnlich_raft::engine::Limits;
use ahnlich_raft::raft::config::RaftSettings;
use ahnlich_raft::raft::log_store::LogStore;
use ahnlich_raft::raft::state_machine::{SnapshotData, StateMachine};
use ahnlich_raft::raft::types::TypeConfig;
use ahnlich_raft::wal::WalOptions;
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::type_config::alias::{SnapshotOf, VoteOf};
use openraft::{BasicNode, OptionalSend, Raft};

/// A single node never sends RPCs; any attempt is answered as unreachable.
pub struct NoPeers;
/// The network to a peer that does not exist.
pub struct NoPeer;

impl RaftNetworkFactory<TypeConfig> for NoPeers {
    type Network = NoPeer;
    async fn new_client(&mut self, _target: u64, _node: &BasicNode) -> NoPeer {
        NoPeer
    }
}

fn unreachable() -> Unreachable<TypeConfig> {
    Unreachable::from_string("single-node test: no peers")
}

impl RaftNetworkV2<TypeConfig> for NoPeer {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(unreachable()))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(unreachable()))
    }

    async fn full_snapshot(
        &mut self,
        _vote: VoteOf<TypeConfig>,
        _snapshot: SnapshotOf<TypeConfig, SnapshotData>,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        Err(StreamingError::Unreachable(unreachable()))
    }
}

/// Starts the node; also returns what the state machine restored, before Raft replays anything.
pub async fn start(dir: &Path) -> (Raft<TypeConfig, StateMachine>, StateMachine, Option<u64>) {
    // openraft's tasks drop their log readers shortly after `shutdown` returns; the directory
    // lock is free once the last one is gone (a new process would not wait at all).
    let mut attempts = 0;
    let log = loop {
        match LogStore::<TypeConfig>::open(dir.join("log"), WalOptions { segment_size: 64 << 10, preallocate: true }) {
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
    let settings = RaftSettings { snapshot_every: 0, keep_behind_snapshot: 0, ..RaftSettings::default() };
    let config = settings.to_config().expect("config");
    let raft = Raft::new(1, Arc::new(config), NoPeers, log, sm.clone()).await.expect("raft");
    (raft, sm, restored)
}
