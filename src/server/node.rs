//! A node: its data directory (locked), its Raft log and state machine, Raft itself, and the
//! gRPC server on one address.
//!
//! A fresh data directory bootstraps a single-node cluster with this node as its only voter,
//! so `serve` works with no other step.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::storage::RaftLogStorage;
use openraft::{BasicNode, Raft, RaftLogReader, ServerState};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::db_service::DbApi;
use crate::engine::Limits;
use crate::proto::ahnlich::services::db_service::db_service_server::DbServiceServer;
use crate::raft::config::RaftSettings;
use crate::raft::log_store::LogStore;
use crate::raft::network::SingleNodeNetwork;
use crate::raft::state_machine::StateMachine;
use crate::raft::types::TypeConfig;
use crate::wal::WalOptions;

/// Largest gRPC message accepted or sent (a Set of many large vectors).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// How a node runs.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Where the log and snapshots live (`log/`, `snapshots/`).
    pub data_dir: PathBuf,
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// This node's id in the cluster.
    pub node_id: u64,
    /// Engine limits.
    pub limits: Limits,
    /// Raft settings.
    pub raft: RaftSettings,
    /// WAL settings.
    pub wal: WalOptions,
}

impl NodeConfig {
    /// A single node with default settings, data in `data_dir`, listening on `listen`.
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        Self {
            data_dir: data_dir.into(),
            listen,
            node_id: 1,
            limits: Limits::default(),
            raft: RaftSettings::default(),
            wal: WalOptions::default(),
        }
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The Raft log could not be opened.
    #[error("opening the Raft log: {0}")]
    Log(#[from] crate::wal::WalError),
    /// The state could not be restored.
    #[error(transparent)]
    State(#[from] crate::raft::state_machine::StartError),
    /// Raft refused to start or bootstrap.
    #[error("starting Raft: {0}")]
    Raft(String),
    /// The address could not be bound.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// A running node.
pub struct Node {
    raft: Raft<TypeConfig, StateMachine>,
    log_closed: Arc<std::sync::atomic::AtomicBool>,
    state: StateMachine,
    addr: SocketAddr,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Node {
    /// Opens the data directory, starts Raft (bootstrapping a fresh directory as a single-node
    /// cluster) and starts serving. Returns once the server is listening.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        let mut log = LogStore::<TypeConfig>::open(config.data_dir.join("log"), config.wal.clone())?;
        let fresh = log.read_vote().await.map_err(|e| NodeError::Raft(e.to_string()))?.is_none()
            && log.get_log_state().await.map_err(|e| NodeError::Raft(e.to_string()))?.last_log_id.is_none();
        let purged = log.wal().bounds().purged.map(|p| p.index);
        let log_closed = log.wal().closed_flag();
        let state = StateMachine::open(&config.data_dir.join("snapshots"), config.limits.clone(), purged)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| NodeError::Listen { addr: config.listen, source })?;
        let addr = listener.local_addr().map_err(|source| NodeError::Listen { addr: config.listen, source })?;
        let raft_config = config.raft.to_config().map_err(|e| NodeError::Raft(e.to_string()))?;
        let raft = Raft::new(config.node_id, Arc::new(raft_config), SingleNodeNetwork, log, state.clone())
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        if fresh {
            let me = BasicNode { addr: addr.to_string() };
            raft.initialize([(config.node_id, me)].into_iter().collect::<std::collections::BTreeMap<_, _>>())
                .await
                .map_err(|e| NodeError::Raft(format!("bootstrapping a single-node cluster: {e}")))?;
        }
        let api = DbApi::new(raft.clone(), state.clone(), addr.to_string());
        let service = DbServiceServer::new(api)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let incoming = tokio_stream_from(listener);
        let server = tokio::spawn(
            tonic::transport::Server::builder().add_service(service).serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            }),
        );
        tracing::info!("node {} serving on {addr}, data in {}", config.node_id, config.data_dir.display());
        Ok(Node { raft, log_closed, state, addr, server, stop })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The state machine (for tests and tools).
    pub fn state(&self) -> &StateMachine {
        &self.state
    }

    /// Waits until this node leads (a single node elects itself within an election timeout).
    pub async fn wait_leader(&self, timeout: Duration) -> Result<(), NodeError> {
        self.raft
            .wait(Some(timeout))
            .state(ServerState::Leader, "leader")
            .await
            .map(|_| ())
            .map_err(|e| NodeError::Raft(e.to_string()))
    }

    /// Stops serving, then stops Raft, and returns once the log is closed and its directory
    /// unlocked; everything acknowledged is already durable.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        let _ = self.stop.send(());
        let _ = self.server.await;
        self.raft.shutdown().await.map_err(|e| NodeError::Raft(e.to_string()))?;
        drop(self.raft);
        // openraft's tasks drop their log readers just after `shutdown` returns.
        for _ in 0..500 {
            if self.log_closed.load(std::sync::atomic::Ordering::Acquire) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(NodeError::Raft("the Raft log was still in use 5 s after shutdown".into()))
    }
}

/// The accepted connections of `listener`, as tonic's server takes them.
fn tokio_stream_from(
    listener: TcpListener,
) -> impl futures_util::Stream<Item = Result<tokio::net::TcpStream, std::io::Error>> {
    futures_util::stream::unfold(listener, |listener| async move {
        let next = listener.accept().await.map(|(stream, _)| stream);
        Some((next, listener))
    })
}
