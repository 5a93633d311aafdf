//! Ahnlich's `services.db_service.DBService` on a Raft node.
//!
//! - Writes are checked against the current state first ([`Engine::validate`]): a bad write is
//!   answered at once and never proposed. A good one is proposed through Raft and answered
//!   with the result its application produced (which may still be a user error, the same on
//!   every replica).
//! - Reads are linearizable: the node confirms its leadership and waits until it has applied
//!   the read index, then answers from its engine.
//! - `Pipeline` runs its queries in order; each slot gets its own result or error, and one
//!   failing query does not stop the others.
//!
//! - Any node serves any request. A write (or a pipeline holding one) sent to a follower is
//!   forwarded to the leader, once; with no leader known after a short wait the answer is
//!   UNAVAILABLE. Reads are served where they arrive, linearizable by default (a follower asks
//!   the leader for its read index and waits until it has applied it), or from local state
//!   when the request's `x-ahnlich-read-consistency` is `local` (or the node's default is).
//! - A write whose encoded command would not fit a Raft message is refused before it is
//!   proposed (RESOURCE_EXHAUSTED).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::raft::network::PeerChannel;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::{ReadPolicy, ServerState};
use prost::Message as _;
use tonic::{Request, Response as Reply, Status};

use super::context::{FORWARDED, NodeContext, ReadConsistency, Route, forwarded};
use super::convert::{self, status};
use crate::engine::{Command, Engine, Query, Response};
use crate::proto::ahnlich::db::{pipeline as pl, query as q, server as s};
use crate::proto::ahnlich::services::db_service::db_service_client::DbServiceClient;
use crate::proto::ahnlich::services::db_service::db_service_server::DbService;
use crate::proto::ahnlich::shared::{cluster, info};
use crate::proto::ahnlich::{client, server_types};

/// How long a follower waits to apply the leader's read index before giving up.
const READ_INDEX_WAIT: Duration = Duration::from_secs(5);

/// Room left in a Raft message for everything but one command.
pub(super) const RAFT_MESSAGE_OVERHEAD: usize = 64 << 10;

/// The DB API of one node.
pub struct DbApi {
    ctx: Arc<NodeContext>,
}

fn unavailable(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("no leader can serve the request right now: {e}"))
}

fn unexpected(what: &str) -> Status {
    Status::internal(format!("the engine answered {what} with an unexpected response kind"))
}

fn count(r: Response, what: &str) -> Result<u64, Status> {
    match r {
        Response::Count(n) => Ok(n as u64),
        _ => Err(unexpected(what)),
    }
}

/// `cmd`, checked against the engine's state, and the size of its encoding.
/// A command after the engine checked it.
enum Checked {
    /// Taken: the command and its encoded size.
    Taken(Command, usize),
    /// Refused: the command back, and why.
    Refused(Command, Status),
}

fn check_with(engine: &Engine, cmd: Command) -> Checked {
    match engine.validate(&cmd) {
        Ok(()) => {
            let size = crate::raft::command::encoded_len(&cmd);
            Checked::Taken(cmd, size)
        }
        Err(e) => Checked::Refused(cmd, status(e)),
    }
}

/// The memory the machine can still give out (`MemAvailable` in `/proc/meminfo`), if known.
fn available_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.trim_start_matches("MemAvailable:").trim().trim_end_matches("kB").trim().parse().ok()?;
    kib.checked_mul(1024)
}

fn unix_seconds(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()).to_string()
}

impl DbApi {
    /// The API of the node described by `ctx`.
    pub fn new(ctx: Arc<NodeContext>) -> Self {
        Self { ctx }
    }

    fn engine(&self) -> Arc<Engine> {
        self.ctx.state.engine()
    }

    fn leader_client(&self, channel: PeerChannel) -> DbServiceClient<PeerChannel> {
        DbServiceClient::new(channel)
            .max_decoding_message_size(self.ctx.max_message_bytes)
            .max_encoding_message_size(self.ctx.max_message_bytes)
    }

    fn seen<T>(&self, req: &Request<T>) {
        // A request a follower forwards comes over a peer's connection: not a client's.
        if let Some(peer) = req.remote_addr().filter(|_| !req.metadata().contains_key(FORWARDED)) {
            self.ctx.connections.called_db_api(peer);
        }
    }

    /// Proposes `cmd` on this node, which leads (callers route first).
    async fn write(&self, cmd: Command) -> Result<Response, Status> {
        let (cmd, size) = match self.check(cmd).await? {
            Checked::Taken(cmd, size) => (cmd, size),
            // A refusal rests on this node's state, which must first be shown to hold every
            // write committed before the request: a deposed leader that has not heard of its
            // successor yet would otherwise refuse on stale state (say, an Upsert whose entry a
            // newer write has just created). So confirm leadership with a quorum, catch up
            // with what it committed, and check again.
            Checked::Refused(cmd, _) => {
                self.ctx.raft.ensure_linearizable(ReadPolicy::ReadIndex).await.map_err(unavailable)?;
                match self.check(cmd).await? {
                    Checked::Taken(cmd, size) => (cmd, size),
                    Checked::Refused(_, refusal) => return Err(refusal),
                }
            }
        };
        let limit = self.ctx.max_raft_message_bytes.saturating_sub(RAFT_MESSAGE_OVERHEAD);
        if size > limit {
            return Err(Status::resource_exhausted(format!(
                "this {} is {size} bytes once encoded, more than the {limit} bytes one Raft entry may carry; \
                 send it in smaller parts",
                cmd.name()
            )));
        }
        let wait = self.ctx.commit_wait;
        let proposed = tokio::time::timeout(wait, self.ctx.proposer.propose(cmd, size)).await.map_err(|_| {
            Status::unavailable(format!(
                "the write was not committed within {wait:?} (is a majority of the cluster reachable?); it may still \
                 be applied"
            ))
        })?;
        proposed?.map_err(status)
    }

    /// Checks `cmd` against the engine (off the reactor when that may take long).
    async fn check(&self, cmd: Command) -> Result<Checked, Status> {
        if cmd.may_take_long() {
            self.off_the_reactor(move |engine| check_with(&engine, cmd)).await
        } else {
            Ok(check_with(&self.engine(), cmd))
        }
    }

    /// Answers `query` once the consistency asked for is assured, if its answer fits.
    async fn read(&self, query: Query, how: ReadAs) -> Result<Response, Status> {
        if how.consistency == ReadConsistency::Linearizable {
            self.linearize().await?;
        }
        // The estimate counts a few bytes of framing per field more than protobuf uses, which
        // covers the answer's own few fields.
        let max_bytes = how.max_answer_bytes;
        self.off_the_reactor(move |engine| engine.query_within(&query, max_bytes).map_err(status)).await?
    }

    /// How a read RPC's answer is read: at the consistency its metadata asks for, within the
    /// message limit.
    fn read_as(&self, metadata: &tonic::metadata::MetadataMap) -> Result<ReadAs, Status> {
        Ok(ReadAs { consistency: self.ctx.read_consistency(metadata)?, max_answer_bytes: self.ctx.max_message_bytes })
    }

    /// Runs `work` on the engine in the blocking pool, at most one piece per core at a time
    /// (more would only share the cores); the runtime's workers, which drive Raft's heartbeats
    /// and elections, never wait for it. Callers beyond that wait their turn without a thread.
    async fn off_the_reactor<T: Send + 'static>(
        &self,
        work: impl FnOnce(Arc<Engine>) -> T + Send + 'static,
    ) -> Result<T, Status> {
        let turn =
            self.ctx.engine_work.clone().acquire_owned().await.map_err(|_| unavailable("the node is stopping"))?;
        let engine = self.engine();
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            work(engine)
        })
        .await
        .map_err(|e| Status::internal(format!("the engine failed on this request: {e}")))
    }

    /// Returns once this node has applied every write acknowledged before the call.
    async fn linearize(&self) -> Result<(), Status> {
        let (leader, addr) = self.ctx.await_leader().await?;
        if leader == self.ctx.id {
            return self.ctx.raft.ensure_linearizable(ReadPolicy::ReadIndex).await.map(|_| ()).map_err(unavailable);
        }
        let index = self
            .ctx
            .network
            .read_index(leader, &addr, READ_INDEX_WAIT)
            .await
            .map_err(|e| Status::unavailable(format!("asking leader {leader} for a read index: {e}")))?;
        self.ctx
            .raft
            .wait(Some(READ_INDEX_WAIT))
            .applied_index_at_least(Some(index), "the leader's read index")
            .await
            .map(|_| ())
            .map_err(|e| {
                Status::unavailable(format!("this follower did not catch up with the leader's read index: {e}"))
            })
    }

    async fn create_store(&self, r: q::CreateStore) -> Result<s::Unit, Status> {
        self.write(convert::create_store(r)?).await.map(|_| s::Unit {})
    }

    async fn create_pred_index(&self, r: q::CreatePredIndex) -> Result<s::CreateIndex, Status> {
        let cmd = Command::CreatePredIndex { store: convert::store_ref(r.schema, r.store), predicates: r.predicates };
        Ok(s::CreateIndex { created_indexes: count(self.write(cmd).await?, "CreatePredIndex")? })
    }

    async fn create_non_linear(&self, r: q::CreateNonLinearAlgorithmIndex) -> Result<s::CreateIndex, Status> {
        let cmd = Command::CreateNonLinearIndex {
            store: convert::store_ref(r.schema, r.store),
            indexes: r.non_linear_indices.into_iter().map(convert::non_linear).collect::<Result<_, _>>()?,
        };
        Ok(s::CreateIndex { created_indexes: count(self.write(cmd).await?, "CreateNonLinearAlgorithmIndex")? })
    }

    async fn get_key(&self, r: q::GetKey, how: ReadAs) -> Result<s::Get, Status> {
        let query = Query::GetKey { store: convert::store_ref(r.schema, r.store), keys: convert::keys(r.keys) };
        match self.read(query, how).await? {
            Response::Entries(v) => Ok(s::Get { entries: v.into_iter().map(convert::entry_out).collect() }),
            _ => Err(unexpected("GetKey")),
        }
    }

    async fn get_pred(&self, r: q::GetPred, how: ReadAs) -> Result<s::Get, Status> {
        let condition = convert::condition(r.condition, "the condition")?;
        let query = Query::GetPred { store: convert::store_ref(r.schema, r.store), condition };
        match self.read(query, how).await? {
            Response::Entries(v) => Ok(s::Get { entries: v.into_iter().map(convert::entry_out).collect() }),
            _ => Err(unexpected("GetPred")),
        }
    }

    async fn get_sim_n(&self, r: q::GetSimN, how: ReadAs) -> Result<s::GetSimN, Status> {
        let query = Query::GetSimN {
            store: convert::store_ref(r.schema, r.store),
            search: convert::key(r.search_input, "search_input")?,
            closest_n: usize::try_from(r.closest_n).unwrap_or(usize::MAX),
            algorithm: convert::algorithm(r.algorithm, r.ef_search)?,
            condition: r.condition.map(|c| convert::condition(Some(c), "the condition")).transpose()?,
        };
        match self.read(query, how).await? {
            Response::Similar(v) => Ok(s::GetSimN {
                entries: v
                    .into_iter()
                    .map(|(e, score)| {
                        let e = convert::entry_out(e);
                        s::GetSimNEntry {
                            key: e.key,
                            value: e.value,
                            similarity: Some(crate::proto::ahnlich::similarity::Similarity { value: score }),
                        }
                    })
                    .collect(),
            }),
            _ => Err(unexpected("GetSimN")),
        }
    }

    async fn get_store(&self, r: q::GetStore, how: ReadAs) -> Result<s::StoreInfo, Status> {
        match self.read(Query::GetStore { store: convert::store_ref(r.schema, r.store) }, how).await? {
            Response::Store(i) => Ok(convert::store_info_out(i)),
            _ => Err(unexpected("GetStore")),
        }
    }

    async fn list_store_entries(&self, r: q::ListStoreEntries, how: ReadAs) -> Result<s::ListStoreEntries, Status> {
        let query = Query::ListStoreEntries {
            store: convert::store_ref(r.schema, r.store),
            cursor: r.cursor,
            limit: r.limit.map_or(100, |l| l as usize),
            condition: r.condition.map(|c| convert::condition(Some(c), "the condition")).transpose()?,
        };
        match self.read(query, how).await? {
            Response::Page { entries, next_cursor } => {
                Ok(s::ListStoreEntries { entries: entries.into_iter().map(convert::entry_out).collect(), next_cursor })
            }
            _ => Err(unexpected("ListStoreEntries")),
        }
    }

    async fn set(&self, r: q::Set) -> Result<s::Set, Status> {
        match self.write(convert::set(r)?).await? {
            Response::Set { inserted, updated } => {
                Ok(s::Set { upsert: Some(info::StoreUpsert { inserted: inserted as u64, updated: updated as u64 }) })
            }
            _ => Err(unexpected("Set")),
        }
    }

    async fn upsert(&self, r: q::Upsert) -> Result<s::Set, Status> {
        let cmd = Command::Upsert {
            store: convert::store_ref(r.schema, r.store),
            condition: convert::condition(r.condition, "the condition")?,
            new_key: r.new_key.map(|k| k.key),
            new_value: r.new_value.map(|v| convert::metadata(Some(v))).transpose()?,
            merge_metadata: r.merge_metadata,
        };
        match self.write(cmd).await? {
            Response::Set { inserted, updated } => {
                Ok(s::Set { upsert: Some(info::StoreUpsert { inserted: inserted as u64, updated: updated as u64 }) })
            }
            _ => Err(unexpected("Upsert")),
        }
    }

    async fn deleted(&self, cmd: Command) -> Result<s::Del, Status> {
        let name = cmd.name();
        Ok(s::Del { deleted_count: count(self.write(cmd).await?, name)? })
    }

    async fn drop_pred_index(&self, r: q::DropPredIndex) -> Result<s::Del, Status> {
        self.deleted(Command::DropPredIndex {
            store: convert::store_ref(r.schema, r.store),
            predicates: r.predicates,
            error_if_not_exists: r.error_if_not_exists,
        })
        .await
    }

    async fn drop_non_linear(&self, r: q::DropNonLinearAlgorithmIndex) -> Result<s::Del, Status> {
        self.deleted(Command::DropNonLinearIndex {
            store: convert::store_ref(r.schema, r.store),
            kinds: r.non_linear_indices.into_iter().map(convert::non_linear_kind).collect::<Result<_, _>>()?,
            error_if_not_exists: r.error_if_not_exists,
        })
        .await
    }

    async fn del_key(&self, r: q::DelKey) -> Result<s::Del, Status> {
        self.deleted(Command::DelKey { store: convert::store_ref(r.schema, r.store), keys: convert::keys(r.keys) })
            .await
    }

    async fn del_pred(&self, r: q::DelPred) -> Result<s::Del, Status> {
        let condition = convert::condition(r.condition, "the condition")?;
        self.deleted(Command::DelPred { store: convert::store_ref(r.schema, r.store), condition }).await
    }

    async fn drop_store(&self, r: q::DropStore) -> Result<s::Del, Status> {
        let store = convert::store_ref(r.schema, r.store);
        self.deleted(Command::DropStore { store, error_if_not_exists: r.error_if_not_exists }).await
    }

    async fn drop_schema(&self, r: q::DropSchema) -> Result<s::Del, Status> {
        self.deleted(Command::DropSchema { schema: r.schema }).await
    }

    async fn clear_store(&self, r: q::ClearStore) -> Result<s::Del, Status> {
        self.deleted(Command::ClearStore { store: convert::store_ref(r.schema, r.store) }).await
    }

    fn list_clients(&self) -> s::ClientList {
        s::ClientList {
            clients: (self.ctx.connections.clients().into_iter())
                .map(|c| client::ConnectedClient { address: c.addr.to_string(), time_connected: unix_seconds(c.since) })
                .collect(),
        }
    }

    async fn list_stores(&self, r: q::ListStores, how: ReadAs) -> Result<s::StoreList, Status> {
        match self.read(Query::ListStores { schema: r.schema }, how).await? {
            Response::Stores(v) => Ok(s::StoreList { stores: v.into_iter().map(convert::store_info_out).collect() }),
            _ => Err(unexpected("ListStores")),
        }
    }

    fn info_server(&self) -> s::InfoServer {
        let engine = self.engine();
        let used = engine.used_bytes() as u64;
        // Under a cap, what the cap leaves; without one, what the machine has free.
        let (limit, remaining) = match engine.limits().max_memory_bytes {
            Some(cap) => (cap as u64, (cap as u64).saturating_sub(used)),
            None => {
                let available = available_memory_bytes().unwrap_or(0);
                (used.saturating_add(available), available)
            }
        };
        s::InfoServer {
            info: Some(info::ServerInfo {
                address: self.ctx.addr.clone(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                r#type: server_types::ServerType::Database as i32,
                limit,
                remaining,
            }),
        }
    }

    fn cluster_info(&self) -> cluster::ClusterInfoResponse {
        let m = self.ctx.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        let nodes = membership
            .nodes()
            .map(|(id, node)| {
                let role = if m.current_leader == Some(*id) {
                    cluster::NodeRole::Leader
                } else if voters.contains(id) {
                    cluster::NodeRole::Follower
                } else {
                    cluster::NodeRole::Learner
                };
                let health = if *id == m.id && m.state != ServerState::Shutdown {
                    cluster::NodeHealthStatus::Healthy
                } else {
                    match m.replication.as_ref().and_then(|r| r.get(id)) {
                        Some(Some(_)) => cluster::NodeHealthStatus::Healthy,
                        Some(None) => cluster::NodeHealthStatus::Unreachable,
                        None => cluster::NodeHealthStatus::Unspecified,
                    }
                };
                cluster::ClusterNode {
                    node_id: *id,
                    addr: node.addr.clone(),
                    role: role as i32,
                    health: health as i32,
                    term: Some(m.current_term),
                    // This node's applied index for itself; what the leader knows is replicated
                    // for the others (a follower does not know).
                    commit_index: if *id == m.id {
                        m.last_applied.map(|l| l.index)
                    } else {
                        m.replication.as_ref().and_then(|r| r.get(id).cloned().flatten()).map(|l| l.index)
                    },
                }
            })
            .collect();
        cluster::ClusterInfoResponse { nodes }
    }

    async fn one(&self, query: pl::DbQuery, c: ReadAs) -> pl::DbServerResponse {
        use pl::db_query::Query as In;
        use pl::db_server_response::Response as Out;
        let result: Result<Out, Status> = match query.query {
            None => Err(Status::invalid_argument("a pipeline query has no kind set")),
            Some(In::CreateStore(r)) => self.create_store(r).await.map(Out::Unit),
            Some(In::GetKey(r)) => self.get_key(r, c).await.map(Out::Get),
            Some(In::GetPred(r)) => self.get_pred(r, c).await.map(Out::Get),
            Some(In::GetSimN(r)) => self.get_sim_n(r, c).await.map(Out::GetSimN),
            Some(In::CreatePredIndex(r)) => self.create_pred_index(r).await.map(Out::CreateIndex),
            Some(In::CreateNonLinearAlgorithmIndex(r)) => self.create_non_linear(r).await.map(Out::CreateIndex),
            Some(In::DropPredIndex(r)) => self.drop_pred_index(r).await.map(Out::Del),
            Some(In::DropNonLinearAlgorithmIndex(r)) => self.drop_non_linear(r).await.map(Out::Del),
            Some(In::Set(r)) => self.set(r).await.map(Out::Set),
            Some(In::DelKey(r)) => self.del_key(r).await.map(Out::Del),
            Some(In::DelPred(r)) => self.del_pred(r).await.map(Out::Del),
            Some(In::DropStore(r)) => self.drop_store(r).await.map(Out::Del),
            Some(In::InfoServer(_)) => Ok(Out::InfoServer(self.info_server())),
            Some(In::ListStores(r)) => self.list_stores(r, c).await.map(Out::StoreList),
            Some(In::ListClients(_)) => Ok(Out::ClientList(self.list_clients())),
            Some(In::Ping(_)) => Ok(Out::Pong(s::Pong {})),
            Some(In::GetStore(r)) => self.get_store(r, c).await.map(Out::StoreInfo),
            Some(In::ClusterInfo(_)) => Ok(Out::ClusterInfo(self.cluster_info())),
            Some(In::DropSchema(r)) => self.drop_schema(r).await.map(Out::Del),
            Some(In::Upsert(r)) => self.upsert(r).await.map(Out::Set),
            Some(In::ListStoreEntries(r)) => self.list_store_entries(r, c).await.map(Out::ListStoreEntries),
            Some(In::ClearStore(r)) => self.clear_store(r).await.map(Out::Del),
        };
        let response = result.unwrap_or_else(|e| {
            Out::Error(info::ErrorResponse { message: e.message().to_string(), code: e.code() as i32 })
        });
        pl::DbServerResponse { response: Some(response) }
    }
}

/// A write RPC: served here on the leader, forwarded to the leader from a follower.
macro_rules! leader_rpc {
    ($self:ident, $request:ident, $internal:ident, $rpc:ident) => {{
        $self.seen(&$request);
        $self.ctx.ensure_member().await?;
        match $self.ctx.route($request.metadata()).await? {
            Route::Here => DbApi::$internal($self, $request.into_inner()).await.map(Reply::new),
            Route::Leader { channel, .. } => $self.leader_client(channel).$rpc(forwarded($request.into_inner())).await,
        }
    }};
}

/// A read RPC, at the consistency the request asks for.
macro_rules! read_rpc {
    ($self:ident, $request:ident, $internal:ident) => {{
        $self.seen(&$request);
        $self.ctx.ensure_member().await?;
        let how = $self.read_as($request.metadata())?;
        DbApi::$internal($self, $request.into_inner(), how).await.map(Reply::new)
    }};
}

/// How a read is answered.
#[derive(Clone, Copy, Debug)]
struct ReadAs {
    /// Linearizable or local.
    consistency: ReadConsistency,
    /// The most its answer may take (the message limit, less what a pipeline answered before).
    max_answer_bytes: usize,
}

/// Bytes a pipeline response adds around each answer (its tag and length).
const PIPELINE_FRAMING_BYTES: usize = 16;

/// Whether a pipeline query changes state (and so must run on the leader).
fn is_write(query: &pl::DbQuery) -> bool {
    use pl::db_query::Query as In;
    matches!(
        query.query,
        Some(
            In::CreateStore(_)
                | In::CreatePredIndex(_)
                | In::CreateNonLinearAlgorithmIndex(_)
                | In::DropPredIndex(_)
                | In::DropNonLinearAlgorithmIndex(_)
                | In::Set(_)
                | In::DelKey(_)
                | In::DelPred(_)
                | In::DropStore(_)
                | In::DropSchema(_)
                | In::Upsert(_)
                | In::ClearStore(_)
        )
    )
}

#[tonic::async_trait]
impl DbService for DbApi {
    async fn create_store(&self, request: Request<q::CreateStore>) -> Result<Reply<s::Unit>, Status> {
        leader_rpc!(self, request, create_store, create_store)
    }

    async fn create_pred_index(&self, request: Request<q::CreatePredIndex>) -> Result<Reply<s::CreateIndex>, Status> {
        leader_rpc!(self, request, create_pred_index, create_pred_index)
    }

    async fn create_non_linear_algorithm_index(
        &self,
        request: Request<q::CreateNonLinearAlgorithmIndex>,
    ) -> Result<Reply<s::CreateIndex>, Status> {
        leader_rpc!(self, request, create_non_linear, create_non_linear_algorithm_index)
    }

    async fn get_key(&self, request: Request<q::GetKey>) -> Result<Reply<s::Get>, Status> {
        read_rpc!(self, request, get_key)
    }

    async fn get_pred(&self, request: Request<q::GetPred>) -> Result<Reply<s::Get>, Status> {
        read_rpc!(self, request, get_pred)
    }

    async fn get_sim_n(&self, request: Request<q::GetSimN>) -> Result<Reply<s::GetSimN>, Status> {
        read_rpc!(self, request, get_sim_n)
    }

    async fn get_store(&self, request: Request<q::GetStore>) -> Result<Reply<s::StoreInfo>, Status> {
        read_rpc!(self, request, get_store)
    }

    async fn list_store_entries(
        &self,
        request: Request<q::ListStoreEntries>,
    ) -> Result<Reply<s::ListStoreEntries>, Status> {
        read_rpc!(self, request, list_store_entries)
    }

    async fn set(&self, request: Request<q::Set>) -> Result<Reply<s::Set>, Status> {
        leader_rpc!(self, request, set, set)
    }

    async fn upsert(&self, request: Request<q::Upsert>) -> Result<Reply<s::Set>, Status> {
        leader_rpc!(self, request, upsert, upsert)
    }

    async fn drop_pred_index(&self, request: Request<q::DropPredIndex>) -> Result<Reply<s::Del>, Status> {
        leader_rpc!(self, request, drop_pred_index, drop_pred_index)
    }

    async fn drop_non_linear_algorithm_index(
        &self,
        request: Request<q::DropNonLinearAlgorithmIndex>,
    ) -> Result<Reply<s::Del>, Status> {
        leader_rpc!(self, request, drop_non_linear, drop_non_linear_algorithm_index)
    }

    async fn del_key(&self, request: Request<q::DelKey>) -> Result<Reply<s::Del>, Status> {
        leader_rpc!(self, request, del_key, del_key)
    }

    async fn del_pred(&self, request: Request<q::DelPred>) -> Result<Reply<s::Del>, Status> {
        leader_rpc!(self, request, del_pred, del_pred)
    }

    async fn drop_store(&self, request: Request<q::DropStore>) -> Result<Reply<s::Del>, Status> {
        leader_rpc!(self, request, drop_store, drop_store)
    }

    async fn drop_schema(&self, request: Request<q::DropSchema>) -> Result<Reply<s::Del>, Status> {
        leader_rpc!(self, request, drop_schema, drop_schema)
    }

    async fn clear_store(&self, request: Request<q::ClearStore>) -> Result<Reply<s::Del>, Status> {
        leader_rpc!(self, request, clear_store, clear_store)
    }

    async fn list_clients(&self, request: Request<q::ListClients>) -> Result<Reply<s::ClientList>, Status> {
        self.seen(&request);
        Ok(Reply::new(DbApi::list_clients(self)))
    }

    async fn list_stores(&self, request: Request<q::ListStores>) -> Result<Reply<s::StoreList>, Status> {
        read_rpc!(self, request, list_stores)
    }

    async fn info_server(&self, request: Request<q::InfoServer>) -> Result<Reply<s::InfoServer>, Status> {
        self.seen(&request);
        Ok(Reply::new(DbApi::info_server(self)))
    }

    async fn cluster_info(
        &self,
        request: Request<cluster::ClusterInfoQuery>,
    ) -> Result<Reply<cluster::ClusterInfoResponse>, Status> {
        self.seen(&request);
        Ok(Reply::new(DbApi::cluster_info(self)))
    }

    async fn ping(&self, request: Request<q::Ping>) -> Result<Reply<s::Pong>, Status> {
        self.seen(&request);
        Ok(Reply::new(s::Pong {}))
    }

    async fn pipeline(&self, request: Request<pl::DbRequestPipeline>) -> Result<Reply<pl::DbResponsePipeline>, Status> {
        self.seen(&request);
        self.ctx.ensure_member().await?;
        let how = self.read_as(request.metadata())?;
        if request.get_ref().queries.iter().any(is_write)
            && let Route::Leader { channel, .. } = self.ctx.route(request.metadata()).await?
        {
            return self.leader_client(channel).pipeline(forwarded(request.into_inner())).await;
        }
        // The answers share one message: each read gets what the answers before it left.
        let mut left = how.max_answer_bytes;
        let mut responses = Vec::new();
        for query in request.into_inner().queries {
            let read = !is_write(&query);
            let mut response = self.one(query, ReadAs { max_answer_bytes: left, ..how }).await;
            if read
                && left < how.max_answer_bytes
                && let Some(pl::db_server_response::Response::Error(e)) = &mut response.response
                && e.code == tonic::Code::ResourceExhausted as i32
            {
                e.message.push_str(&format!(
                    " (the pipeline's earlier answers took {} of the {}-byte limit: send the rest in another \
                     pipeline)",
                    how.max_answer_bytes - left,
                    how.max_answer_bytes
                ));
            }
            left = left.saturating_sub(response.encoded_len() + PIPELINE_FRAMING_BYTES);
            responses.push(response);
        }
        Ok(Reply::new(pl::DbResponsePipeline { responses }))
    }
}
