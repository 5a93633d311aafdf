//! What the services of one node share: its Raft, state machine, identity, the channels to
//! its peers, and how to find the leader.

use std::sync::Arc;
use std::time::Duration;

use openraft::Raft;
use openraft::async_runtime::watch::WatchReceiver;
use tonic::Status;
use tonic::metadata::MetadataMap;

use super::connections::Connections;
use super::identity::ClusterIdentity;
use super::proposer::Proposer;
use crate::raft::eviction::Eviction;
use crate::raft::log_store::LogWatch;
use crate::raft::network::{Channels, GrpcNetwork, PeerChannel};
use crate::raft::state_machine::StateMachine;
use crate::raft::types::TypeConfig;

/// Metadata key set on a request one node forwards to another; a node that receives a
/// forwarded request and is not the leader either answers UNAVAILABLE instead of forwarding
/// it again.
pub const FORWARDED: &str = "x-ahnlich-raft-forwarded";

/// Metadata key choosing a read's consistency: `linearizable` (default) or `local`.
pub const READ_CONSISTENCY: &str = "x-ahnlich-read-consistency";

/// How long a request waits for a leader to be elected before it is answered UNAVAILABLE.
pub const LEADER_WAIT: Duration = Duration::from_secs(3);

/// How reads are served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Sees every write acknowledged before the read started, on any node (the leader confirms
    /// its leadership with a quorum; a follower waits until it has applied the leader's index).
    #[default]
    Linearizable,
    /// Answered from this node's state as it is: fast, possibly stale on a follower.
    Local,
}

impl std::str::FromStr for ReadConsistency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "linearizable" => Ok(Self::Linearizable),
            "local" => Ok(Self::Local),
            other => Err(format!("read consistency must be `linearizable` or `local`, not {other:?}")),
        }
    }
}

/// The shared state of a node's services.
pub struct NodeContext {
    /// This node's Raft.
    pub raft: Raft<TypeConfig, StateMachine>,
    /// Its state machine.
    pub state: StateMachine,
    /// Its id.
    pub id: u64,
    /// The address other nodes and clients reach it at.
    pub addr: String,
    /// Channels to peers (shared with the Raft network).
    pub channels: Arc<Channels>,
    /// The Raft network (for the calls a node makes to the leader on its own: read indexes).
    pub network: GrpcNetwork,
    /// The largest message a client may send.
    pub max_message_bytes: usize,
    /// The largest message the Raft transport carries (room for a maximal command).
    pub max_raft_message_bytes: usize,
    /// How long a write waits to be committed before the client is told it is in doubt.
    pub commit_wait: Duration,
    /// The default read consistency.
    pub read_consistency: ReadConsistency,
    /// Serializes membership changes made through this node (joins arriving together).
    pub membership_lock: tokio::sync::Mutex<()>,
    /// Set when a peer told this node it was removed from the cluster.
    pub eviction: Arc<Eviction>,
    /// The cluster this node belongs to, once it knows.
    pub cluster: Arc<ClusterIdentity>,
    /// How long adding a learner waits for its address to answer.
    pub add_learner_timeout: Duration,
    /// Turns for engine work done for requests (queries, checks of long writes): one per core.
    pub engine_work: Arc<tokio::sync::Semaphore>,
    /// The Raft log, watched (whether it can still be written).
    pub log: LogWatch,
    /// The connections open to this node's port.
    pub connections: Arc<Connections>,
    /// Where this node's writes are proposed (batched when many arrive together).
    pub proposer: Proposer,
}

/// Where a request that must run on the leader goes.
pub enum Route {
    /// This node leads: serve it here.
    Here,
    /// Forward it to the leader over this channel.
    Leader {
        /// The leader's id.
        id: u64,
        /// The channel to it.
        channel: PeerChannel,
    },
}

impl NodeContext {
    /// The leader this node knows of, with its address.
    pub fn leader(&self) -> Option<(u64, String)> {
        // Every request asks this: read the two fields under the borrow rather than copying
        // the whole metrics snapshot (replication progress, heartbeats, membership).
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        let id = m.current_leader?;
        let addr = m.membership_config.membership().get_node(&id).map(|n| n.addr.clone())?;
        Some((id, addr))
    }

    /// Why this node has stopped for good, if it has: its log could not be written (a disk
    /// error, a full disk) or its Raft ended on another fatal error. Such a node takes part in
    /// nothing (the others elect a leader without it) until it is restarted.
    pub fn stopped(&self) -> Option<String> {
        if let Some(failure) = self.log.failure() {
            return Some(format!("its Raft log cannot be written ({failure})"));
        }
        match &self.raft.metrics().borrow_watched().running_state {
            Err(openraft::errors::Fatal::Stopped) | Ok(()) => None,
            Err(openraft::errors::Fatal::StorageError(e)) => Some(format!("its storage failed ({e})")),
            Err(fatal) => Some(format!("its Raft stopped ({fatal})")),
        }
    }

    /// Why this node refuses DB requests, if it does: it has [stopped](NodeContext::stopped)
    /// (UNAVAILABLE: other nodes serve), or it is outside the cluster: not yet a member as far
    /// as it knows (UNAVAILABLE, it may be joining or catching up) or told by a peer that it was
    /// removed (FAILED_PRECONDITION, for good). Its state is not kept up to date, so it does not
    /// answer even a local read.
    pub fn outside(&self) -> Option<Status> {
        if let Some(why) = self.stopped() {
            return Some(Status::unavailable(format!(
                "node {} has stopped: {why}. It serves nothing until it is restarted (after freeing space or \
                 fixing the disk); send requests to another node",
                self.id
            )));
        }
        if let Some(why) = self.eviction.reason() {
            return Some(Status::failed_precondition(format!(
                "node {} was removed from the cluster ({why}); it no longer serves requests: send them to a member",
                self.id
            )));
        }
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        let membership = m.membership_config.membership();
        if membership.get_node(&self.id).is_some() {
            return None;
        }
        let members: Vec<u64> = membership.nodes().map(|(id, _)| *id).collect();
        if members.is_empty() {
            return Some(Status::unavailable(format!(
                "node {} is not part of a cluster yet (it was started with --no-bootstrap, or is still joining); \
                 add it with `ahnlich-raft cluster add-learner`, or send requests to a member",
                self.id
            )));
        }
        // A node that just joined replays configurations from before its addition; one removed
        // may have received the configuration without it. Only a peer's refusal (above) tells.
        Some(Status::unavailable(format!(
            "node {} is not in the configuration it holds so far (nodes {members:?}): it is still catching up \
             with the cluster, or was removed; send requests to a member",
            self.id
        )))
    }

    /// Fails with [`NodeContext::outside`]'s reason, after waiting up to [`LEADER_WAIT`] for a
    /// node not yet a member (one bootstrapping, joining or catching up right now) to become one.
    pub async fn ensure_member(&self) -> Result<(), Status> {
        let Some(refusal) = self.outside() else { return Ok(()) };
        // Neither stopped nor removed for good: it may become a member in a moment.
        if refusal.code() != tonic::Code::Unavailable || self.stopped().is_some() {
            return Err(refusal);
        }
        let id = self.id;
        let _ = self
            .raft
            .wait(Some(LEADER_WAIT))
            .metrics(|m| m.membership_config.membership().get_node(&id).is_some(), "this node is a member")
            .await;
        self.outside().map_or(Ok(()), Err)
    }

    /// The leader, waiting up to [`LEADER_WAIT`] for one to be elected.
    pub async fn await_leader(&self) -> Result<(u64, String), Status> {
        if let Some(l) = self.leader() {
            return Ok(l);
        }
        let _ = self.raft.wait(Some(LEADER_WAIT)).metrics(|m| m.current_leader.is_some(), "a leader is known").await;
        self.leader().ok_or_else(|| {
            Status::unavailable(format!(
                "no leader is known to node {} (an election is under way, or a majority of the cluster is \
                 unreachable); retry later",
                self.id
            ))
        })
    }

    /// Where a request that must run on the leader goes. `forwarded` requests already took one
    /// hop and are not forwarded again.
    pub async fn route(&self, metadata: &MetadataMap) -> Result<Route, Status> {
        // Most requests reach the leader itself: that needs no copy of the leader's address.
        if self.raft.metrics().borrow_watched().current_leader == Some(self.id) {
            return Ok(Route::Here);
        }
        let (leader, addr) = self.await_leader().await?;
        if leader == self.id {
            return Ok(Route::Here);
        }
        if metadata.contains_key(FORWARDED) {
            return Err(Status::unavailable(format!(
                "node {} received a forwarded request but is not the leader (node {leader} is); retry",
                self.id
            )));
        }
        let channel = self.channels.get(&addr).map_err(Status::unavailable)?;
        Ok(Route::Leader { id: leader, channel })
    }

    /// The consistency a request asks for, or the node's default.
    pub fn read_consistency(&self, metadata: &MetadataMap) -> Result<ReadConsistency, Status> {
        match metadata.get(READ_CONSISTENCY) {
            None => Ok(self.read_consistency),
            Some(v) => v
                .to_str()
                .map_err(|_| Status::invalid_argument(format!("{READ_CONSISTENCY} is not text")))?
                .parse()
                .map_err(|e: String| Status::invalid_argument(format!("{READ_CONSISTENCY}: {e}"))),
        }
    }
}

/// `message` as a request marked as forwarded.
pub fn forwarded<T>(message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    r
}
