//! The receiving end of the Raft transport (`proto/ahnlich_raft/raft.proto`): each call is
//! decoded, checked and handed to the local Raft.
//!
//! A snapshot arrives as a stream: it is written to a temporary file in the snapshot
//! directory (synced as it arrives, [`StreamedFile`]), mapped and fully checked (length, checksums, archive) before Raft is asked
//! to install it; a stream that ends early or carries a damaged file is refused and leaves
//! nothing behind.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{Stream, StreamExt};
use openraft::raft::{AppendEntriesResponse, StreamAppendError};
use openraft::{Raft, ReadPolicy};
use tonic::{Request, Response as Reply, Status, Streaming};

use crate::metrics::Metrics;
use crate::progress::Progress;
use crate::proto::raft as pb;
use crate::proto::raft::raft_service_server::RaftService;
use crate::raft::codec::{decode_snapshot_meta, log_id_from_pb, vote_from_pb, vote_to_pb};
use crate::raft::eviction::{self, Eviction, Outsider};
use crate::raft::network::NOT_MEMBER;
use crate::raft::state_machine::StateMachine;
use crate::raft::types::TypeConfig;
use crate::raft::wire::{self, WireError};
use crate::snapshot::{MappedSnapshot, SnapshotId, StreamedFile};

/// The Raft transport's server side of one node.
pub struct RaftRpc {
    raft: Raft<TypeConfig, StateMachine>,
    id: u64,
    snapshot_dir: PathBuf,
    received: AtomicU64,
    eviction: Arc<Eviction>,
    max_snapshot_bytes: u64,
    receiving: tokio::sync::Semaphore,
    metrics: Option<Arc<Metrics>>,
}

impl RaftRpc {
    /// Serves `raft` of node `id`, receiving snapshots of at most `max_snapshot_bytes` into
    /// `snapshot_dir` (the state machine's), one at a time; an append from a leader clears
    /// `eviction`.
    pub fn new(
        raft: Raft<TypeConfig, StateMachine>,
        id: u64,
        snapshot_dir: PathBuf,
        eviction: Arc<Eviction>,
        max_snapshot_bytes: u64,
    ) -> Self {
        Self {
            raft,
            id,
            snapshot_dir,
            received: AtomicU64::new(0),
            eviction,
            max_snapshot_bytes,
            receiving: tokio::sync::Semaphore::new(1),
            metrics: None,
        }
    }

    /// The same service, counting the snapshots it receives in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Refuses a vote request from a candidate this node knows was removed (see
    /// [`eviction::outsider`]); hears every other.
    fn hear(&self, candidate: u64, candidate_last: Option<u64>) -> Result<(), Status> {
        eviction::outsider(&self.raft, self.id, candidate, candidate_last).map_or(Ok(()), |o| Err(not_member(&o)))
    }

    /// Refuses an offer of `length` bytes that is over the cap or would not fit on the disk.
    async fn check_room(&self, length: u64) -> Result<(), Status> {
        if length > self.max_snapshot_bytes {
            return Err(Status::resource_exhausted(format!(
                "a snapshot of {length} bytes is larger than this node takes (--max-snapshot-bytes {})",
                self.max_snapshot_bytes
            )));
        }
        let dir = self.snapshot_dir.clone();
        let free = tokio::task::spawn_blocking(move || fs2::available_space(&dir))
            .await
            .map_err(|e| Status::internal(format!("checking free space: {e}")))?
            .map_err(|e| Status::internal(format!("checking free space in {}: {e}", self.snapshot_dir.display())))?;
        if length > free {
            return Err(Status::resource_exhausted(format!(
                "a snapshot of {length} bytes does not fit in the {free} bytes free in {}",
                self.snapshot_dir.display()
            )));
        }
        Ok(())
    }
}

fn bad(e: WireError) -> Status {
    Status::invalid_argument(e.to_string())
}

fn stopped(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("this node's Raft is not running: {e}"))
}

/// A received snapshot file that is removed unless something took it over (renamed it).
struct Incoming(PathBuf);

impl Drop for Incoming {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.0) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("removing the unused received snapshot {}: {e}", self.0.display()),
        }
    }
}

/// The refusal sent to a candidate outside this node's configuration, marked so that the
/// candidate learns it was removed ([`crate::raft::network::is_not_member`]).
pub fn not_member(outsider: &Outsider) -> Status {
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert(NOT_MEMBER, tonic::metadata::MetadataValue::from_static("1"));
    Status::with_metadata(tonic::Code::FailedPrecondition, outsider.to_string(), metadata)
}

type ReplyStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl RaftService for RaftRpc {
    async fn vote(&self, request: Request<pb::VoteRequest>) -> Result<Reply<pb::VoteReply>, Status> {
        let req = wire::vote_in_req(request.into_inner()).map_err(bad)?;
        self.hear(req.vote.leader_id.voted_for, req.last_log_id.map(|l| l.index))?;
        let resp = self.raft.vote(req).await.map_err(stopped)?;
        Ok(Reply::new(wire::vote_reply_out(&resp)))
    }

    async fn pre_vote(&self, request: Request<pb::VoteRequest>) -> Result<Reply<pb::VoteReply>, Status> {
        let req = wire::vote_in_req(request.into_inner()).map_err(bad)?;
        self.hear(req.vote.leader_id.voted_for, req.last_log_id.map(|l| l.index))?;
        let resp = self.raft.pre_vote(req).await.map_err(stopped)?;
        Ok(Reply::new(wire::vote_reply_out(&resp)))
    }

    async fn append(&self, request: Request<pb::AppendRequest>) -> Result<Reply<pb::AppendReply>, Status> {
        let req = wire::append_in(request.into_inner()).map_err(bad)?;
        let resp = self.raft.append_entries(req).await.map_err(stopped)?;
        if !matches!(resp, AppendEntriesResponse::HigherVote(_)) {
            self.eviction.clear();
        }
        Ok(Reply::new(wire::append_reply_out(resp)))
    }

    type StreamAppendStream = ReplyStream<pb::StreamAppendReply>;

    async fn stream_append(
        &self,
        request: Request<Streaming<pb::AppendRequest>>,
    ) -> Result<Reply<Self::StreamAppendStream>, Status> {
        let inbound = request.into_inner();
        // A message that does not decode ends the stream: the leader sees it close early and
        // starts again, as after a broken connection.
        let requests = inbound.scan((), |_, item| {
            let decoded = item.map_err(|s| s.to_string()).and_then(|m| wire::append_in(m).map_err(|e| e.to_string()));
            std::future::ready(match decoded {
                Ok(req) => Some(req),
                Err(e) => {
                    tracing::warn!("append stream from the leader ended: {e}");
                    None
                }
            })
        });
        let eviction = self.eviction.clone();
        let replies = self.raft.stream_append(requests).map(move |r| match r {
            Ok(result) => {
                if !matches!(result, Err(StreamAppendError::HigherVote(_))) {
                    eviction.clear();
                }
                Ok(wire::stream_reply_out(result))
            }
            Err(fatal) => Err(stopped(fatal)),
        });
        Ok(Reply::new(Box::pin(replies)))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Reply<pb::SnapshotReply>, Status> {
        let mut inbound = request.into_inner();
        let offer = match inbound.message().await?.and_then(|c| c.kind) {
            Some(pb::snapshot_chunk::Kind::Offer(o)) => o,
            _ => return Err(Status::invalid_argument("a snapshot stream must start with its offer")),
        };
        let vote =
            offer.vote.map(vote_from_pb).ok_or_else(|| Status::invalid_argument("snapshot offer without vote"))?;
        let last = offer
            .last_log_id
            .map(log_id_from_pb)
            .ok_or_else(|| Status::invalid_argument("snapshot offer without its last log id"))?;
        self.check_room(offer.length).await?;
        let _receiving = self.receiving.try_acquire().map_err(|_| {
            Status::unavailable("this node is receiving another snapshot; the leader retries when it is done")
        })?;
        let id = SnapshotId { index: last.index, term: last.leader_id.term };
        let n = self.received.fetch_add(1, Ordering::Relaxed);
        let path = self.snapshot_dir.join(format!("received-{}-{}-{n}.tmp", id.index, id.term));
        let incoming = Incoming(path.clone());
        let mut file = StreamedFile::create(&path).await.map_err(|e| Status::internal(e.to_string()))?;
        let mut received = 0u64;
        let mut progress = Progress::start(format!("node {} receiving snapshot {}", self.id, id), Some(offer.length));
        tracing::info!("node {} receiving snapshot {id}: {} bytes", self.id, offer.length);
        while let Some(chunk) = inbound.message().await? {
            let Some(pb::snapshot_chunk::Kind::Data(bytes)) = chunk.kind else {
                return Err(Status::invalid_argument("a snapshot stream carries one offer, then only data"));
            };
            received += bytes.len() as u64;
            if received > offer.length {
                return Err(Status::invalid_argument(format!(
                    "snapshot stream carries more than the {} bytes offered",
                    offer.length
                )));
            }
            progress.advance(bytes.len() as u64);
            file.write(bytes).await.map_err(|e| Status::internal(e.to_string()))?;
        }
        if received != offer.length {
            return Err(Status::invalid_argument(format!(
                "snapshot stream ended after {received} of {} bytes",
                offer.length
            )));
        }
        let transferred = progress.elapsed();
        file.finish().await.map_err(|e| Status::internal(e.to_string()))?;
        let synced = progress.elapsed();
        let snap = tokio::task::spawn_blocking(move || MappedSnapshot::open(&path, id))
            .await
            .map_err(|e| Status::internal(format!("checking the received snapshot: {e}")))?
            .map_err(|e| Status::data_loss(format!("the received snapshot is not usable: {e}")))?;
        let meta = decode_snapshot_meta(snap.meta()).map_err(|e| Status::data_loss(e.to_string()))?;
        if meta.last_log_id != Some(last) {
            return Err(Status::invalid_argument(format!(
                "the snapshot file covers {:?} but was offered as covering {last}",
                meta.last_log_id
            )));
        }
        tracing::info!(
            "node {} received snapshot {id}: {} (streamed in {:.2} s, last sync {:.2} s, checked in {:.2} s)",
            self.id,
            progress.summary(),
            transferred.as_secs_f64(),
            (synced - transferred).as_secs_f64(),
            (progress.elapsed() - synced).as_secs_f64()
        );
        if let Some(metrics) = &self.metrics {
            metrics.snapshot("received", received, progress.elapsed());
        }
        let snapshot = openraft::Snapshot { meta, snapshot: Arc::new(snap) };
        let resp = self.raft.install_full_snapshot(vote, snapshot).await.map_err(stopped)?;
        drop(incoming);
        Ok(Reply::new(pb::SnapshotReply { vote: Some(vote_to_pb(&resp.vote)) }))
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Reply<pb::TransferLeaderReply>, Status> {
        let req = wire::transfer_in(request.into_inner()).map_err(bad)?;
        let resp = self.raft.handle_transfer_leader(req).await.map_err(stopped)?;
        Ok(Reply::new(wire::transfer_reply_out(resp)))
    }

    async fn read_index(&self, _request: Request<pb::ReadIndexRequest>) -> Result<Reply<pb::ReadIndexReply>, Status> {
        let linearizer = self
            .raft
            .get_read_linearizer(ReadPolicy::ReadIndex)
            .await
            .map_err(|e| Status::unavailable(format!("cannot serve a read index: {e}")))?;
        Ok(Reply::new(pb::ReadIndexReply { read_index: linearizer.read_log_id().index() }))
    }
}
