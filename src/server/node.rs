//! A node: its data directory (locked), its Raft log and state machine, Raft itself, and one
//! gRPC server on one address serving the Ahnlich DB API, the Raft transport and cluster admin.
//!
//! How a node starts depends on its data directory:
//! - a directory holding a log restarts from it (any `join` is ignored: the node is already a
//!   member, or was removed and stays out);
//! - an empty directory without `join` bootstraps a single-node cluster with this node as its
//!   only voter, so `serve` works with no other step (unless `bootstrap` is off: then it waits
//!   to be added by `cluster add-learner`);
//! - an empty directory with `join` starts empty and asks the given member (which forwards to
//!   the leader) to add it; the leader adds it as a learner, waits until it has caught up and
//!   promotes it to voter. The node retries until that succeeds.
//!
//! The node id and the cluster id live in the data directory ([`super::identity`]). Who may
//! call which service is decided at the edge ([`super::security`], [`super::gate`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::storage::RaftLogStorage;
use openraft::{BasicNode, Raft, RaftLogReader, ServerState};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;

use super::admin::{AdminApi, status_of};
use super::auth::Users;
use super::connections::{Connections, TrackedStream};
use super::context::{NodeContext, ReadConsistency};
use super::db_metrics::Measured;
use super::db_service::{DbApi, RAFT_MESSAGE_OVERHEAD};
use super::events::watch_raft;
use super::gate::{ClientGate, PeerGate, PeerService, stamp_cluster_id};
use super::identity::{ClusterId, ClusterIdentity, resolve_node_id};
use super::metrics_endpoint;
use super::proposer::Proposer;
use super::raft_service::RaftRpc;
use super::security::{PeerAuth, Security, SecurityConfig};
use super::state_metrics::StateCollector;
use crate::engine::Limits;
use crate::metrics::Metrics;
use crate::proto::admin::cluster_admin_client::ClusterAdminClient;
use crate::proto::admin::cluster_admin_server::ClusterAdminServer;
use crate::proto::ahnlich::services::db_service::db_service_server::DbServiceServer;
use crate::proto::raft::raft_service_server::RaftServiceServer;
use crate::raft::config::RaftSettings;
use crate::raft::eviction::Eviction;
use crate::raft::log_store::{LogStore, LogWatch};
use crate::raft::network::{Channels, GrpcNetwork, LinkFaults};
use crate::raft::retention::retain_log;
use crate::raft::snapshot_schedule::take_snapshots;
use crate::raft::state_machine::StateMachine;
use crate::raft::types::TypeConfig;
use crate::wal::WalOptions;
use crate::wal::fs::Fs;

/// Default largest client message (a Set of many large vectors).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Default largest snapshot a node accepts: far more state than fits the memory of the
/// machines it is meant for, while a forged offer cannot ask for the whole disk.
pub const DEFAULT_MAX_SNAPSHOT_BYTES: u64 = 64 << 30;

/// How long a stopping node waits for requests in flight before closing their connections.
const SERVER_STOP_WAIT: Duration = Duration::from_secs(2);

/// How long a leader stepping down waits for another node to take over.
const HANDOVER_WAIT: Duration = Duration::from_secs(3);

/// Limits of the gRPC server, per connection and per request.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Requests served at once on one connection; more wait.
    pub concurrency_per_connection: usize,
    /// HTTP/2 streams a client may open at once on one connection.
    pub max_concurrent_streams: u32,
    /// How long a request may take before it is answered DEADLINE_EXCEEDED (a client's own
    /// `grpc-timeout` can only shorten it).
    pub request_timeout: Duration,
    /// How often an idle connection is pinged; one that does not answer within
    /// `keepalive_timeout` is closed.
    pub keepalive_interval: Duration,
    /// See `keepalive_interval`.
    pub keepalive_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            concurrency_per_connection: 256,
            max_concurrent_streams: 256,
            request_timeout: Duration::from_secs(300),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
        }
    }
}

/// How a node runs.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Where the log and snapshots live (`log/`, `snapshots/`, `node-id`).
    pub data_dir: PathBuf,
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Address peers and clients reach this node at; defaults to the bound listen address.
    pub advertise: Option<String>,
    /// This node's id; `None` uses the one stored in the data directory or generates one.
    pub node_id: Option<u64>,
    /// A member to join through when the data directory is empty.
    pub join: Option<String>,
    /// Whether an empty data directory without `join` bootstraps a single-node cluster (the
    /// default). Without it the node waits to be added with `cluster add-learner`.
    pub bootstrap: bool,
    /// How long a write waits to be committed (a majority may be unreachable) before the
    /// client gets UNAVAILABLE saying the write is in doubt.
    pub commit_wait: Duration,
    /// Default consistency of reads (a request may ask for another).
    pub read_consistency: ReadConsistency,
    /// Largest client message accepted; the Raft transport carries somewhat more, so any
    /// accepted write can be replicated.
    pub max_message_bytes: usize,
    /// Engine limits.
    pub limits: Limits,
    /// Raft settings.
    pub raft: RaftSettings,
    /// WAL settings. The node sets `max_spares` itself, from `raft`
    /// ([`RaftSettings::log_segments_to_recycle`]).
    pub wal: WalOptions,
    /// TLS, peer certificates, client auth and `--insecure`.
    pub security: SecurityConfig,
    /// Limits of the gRPC server.
    pub server: ServerLimits,
    /// Largest snapshot this node accepts from a leader (bytes of the file).
    pub max_snapshot_bytes: u64,
    /// How long `add-learner` waits for the new node's address to answer.
    pub add_learner_timeout: Duration,
    /// Faults injected into outgoing Raft messages (tests).
    pub faults: Option<Arc<dyn LinkFaults>>,
    /// The file system the Raft log lives on; `None` is the real one (tests put a failing one
    /// here).
    pub wal_fs: Option<Arc<dyn Fs>>,
    /// Where to serve Prometheus scrapes (`GET /metrics`); `None`: nowhere.
    pub metrics_listen: Option<SocketAddr>,
}

impl NodeConfig {
    /// A node with default settings, data in `data_dir`, listening on `listen`.
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        Self {
            data_dir: data_dir.into(),
            listen,
            advertise: None,
            node_id: None,
            join: None,
            bootstrap: true,
            commit_wait: Duration::from_secs(10),
            read_consistency: ReadConsistency::Linearizable,
            max_message_bytes: MAX_MESSAGE_BYTES,
            limits: Limits::default(),
            raft: RaftSettings::default(),
            wal: WalOptions::default(),
            security: SecurityConfig::default(),
            server: ServerLimits::default(),
            max_snapshot_bytes: DEFAULT_MAX_SNAPSHOT_BYTES,
            add_learner_timeout: Duration::from_secs(3),
            faults: None,
            wal_fs: None,
            metrics_listen: None,
        }
    }

    /// The Raft transport's message limit for this client limit: twice it plus a margin, as a
    /// command may encode somewhat larger than the request it came from.
    pub fn max_raft_message_bytes(&self) -> usize {
        self.max_message_bytes.saturating_mul(2).saturating_add(1 << 20)
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
    /// The node id or cluster id could not be read, stored, or does not match.
    #[error("identity: {0}")]
    Identity(String),
    /// The TLS, certificate or auth settings are unusable or unsafe.
    #[error("{0}")]
    Security(String),
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
    ctx: Arc<NodeContext>,
    log_closed: Arc<std::sync::atomic::AtomicBool>,
    addr: SocketAddr,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    stop: tokio::sync::watch::Sender<bool>,
    joining: Option<JoinHandle<()>>,
    /// Taking snapshots when due, and keeping the log behind them within its bounds.
    upkeep: [JoinHandle<()>; 2],
    forgetting: JoinHandle<()>,
    /// The event logger and the scrape endpoint.
    observers: Vec<JoinHandle<()>>,
    metrics: Arc<Metrics>,
    metrics_addr: Option<SocketAddr>,
    users: Option<Arc<Users>>,
}

impl Node {
    /// Opens the data directory, starts Raft and the server, and bootstraps or joins as the
    /// directory and `join` say. Returns once the server is listening (a join goes on in the
    /// background).
    ///
    /// The future is boxed here so that the server is compiled once, in this crate, rather
    /// than again in every binary that starts a node.
    pub fn start(config: NodeConfig) -> BoxFuture<'static, Result<Node, NodeError>> {
        Box::pin(Self::start_boxed(config))
    }

    async fn start_boxed(config: NodeConfig) -> Result<Node, NodeError> {
        let security = Security::load(&config.security, config.listen).map_err(NodeError::Security)?;
        if config.join.is_some() && security.peers == PeerAuth::Closed {
            return Err(NodeError::Security(
                "--join needs the cluster's CA (--certs-dir, or --peer-ca, --peer-cert and --peer-key): with TLS for \
                 clients only, a node takes no peer calls"
                    .into(),
            ));
        }
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| NodeError::Identity(format!("creating {}: {e}", config.data_dir.display())))?;
        // Opening the log (recovery reads every segment) and the state (mapping and checking
        // the newest snapshot) is file-system work: off the runtime's workers, which in one
        // process may be driving other nodes' Raft.
        let wal_options = WalOptions {
            max_spares: config.raft.log_segments_to_recycle(config.wal.segment_size),
            ..config.wal.clone()
        };
        let (log_dir, wal_fs) = (config.data_dir.join("log"), config.wal_fs.clone());
        let mut log = off_the_reactor(move || match wal_fs {
            None => LogStore::<TypeConfig>::open(log_dir, wal_options),
            Some(fs) => LogStore::open_on(fs, &log_dir, wal_options),
        })
        .await??;
        let id = resolve_node_id(&config.data_dir, config.node_id)?;
        let bounds = log.wal().bounds();
        tracing::info!(
            "node {id} recovered its Raft log in {:.3} s: {}",
            log.wal().stats().recovery_seconds.get(),
            match (bounds.first, bounds.last) {
                (Some(first), Some(last)) => format!("entries {}..={}", first.index, last.index),
                _ => "no entries".to_string(),
            }
        );
        let fresh = log.read_vote().await.map_err(|e| NodeError::Raft(e.to_string()))?.is_none()
            && log.get_log_state().await.map_err(|e| NodeError::Raft(e.to_string()))?.last_log_id.is_none();
        let metrics = Arc::new(Metrics::new());
        metrics.register_wal(&log.wal().stats());
        let purged = log.purged_index();
        let log_closed = log.closed_flag();
        let log_watch = log.watch();
        let (snapshot_dir, limits) = (config.data_dir.join("snapshots"), config.limits.clone());
        let state = off_the_reactor(move || StateMachine::open(&snapshot_dir, limits, purged)).await??;
        state.observe(id, metrics.clone());
        let cluster = Arc::new(ClusterIdentity::load(&config.data_dir)?);
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| NodeError::Listen { addr: config.listen, source })?;
        let addr = listener.local_addr().map_err(|source| NodeError::Listen { addr: config.listen, source })?;
        let advertise = config.advertise.clone().unwrap_or_else(|| advertised_default(addr));
        let raft_config = config.raft.to_config().map_err(|e| NodeError::Raft(e.to_string()))?;
        let stamped = cluster.clone();
        let channels = Arc::new(Channels::new(
            security.peer_tls.clone(),
            Arc::new(move |metadata: &mut tonic::metadata::MetadataMap| stamp_cluster_id(&stamped, metadata)),
        ));
        let max_raft = config.max_raft_message_bytes();
        let eviction = Arc::new(Eviction::default());
        let network = GrpcNetwork::new(id, channels.clone(), max_raft, config.faults.clone(), eviction.clone())
            .with_metrics(metrics.clone());
        let raft = Raft::new(id, Arc::new(raft_config), network.clone(), log, state.clone())
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        let connections = Arc::new(Connections::default());
        let ctx = Arc::new(NodeContext {
            raft: raft.clone(),
            state: state.clone(),
            id,
            addr: advertise.clone(),
            channels,
            network,
            max_message_bytes: config.max_message_bytes,
            max_raft_message_bytes: max_raft,
            read_consistency: config.read_consistency,
            commit_wait: config.commit_wait,
            membership_lock: tokio::sync::Mutex::new(()),
            eviction: eviction.clone(),
            cluster: cluster.clone(),
            add_learner_timeout: config.add_learner_timeout,
            engine_work: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            )),
            log: log_watch.clone(),
            connections: connections.clone(),
            proposer: Proposer::start(raft.clone(), max_raft.saturating_sub(RAFT_MESSAGE_OVERHEAD), metrics.clone()),
        });
        let bootstrapping = fresh && config.join.is_none() && config.bootstrap;
        if bootstrapping || (!fresh && cluster.get().is_none() && sole_voter(&raft, id)) {
            // A new cluster, or one made before cluster ids that only this node votes in.
            cluster.adopt(ClusterId::generate().map_err(NodeError::Identity)?).map_err(NodeError::Identity)?;
        }
        let db = DbServiceServer::new(DbApi::new(ctx.clone()))
            .max_decoding_message_size(config.max_message_bytes)
            .max_encoding_message_size(config.max_message_bytes);
        let raft_rpc = RaftRpc::new(raft.clone(), id, state.snapshot_dir(), eviction, config.max_snapshot_bytes)
            .with_metrics(metrics.clone());
        let raft_rpc =
            RaftServiceServer::new(raft_rpc).max_decoding_message_size(max_raft).max_encoding_message_size(max_raft);
        let admin = ClusterAdminServer::new(AdminApi::new(ctx.clone()));
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = security.server_tls.clone() {
            server = server.tls_config(tls).map_err(|e| NodeError::Security(format!("the TLS settings: {e}")))?;
        }
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let mut server_stopped = stopped.clone();
        let server = tokio::spawn(
            server
                .http2_adaptive_window(Some(true))
                .concurrency_limit_per_connection(config.server.concurrency_per_connection)
                .max_concurrent_streams(Some(config.server.max_concurrent_streams))
                .timeout(config.server.request_timeout)
                .http2_keepalive_interval(Some(config.server.keepalive_interval))
                .http2_keepalive_timeout(Some(config.server.keepalive_timeout))
                .add_service(Measured::new(
                    InterceptedService::new(db, ClientGate::new(security.users.clone())),
                    metrics.clone(),
                ))
                .add_service(InterceptedService::new(
                    raft_rpc,
                    PeerGate::new(security.peers, PeerService::Raft, cluster.clone()),
                ))
                .add_service(InterceptedService::new(admin, PeerGate::new(security.peers, PeerService::Admin, cluster)))
                .serve_with_incoming_shutdown(incoming(listener, connections), async move {
                    let _ = server_stopped.wait_for(|s| *s).await;
                }),
        );
        let mut joining = None;
        if fresh {
            match &config.join {
                None if !config.bootstrap => {
                    tracing::info!("node {id} starts empty and waits to be added to a cluster");
                }
                None => {
                    let me = BasicNode { addr: advertise.clone() };
                    raft.initialize([(id, me)].into_iter().collect::<std::collections::BTreeMap<_, _>>())
                        .await
                        .map_err(|e| NodeError::Raft(format!("bootstrapping a single-node cluster: {e}")))?;
                    tracing::info!("node {id} bootstrapped a new single-node cluster");
                }
                Some(member) => {
                    let (member, me) = (member.clone(), advertise.clone());
                    let channels = ctx.channels.clone();
                    joining = Some(tokio::spawn(async move {
                        tokio::select! {
                            _ = join_until_member(channels, member, id, me) => {}
                            _ = stopped.wait_for(|s| *s) => {}
                        }
                    }));
                }
            }
        } else if config.join.is_some() {
            tracing::info!("node {id} has a log already; restarting from it and ignoring --join");
        }
        let forgetting = tokio::spawn(forget_departed_peers(raft.clone(), ctx.channels.clone()));
        let upkeep = [
            tokio::spawn(take_snapshots(
                raft.clone(),
                log_watch.clone(),
                state.clone(),
                config.raft.snapshot_schedule(),
            )),
            tokio::spawn(retain_log(
                raft.clone(),
                log_watch.clone(),
                state.clone(),
                config.raft.keep_behind_snapshot_bytes,
            )),
        ];
        tracing::info!(
            "node {id} serving on {addr} (advertised as {advertise}), data in {}",
            config.data_dir.display()
        );
        metrics.register_collector(Box::new(StateCollector::new(raft.clone(), state.clone(), log_watch)));
        let mut observers = vec![
            tokio::spawn(watch_raft(raft.clone(), id, metrics.clone())),
            tokio::spawn(stop_raft_when_the_log_fails(raft.clone(), id, ctx.log.clone())),
        ];
        let metrics_addr = match config.metrics_listen {
            Some(at) => {
                let (bound, task) = metrics_endpoint::serve(at, metrics.clone())
                    .await
                    .map_err(|source| NodeError::Listen { addr: at, source })?;
                observers.push(task);
                tracing::info!("node {id} serves metrics on http://{bound}/metrics");
                Some(bound)
            }
            None => None,
        };
        Ok(Node {
            ctx,
            log_closed,
            addr,
            server,
            stop,
            joining,
            upkeep,
            forgetting,
            observers,
            metrics,
            metrics_addr,
            users: security.users,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address metrics are served on, if they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// This node's metrics, as a scrape would return them.
    pub fn metrics_text(&self) -> String {
        self.metrics.encode()
    }

    /// The DB-API users, when auth is on (to re-read their file).
    pub fn users(&self) -> Option<&Arc<Users>> {
        self.users.as_ref()
    }

    /// The cluster this node belongs to, once it knows.
    pub fn cluster_id(&self) -> Option<ClusterId> {
        self.ctx.cluster.get()
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.ctx.id
    }

    /// The state machine (for tests and tools).
    pub fn state(&self) -> &StateMachine {
        &self.ctx.state
    }

    /// This node's Raft (for tests and tools).
    pub fn raft(&self) -> &Raft<TypeConfig, StateMachine> {
        &self.ctx.raft
    }

    /// Whether this node's Raft log is closed: its Raft has stopped (after a fatal error) and
    /// let go of it, or the node was shut down.
    pub fn log_closed(&self) -> bool {
        self.log_closed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// How many peer addresses have a cached channel (at most one per member).
    pub fn cached_peer_channels(&self) -> usize {
        self.ctx.channels.cached()
    }

    /// This node's status, as the admin API reports it.
    pub fn status(&self) -> crate::proto::admin::StatusReply {
        status_of(&self.ctx)
    }

    /// Waits until this node leads (a single node elects itself within an election timeout).
    pub fn wait_leader(&self, timeout: Duration) -> BoxFuture<'_, Result<(), NodeError>> {
        Box::pin(self.wait_leader_boxed(timeout))
    }

    async fn wait_leader_boxed(&self, timeout: Duration) -> Result<(), NodeError> {
        self.ctx
            .raft
            .wait(Some(timeout))
            .state(ServerState::Leader, "leader")
            .await
            .map(|_| ())
            .map_err(|e| NodeError::Raft(e.to_string()))
    }

    /// Hands leadership to the most up-to-date other voter, if this node leads and there is
    /// one, and waits (briefly) for a new leader. Returns the node that leads now, if this
    /// node handed over.
    pub fn step_down(&self) -> BoxFuture<'_, Option<u64>> {
        Box::pin(self.step_down_boxed())
    }

    async fn step_down_boxed(&self) -> Option<u64> {
        let m = self.ctx.raft.metrics().borrow_watched().clone();
        if m.state != ServerState::Leader {
            return None;
        }
        let voters: Vec<u64> = m.membership_config.membership().voter_ids().filter(|v| *v != self.ctx.id).collect();
        let best = voters
            .iter()
            .max_by_key(|v| m.replication.as_ref().and_then(|r| r.get(*v).cloned().flatten()).map(|l| l.index))
            .copied();
        let to = best?;
        self.ctx.raft.trigger().transfer_leader(to).await.ok()?;
        let me = self.ctx.id;
        let moved = self
            .ctx
            .raft
            .wait(Some(HANDOVER_WAIT))
            .metrics(|m| m.current_leader.is_some_and(|l| l != me), "leadership handed over")
            .await;
        match moved {
            Ok(m) => m.current_leader,
            Err(e) => {
                tracing::warn!("node {me} could not hand leadership to node {to}: {e}");
                None
            }
        }
    }

    /// Stops serving, then stops Raft, and returns once the log is closed and its directory
    /// unlocked; everything acknowledged is already durable. Does not hand over leadership:
    /// call [`Node::step_down`] first for a graceful exit.
    pub fn shutdown(self) -> BoxFuture<'static, Result<(), NodeError>> {
        Box::pin(self.shutdown_boxed())
    }

    async fn shutdown_boxed(self) -> Result<(), NodeError> {
        let Node { ctx, log_closed, mut server, stop, joining, upkeep, forgetting, observers, .. } = self;
        forgetting.abort();
        observers.iter().for_each(JoinHandle::abort);
        let _ = stop.send(true);
        upkeep.iter().for_each(JoinHandle::abort);
        if let Some(j) = joining {
            let _ = j.await;
        }
        // Raft first: that ends the long-lived streams peers hold open, which a graceful server
        // stop would otherwise wait on forever.
        // A Raft that already stopped on a fatal error still stops the server and closes the log.
        let raft_stopped = ctx.raft.shutdown().await.map_err(|e| NodeError::Raft(e.to_string()));
        if tokio::time::timeout(SERVER_STOP_WAIT, &mut server).await.is_err() {
            server.abort();
        }
        drop(ctx);
        // openraft's tasks drop their log readers just after `shutdown` returns.
        for _ in 0..500 {
            if log_closed.load(std::sync::atomic::Ordering::Acquire) {
                return raft_stopped;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(NodeError::Raft("the Raft log was still in use 5 s after shutdown".into()))
    }
}

/// How often a node looks whether its Raft log has failed.
const LOG_FAILURE_CHECK: Duration = Duration::from_millis(100);

/// Stops this node's Raft once its log has failed (a disk error, a full disk), so that it takes
/// part in nothing: a leader stops sending heartbeats and the others elect a leader without it.
/// openraft stops by itself when a write it waits for fails, but not when the failed write was
/// one it does not wait for (the committed index, a purge), and a node whose log has failed
/// refuses every client write before proposing it, so nothing else would tell it.
async fn stop_raft_when_the_log_fails(raft: Raft<TypeConfig, StateMachine>, id: u64, log: LogWatch) {
    loop {
        tokio::time::sleep(LOG_FAILURE_CHECK).await;
        if let Some(why) = log.failure() {
            tracing::error!("node {id} stops taking part in Raft: its log cannot be written ({why})");
            if let Err(e) = raft.shutdown().await {
                tracing::error!("node {id}: stopping its Raft failed: {e}");
            }
            return;
        }
    }
}

/// Runs `work` on the blocking pool and waits for it.
async fn off_the_reactor<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, NodeError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| NodeError::Raft(format!("a start-up task failed: {e}")))
}

/// Drops the cached channels to addresses that are no longer members' whenever the membership
/// changes, so the cache holds at most one channel per member.
async fn forget_departed_peers(raft: Raft<TypeConfig, StateMachine>, channels: Arc<Channels>) {
    let mut metrics = raft.metrics();
    let mut seen = None;
    while metrics.changed().await.is_ok() {
        let membership = metrics.borrow_watched().membership_config.clone();
        if seen.as_ref() == Some(membership.log_id()) {
            continue;
        }
        seen = Some(*membership.log_id());
        let members = membership.membership().nodes().map(|(_, n)| n.addr.clone()).collect();
        channels.keep_only(&members);
    }
}

/// Whether this node is the only voter of the membership its log holds.
fn sole_voter(raft: &Raft<TypeConfig, StateMachine>, id: u64) -> bool {
    let m = raft.metrics().borrow_watched().clone();
    m.membership_config.membership().voter_ids().eq([id])
}

/// Asks `member` to add this node until it answers that it did, backing off between tries.
async fn join_until_member(channels: Arc<Channels>, member: String, id: u64, me: String) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let attempt = async {
            let channel = channels.get(&member).map_err(tonic::Status::invalid_argument)?;
            ClusterAdminClient::new(channel).join(crate::proto::admin::NodeSpec { id, addr: me.clone() }).await
        };
        match attempt.await {
            Ok(_) => {
                tracing::info!("node {id} joined the cluster through {member}");
                return;
            }
            Err(s) if s.code() == tonic::Code::AlreadyExists || s.code() == tonic::Code::InvalidArgument => {
                tracing::error!("node {id} cannot join through {member}: {}", s.message());
                return;
            }
            Err(s) => tracing::warn!("node {id} joining through {member}: {}; retrying in {backoff:?}", s.message()),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// The address to advertise when none is given: the bound address, with an unspecified IP
/// (`0.0.0.0`, `::`) replaced by loopback, since peers cannot dial "any".
fn advertised_default(bound: SocketAddr) -> String {
    let mut a = bound;
    if a.ip().is_unspecified() {
        tracing::warn!("listening on {bound} with no --advertise; advertising loopback, which only local peers reach");
        a.set_ip(if a.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    a.to_string()
}

/// The accepted connections of `listener`, as tonic's server takes them, each counted in
/// `connections` while it is open.
fn incoming(
    listener: TcpListener,
    connections: Arc<Connections>,
) -> impl futures_util::Stream<Item = Result<TrackedStream, std::io::Error>> {
    futures_util::stream::unfold((listener, connections), |(listener, connections)| async move {
        // Small replies must not wait for a delayed ACK (tonic's own `tcp_nodelay` only applies
        // to listeners it binds itself).
        let next = listener.accept().await.map(|(stream, _)| {
            let _ = stream.set_nodelay(true);
            connections.track(stream)
        });
        Some((next, (listener, connections)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listen_address_advertises_loopback() {
        assert_eq!(advertised_default("0.0.0.0:1369".parse().expect("addr")), "127.0.0.1:1369");
        assert_eq!(advertised_default("10.1.2.3:7".parse().expect("addr")), "10.1.2.3:7");
    }
}
