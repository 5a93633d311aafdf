//! The Raft network between nodes: gRPC (`proto/ahnlich_raft/raft.proto`) over one cached
//! channel per peer address.
//!
//! - Appends never exceed the transport's message limit: a unary append sends the prefix of
//!   its entries that fits and reports a partial success (openraft sends the rest next); a
//!   streamed append splits an oversized request into several wire messages and merges their
//!   replies back into one, so openraft sees one reply per request, in order.
//! - Snapshots are streamed from the mapped snapshot file while the call is in flight, one
//!   chunk at a time; the whole file is never copied into memory.
//! - A peer that cannot be reached is reported as `Unreachable`, which makes openraft back off
//!   before retrying.
//! - A [`LinkFaults`] hook lets tests cut links, delay and drop messages between nodes running
//!   in one process; a node without one sends every message.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{StreamExt, stream};
use openraft::base::{BoxFuture, BoxStream};
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::{SnapshotOf, VoteOf};
use openraft::{BasicNode, OptionalSend};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::codec::{pb_log_id, vote_from_pb, vote_to_pb};
use super::eviction::Eviction;
use super::state_machine::SnapshotData;
use super::types::TypeConfig;
use super::wire::{self, entry_wire_len};
use crate::metrics::Metrics;
use crate::progress::Progress;
use crate::proto::raft as pb;
use crate::proto::raft::raft_service_client::RaftServiceClient;

/// Metadata key marking a refusal sent to a node that is not a member (see [`super::eviction`]).
pub const NOT_MEMBER: &str = "x-ahnlich-raft-not-member";

/// Whether `status` is a peer's refusal sent because this node is not a member.
pub fn is_not_member(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::FailedPrecondition && status.metadata().contains_key(NOT_MEMBER)
}

/// Bytes of a snapshot file sent per message.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// Room left in every append message for everything but the entries' payloads.
const APPEND_OVERHEAD: usize = 64 << 10;

/// Headers put on every call a node makes to a peer (the server decides which: its cluster id).
pub type Stamp = Arc<dyn Fn(&mut tonic::metadata::MetadataMap) + Send + Sync>;

/// Stamps every request on a channel to a peer.
#[derive(Clone)]
pub struct StampPeerCalls(Stamp);

impl tonic::service::Interceptor for StampPeerCalls {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        (self.0)(request.metadata_mut());
        Ok(request)
    }
}

/// A channel to a peer: its calls carry the node's stamp.
pub type PeerChannel = InterceptedService<Channel, StampPeerCalls>;

/// One lazily connected channel per peer address, shared by everything a node sends to its
/// peers (Raft messages, forwarded requests, admin calls); over TLS with this node's
/// certificate when the cluster has a CA.
pub struct Channels {
    by_addr: Mutex<HashMap<String, PeerChannel>>,
    tls: Option<ClientTlsConfig>,
    stamp: Stamp,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels").field("tls", &self.tls.is_some()).finish_non_exhaustive()
    }
}

impl Default for Channels {
    /// Plain-text channels whose calls carry nothing extra.
    fn default() -> Self {
        Self::new(None, Arc::new(|_| {}))
    }
}

impl Channels {
    /// Channels using `tls` (the cluster CA and this node's certificate) if given, each call
    /// stamped by `stamp`.
    pub fn new(tls: Option<ClientTlsConfig>, stamp: Stamp) -> Self {
        Self { by_addr: Mutex::new(HashMap::new()), tls, stamp }
    }

    /// The channel to `addr` (`host:port`), created on first use; it connects when first used
    /// and reconnects by itself after the peer restarts. For members' addresses only: an
    /// address a caller supplies goes through [`Channels::uncached`].
    pub fn get(&self, addr: &str) -> Result<PeerChannel, String> {
        let mut map = self.by_addr.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let channel = self.uncached(addr)?;
        map.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// Forgets the channels to every address not in `keep` (the members').
    pub fn keep_only(&self, keep: &std::collections::BTreeSet<String>) {
        self.by_addr.lock().unwrap_or_else(|p| p.into_inner()).retain(|addr, _| keep.contains(addr));
    }

    /// How many addresses have a cached channel.
    pub fn cached(&self) -> usize {
        self.by_addr.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// A channel to `addr` that is not kept: for an address a caller supplies, so that no
    /// caller can make the cache grow.
    pub fn uncached(&self, addr: &str) -> Result<PeerChannel, String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| format!("peer address {addr:?} is not a valid host:port: {e}"))?;
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.clone()).map_err(|e| format!("TLS to the peer at {addr}: {e}"))?;
        }
        let channel = endpoint
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(3))
            .keep_alive_while_idle(true)
            .http2_adaptive_window(true)
            .connect_lazy();
        Ok(InterceptedService::new(channel, StampPeerCalls(self.stamp.clone())))
    }
}

/// Decides whether a Raft message from one node to another goes through, and after what
/// delay: the hook through which tests inject network faults (`net_faults`, feature
/// `testing`). A node without one sends every message at once.
pub trait LinkFaults: std::fmt::Debug + Send + Sync {
    /// `Ok(delay)` to send the message from `from` to `to` after `delay`; `Err(why)` to lose it.
    fn admit(&self, from: u64, to: u64) -> Result<Duration, String>;
}

/// Builds a [`PeerClient`] per target; what openraft asks for.
#[derive(Clone, Debug)]
pub struct GrpcNetwork {
    me: u64,
    channels: Arc<Channels>,
    max_message_bytes: usize,
    faults: Option<Arc<dyn LinkFaults>>,
    eviction: Arc<Eviction>,
    metrics: Option<Arc<Metrics>>,
}

impl GrpcNetwork {
    /// The network of node `me`, sending messages of at most `max_message_bytes`; a peer's
    /// answer that `me` is no longer a member is recorded in `eviction`.
    pub fn new(
        me: u64,
        channels: Arc<Channels>,
        max_message_bytes: usize,
        faults: Option<Arc<dyn LinkFaults>>,
        eviction: Arc<Eviction>,
    ) -> Self {
        Self { me, channels, max_message_bytes, faults, eviction, metrics: None }
    }

    /// The same network, counting the snapshots it sends in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn peer(&self, target: u64, addr: &str) -> PeerClient {
        PeerClient {
            from: self.me,
            target,
            addr: addr.to_owned(),
            channel: self.channels.get(addr),
            max_message_bytes: self.max_message_bytes,
            faults: self.faults.clone(),
            eviction: self.eviction.clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// Asks `leader` (at `addr`) for its read index: the log index a read must see applied
    /// to be linearizable, once the leader has confirmed with a quorum that it still leads.
    /// Travels like every Raft message (same channel, faults and eviction handling).
    pub async fn read_index(&self, leader: u64, addr: &str, timeout: Duration) -> Result<u64, String> {
        let peer = self.peer(leader, addr);
        let mut client = peer.client().await.map_err(|e| e.to_string())?;
        let option = RPCOption::new(timeout);
        let reply = peer.unary(&option, client.read_index(pb::ReadIndexRequest {})).await.map_err(|e| e.to_string())?;
        Ok(reply.read_index)
    }
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        self.peer(target, &node.addr)
    }
}

/// The connection to one peer.
pub struct PeerClient {
    from: u64,
    target: u64,
    addr: String,
    channel: Result<PeerChannel, String>,
    max_message_bytes: usize,
    faults: Option<Arc<dyn LinkFaults>>,
    eviction: Arc<Eviction>,
    metrics: Option<Arc<Metrics>>,
}

fn unreachable(e: impl std::fmt::Display) -> Unreachable<TypeConfig> {
    Unreachable::from_string(e)
}

/// A failed call as openraft's error: unreachable (back off) when the peer is down or gone,
/// a network error (retry) otherwise.
fn rpc_error(target: u64, addr: &str, s: tonic::Status) -> RPCError<TypeConfig> {
    let msg = format!("node {target} at {addr}: {}: {}", s.code(), s.message());
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::Unknown => {
            RPCError::Unreachable(unreachable(msg))
        }
        _ => RPCError::Network(NetworkError::from_string(msg)),
    }
}

impl PeerClient {
    async fn client(&self) -> Result<RaftServiceClient<PeerChannel>, Unreachable<TypeConfig>> {
        let delay = match &self.faults {
            Some(f) => f.admit(self.from, self.target).map_err(unreachable)?,
            None => Duration::ZERO,
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let channel = self.channel.clone().map_err(unreachable)?;
        Ok(RaftServiceClient::new(channel)
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes))
    }

    fn malformed(&self, e: wire::WireError) -> RPCError<TypeConfig> {
        RPCError::Network(NetworkError::from_string(format!("node {} at {}: {e}", self.target, self.addr)))
    }

    async fn unary<T>(
        &self,
        option: &RPCOption,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, RPCError<TypeConfig>> {
        match tokio::time::timeout(option.hard_ttl(), call).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => {
                if is_not_member(&s) {
                    self.eviction.record(format!("node {} answered: {}", self.target, s.message()));
                }
                Err(rpc_error(self.target, &self.addr, s))
            }
            Err(_) => Err(RPCError::Network(NetworkError::from_string(format!(
                "node {} at {}: no answer within {:?}",
                self.target,
                self.addr,
                option.hard_ttl()
            )))),
        }
    }

    fn entry_budget(&self) -> usize {
        self.max_message_bytes.saturating_sub(APPEND_OVERHEAD).max(1)
    }
}

/// The wire messages of a stream of append requests, each split to fit `budget` (how many
/// each became is pushed to `parts`), ending when the link `(from, to, faults)` is cut, as a
/// broken connection would.
fn wire_messages<S>(
    input: S,
    (from, to, faults): (u64, u64, Option<Arc<dyn LinkFaults>>),
    budget: usize,
    parts: Arc<Mutex<VecDeque<usize>>>,
) -> impl futures_util::Stream<Item = pb::AppendRequest> + Send + 'static
where
    S: futures_util::Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + 'static,
{
    input
        .take_while(move |_| {
            let open = match &faults {
                Some(f) => f.admit(from, to).is_ok(),
                None => true,
            };
            std::future::ready(open)
        })
        .flat_map(move |req| {
            let msgs = split_chained(&req, budget);
            parts.lock().unwrap_or_else(|p| p.into_inner()).push_back(msgs.len());
            stream::iter(msgs)
        })
}

/// Splits `req` into wire messages whose entries each fit `budget` bytes (a single entry larger
/// than the budget travels alone), chained by their previous log ids. A message never tells
/// the follower a commit point beyond its own last entry.
fn split_chained(req: &AppendEntriesRequest<TypeConfig>, budget: usize) -> Vec<pb::AppendRequest> {
    let mut out = Vec::new();
    let mut prev = req.prev_log_id;
    let mut batch = Vec::new();
    let mut batch_last = None;
    let mut size = 0;
    for e in &req.entries {
        let w = wire::entry_out(e);
        let len = entry_wire_len(&w);
        if !batch.is_empty() && size + len > budget {
            let commit = req.leader_commit.min(batch_last);
            out.push(wire::append_parts(&req.vote, prev, commit, std::mem::take(&mut batch)));
            prev = batch_last;
            size = 0;
        }
        size += len;
        batch.push(w);
        batch_last = Some(e.log_id);
    }
    out.push(wire::append_parts(&req.vote, prev, req.leader_commit, batch));
    out
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        // Send the first message of the split; openraft sends the rest after a partial success.
        let mut msgs = split_chained(&rpc, self.entry_budget()).into_iter();
        let Some(msg) = msgs.next() else {
            return Err(RPCError::Network(NetworkError::from_string("an append split into no message")));
        };
        let partial = msgs.next().is_some();
        let last_sent = msg.entries.last().map_or(rpc.prev_log_id, |e| Some(super::codec::log_id(e.term, e.index)));
        let mut client = self.client().await?;
        let reply = self.unary(&option, client.append(msg)).await?;
        let reply = wire::append_reply_in(reply).map_err(|e| self.malformed(e))?;
        Ok(match reply {
            AppendEntriesResponse::Success if partial => AppendEntriesResponse::PartialSuccess(last_sent),
            other => other,
        })
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>, RPCError<TypeConfig>>,
    >
    where
        S: futures_util::Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        let _ = option;
        Box::pin(async move {
            // Take the first request before connecting: openraft sleeps out its backoff inside the
            // request stream, so a peer that is down is retried at the backoff's pace rather than
            // in a tight loop.
            let mut input = input;
            let Some(first) = input.next().await else {
                let empty: BoxStream<'s, _> = Box::pin(stream::empty());
                return Ok(empty);
            };
            let input = stream::iter([first]).chain(input);
            let mut client = self.client().await?;
            // How many wire messages each request became, in order, so replies can be merged.
            let parts = Arc::new(Mutex::new(VecDeque::<usize>::new()));
            let budget = self.entry_budget();
            let link = (self.from, self.target, self.faults.clone());
            let outgoing = wire_messages(input, link, budget, parts.clone());
            let replies =
                client.stream_append(outgoing).await.map_err(|s| rpc_error(self.target, &self.addr, s))?.into_inner();
            let (target, addr) = (self.target, self.addr.clone());
            let merged = stream::unfold(Some((replies, parts)), move |state| {
                let addr = addr.clone();
                async move {
                    let (mut replies, parts) = state?;
                    loop {
                        let next = replies.message().await;
                        let reply = match next {
                            Ok(Some(r)) => r,
                            Ok(None) if parts.lock().unwrap_or_else(|p| p.into_inner()).is_empty() => return None,
                            Ok(None) => {
                                return Some((
                                    Err(RPCError::Unreachable(unreachable(format!(
                                        "node {target} at {addr}: append stream closed with requests unanswered"
                                    )))),
                                    None,
                                ));
                            }
                            Err(s) => return Some((Err(rpc_error(target, &addr, s)), None)),
                        };
                        let result = match wire::stream_reply_in(reply) {
                            Ok(r) => r,
                            Err(e) => {
                                let msg = format!("node {target} at {addr}: {e}");
                                return Some((Err(RPCError::Network(NetworkError::from_string(msg))), None));
                            }
                        };
                        let failed = result.is_err();
                        let left = {
                            let mut p = parts.lock().unwrap_or_else(|p| p.into_inner());
                            match p.front_mut() {
                                Some(n) if *n > 1 && !failed => {
                                    *n -= 1;
                                    *n
                                }
                                _ => {
                                    p.pop_front();
                                    0
                                }
                            }
                        };
                        if left == 0 {
                            let next_state = if failed { None } else { Some((replies, parts)) };
                            return Some((Ok(result), next_state));
                        }
                    }
                }
            });
            let merged: BoxStream<'s, _> = Box::pin(merged);
            Ok(merged)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let mut client = self.client().await?;
        let reply = self.unary(&option, client.vote(wire::vote_out(&rpc))).await?;
        wire::vote_reply_in(reply).map_err(|e| self.malformed(e))
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let mut client = self.client().await?;
        let reply = self.unary(&option, client.pre_vote(wire::vote_out(&rpc))).await?;
        wire::vote_reply_in(reply).map_err(|e| self.malformed(e))
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, SnapshotData>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let mut client = self.client().await?;
        let file = snapshot.snapshot;
        let Some(last) = snapshot.meta.last_log_id else {
            return Err(StreamingError::Network(NetworkError::from_string("refusing to send a snapshot of nothing")));
        };
        let offer = pb::SnapshotChunk {
            kind: Some(pb::snapshot_chunk::Kind::Offer(pb::SnapshotOffer {
                vote: Some(vote_to_pb(&vote)),
                last_log_id: Some(pb_log_id(&last)),
                length: file.bytes().len() as u64,
            })),
        };
        let total = file.bytes().len() as u64;
        let chunks = file.bytes().len().div_ceil(SNAPSHOT_CHUNK_BYTES);
        let what =
            format!("node {} sending snapshot {} to node {} at {}", self.from, last.index, self.target, self.addr);
        tracing::info!("{what}: {total} bytes");
        let progress = Arc::new(std::sync::Mutex::new(Progress::start(what.clone(), Some(total))));
        let counted = progress.clone();
        // Each chunk is a view of the mapped file, made when the transport asks for it.
        let data = stream::iter(0..chunks).map(move |i| {
            let range = i * SNAPSHOT_CHUNK_BYTES..((i + 1) * SNAPSHOT_CHUNK_BYTES).min(file.bytes().len());
            counted.lock().unwrap_or_else(|p| p.into_inner()).advance(range.len() as u64);
            let chunk = bytes::Bytes::from_owner(MappedRange { file: file.clone(), range });
            pb::SnapshotChunk { kind: Some(pb::snapshot_chunk::Kind::Data(chunk)) }
        });
        let outgoing = stream::iter([offer]).chain(data);
        let sent = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            r = client.install_snapshot(outgoing) => r,
        };
        let reply = sent
            .map_err(|s| match rpc_error(self.target, &self.addr, s) {
                RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                RPCError::Network(n) => StreamingError::Network(n),
                other => StreamingError::Network(NetworkError::from_string(other.to_string())),
            })?
            .into_inner();
        let vote = reply.vote.map(vote_from_pb).ok_or_else(|| {
            StreamingError::Network(NetworkError::from_string(format!(
                "node {} at {}: snapshot reply without a vote",
                self.target, self.addr
            )))
        })?;
        let progress = progress.lock().unwrap_or_else(|p| p.into_inner());
        tracing::info!(
            "node {} sent snapshot {} to node {}: {}",
            self.from,
            last.index,
            self.target,
            progress.summary()
        );
        if let Some(metrics) = &self.metrics {
            metrics.snapshot("sent", progress.done(), progress.elapsed());
        }
        Ok(SnapshotResponse::new(vote))
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        let mut client = self.client().await?;
        let reply = self.unary(&option, client.transfer_leader(wire::transfer_out(&req))).await?;
        wire::transfer_reply_in(reply).map_err(|e| self.malformed(e))
    }
}

/// A range of a mapped snapshot file's bytes, kept mapped while the transport holds it.
struct MappedRange {
    file: SnapshotData,
    range: std::ops::Range<usize>,
}

impl AsRef<[u8]> for MappedRange {
    fn as_ref(&self) -> &[u8] {
        &self.file.bytes()[self.range.clone()]
    }
}

#[cfg(test)]
mod tests {
    use openraft::EntryPayload;
    use openraft::vote::leader_id_std::LeaderId;

    use super::*;
    use crate::engine::Command;
    use crate::raft::codec::log_id;
    use crate::raft::logged::LoggedCommand;

    fn request(sizes: &[usize]) -> AppendEntriesRequest<TypeConfig> {
        let entries = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| openraft::Entry {
                log_id: log_id(3, 11 + i as u64),
                payload: EntryPayload::Normal(LoggedCommand::shared(Command::DropSchema { schema: "x".repeat(*n) })),
            })
            .collect();
        AppendEntriesRequest {
            vote: openraft::Vote { leader_id: LeaderId { term: 3, voted_for: 1 }, committed: true },
            prev_log_id: Some(log_id(2, 10)),
            entries,
            leader_commit: Some(log_id(3, 14)),
        }
    }

    #[test]
    fn a_request_that_fits_travels_whole() {
        let msgs = split_chained(&request(&[10, 10, 10]), 1 << 20);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].entries.len(), 3);
        assert_eq!(msgs[0].prev_log_id, Some(pb_log_id(&log_id(2, 10))));
        assert_eq!(msgs[0].leader_commit, Some(pb_log_id(&log_id(3, 14))));
    }

    #[test]
    fn an_oversized_request_is_split_into_a_chain_that_never_commits_ahead() {
        // Budget for about two 1,000-byte entries per message; one 5,000-byte entry alone.
        let msgs = split_chained(&request(&[1000, 1000, 1000, 5000, 1000]), 2100);
        let shape: Vec<Vec<u64>> = msgs.iter().map(|m| m.entries.iter().map(|e| e.index).collect()).collect();
        assert_eq!(shape, vec![vec![11, 12], vec![13], vec![14], vec![15]]);
        for pair in msgs.windows(2) {
            let last = pair[0].entries.last().map(|e| (e.term, e.index));
            assert_eq!(pair[1].prev_log_id.as_ref().map(|l| (l.term, l.index)), last, "chained");
        }
        let commits: Vec<u64> = msgs.iter().map(|m| m.leader_commit.as_ref().map_or(0, |l| l.index)).collect();
        assert_eq!(commits, vec![12, 13, 14, 14]);
        // Every message decodes back to the same entries.
        let back: Vec<u64> = msgs
            .into_iter()
            .flat_map(|m| wire::append_in(m).expect("decodes").entries)
            .map(|e| e.log_id.index)
            .collect();
        assert_eq!(back, vec![11, 12, 13, 14, 15]);
    }
}
