//! The cluster-admin service (`proto/ahnlich_raft/admin.proto`): membership, leadership,
//! snapshots and status. Membership and leadership calls made on a follower are forwarded to
//! the leader; status and snapshots are about the node asked.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::raft::network::PeerChannel;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, ServerState};
use tonic::{Request, Response as Reply, Status};

use super::context::{NodeContext, Route, forwarded};
use crate::proto::admin as pb;
use crate::proto::admin::cluster_admin_client::ClusterAdminClient;
use crate::proto::admin::cluster_admin_server::ClusterAdmin;
use crate::raft::types::TypeConfig;

/// How long a leadership transfer or a snapshot may take before the call reports failure.
const ADMIN_WAIT: Duration = Duration::from_secs(10);

/// How long adding a learner waits for it to catch up before answering that it goes on
/// catching up (the membership lock is not held meanwhile).
const CATCH_UP_WAIT: Duration = Duration::from_secs(60);

/// The admin service of one node.
pub struct AdminApi {
    ctx: Arc<NodeContext>,
}

impl AdminApi {
    /// The admin service of the node described by `ctx`.
    pub fn new(ctx: Arc<NodeContext>) -> Self {
        Self { ctx }
    }

    fn status(&self) -> pb::StatusReply {
        status_of(&self.ctx)
    }

    async fn leader_client(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Option<ClusterAdminClient<PeerChannel>>, Status> {
        Ok(match self.ctx.route(metadata).await? {
            Route::Here => None,
            Route::Leader { channel, .. } => Some(ClusterAdminClient::new(channel)),
        })
    }

    async fn change(&self, change: ChangeMembers<u64, BasicNode>, retain: bool) -> Result<(), Status> {
        let _serialized = self.ctx.membership_lock.lock().await;
        self.ctx.raft.change_membership(change, retain).await.map_err(refused)?;
        Ok(())
    }

    /// Refuses to add the node at `addr` if it cannot be reached within the add-learner
    /// timeout, or if it belongs to another cluster: it refuses this node's cluster id, or (a
    /// node from before cluster ids) it holds a log of which this node is not a member. Log
    /// ids carry only terms and indexes, so two histories can share ids, and replicating onto
    /// one would mix them. A node without a cluster adopts this one's on this call. The
    /// address is the caller's, so its channel is not kept.
    async fn probe_new_member(&self, addr: &str) -> Result<(), Status> {
        let channel = self.ctx.channels.uncached(addr).map_err(Status::invalid_argument)?;
        let mut client = ClusterAdminClient::new(channel);
        let wait = self.ctx.add_learner_timeout;
        let theirs = match tokio::time::timeout(wait, client.status(pb::StatusRequest {})).await {
            Ok(Ok(theirs)) => theirs.into_inner(),
            Ok(Err(s)) if s.code() == tonic::Code::PermissionDenied => {
                return Err(foreign(addr, s.message()));
            }
            Ok(Err(s)) => {
                return Err(Status::unavailable(format!(
                    "the node at {addr} cannot be asked to join ({}: {}); start it (with --no-bootstrap) and retry",
                    s.code(),
                    s.message()
                )));
            }
            Err(_) => {
                return Err(Status::deadline_exceeded(format!(
                    "the node at {addr} did not answer within {wait:?}; start it (with --no-bootstrap) and retry"
                )));
            }
        };
        let ours = theirs.members.iter().any(|m| m.id == self.ctx.id && m.addr == self.ctx.addr);
        if theirs.last_log_index.is_some() && !theirs.members.is_empty() && !ours {
            let why = format!("node {} holds a log of which this node is not a member", theirs.id);
            return Err(foreign(addr, &why));
        }
        Ok(())
    }

    /// Adds `spec` as a learner (under the membership lock), then waits, without the lock, until
    /// it has caught up with the log as it was when added.
    async fn add_learner_and_wait(&self, spec: &pb::NodeSpec) -> Result<(), Status> {
        let target = {
            let _serialized = self.ctx.membership_lock.lock().await;
            self.ctx.raft.add_learner(spec.id, BasicNode { addr: spec.addr.clone() }, false).await.map_err(refused)?;
            self.ctx.raft.metrics().borrow_watched().last_log_index
        };
        let id = spec.id;
        self.ctx
            .raft
            .wait(Some(CATCH_UP_WAIT))
            .metrics(
                move |m| {
                    let matched = m.replication.as_ref().and_then(|r| r.get(&id).cloned().flatten());
                    matched.map(|l| l.index) >= target
                },
                "the learner caught up",
            )
            .await
            .map(|_| ())
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "node {id} at {} was added as a learner but did not catch up within {CATCH_UP_WAIT:?}; it goes on \
                     catching up (see `cluster status`)",
                    spec.addr
                ))
            })
    }

    async fn join(&self, spec: pb::NodeSpec) -> Result<(), Status> {
        if spec.addr.is_empty() {
            return Err(Status::invalid_argument("a joining node must give the address it is reached at"));
        }
        {
            let _serialized = self.ctx.membership_lock.lock().await;
            let membership = self.ctx.raft.metrics().borrow_watched().membership_config.membership().clone();
            if let Some(node) = membership.get_node(&spec.id) {
                if node.addr != spec.addr {
                    return Err(Status::already_exists(format!(
                        "node id {} already belongs to the member at {}; a node joining from {} needs another id",
                        spec.id, node.addr, spec.addr
                    )));
                }
                if membership.voter_ids().any(|v| v == spec.id) {
                    return Ok(());
                }
            } else if let Some((other, _)) = membership.nodes().find(|(_, n)| n.addr == spec.addr) {
                return Err(Status::already_exists(format!(
                    "address {} already belongs to member {other}; remove it first to rejoin as node {}",
                    spec.addr, spec.id
                )));
            }
        }
        self.add_learner_and_wait(&spec).await?;
        self.change(ChangeMembers::AddVoterIds(BTreeSet::from([spec.id])), false).await?;
        tracing::info!("node {} at {} joined as a voter", spec.id, spec.addr);
        Ok(())
    }
}

/// The refusal of a node at `addr` that belongs to another cluster, for the reason `why`.
fn foreign(addr: &str, why: &str) -> Status {
    Status::failed_precondition(format!(
        "the node at {addr} already belongs to another cluster ({why}); give it an empty data directory and start \
         it with --join to add it here"
    ))
}

/// A Raft refusal of a membership change as a status: UNAVAILABLE when leadership moved (the
/// caller may retry), FAILED_PRECONDITION otherwise.
fn refused(e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> Status {
    if e.forward_to_leader().is_some() {
        Status::unavailable(format!("leadership moved during the change; retry: {e}"))
    } else {
        Status::failed_precondition(format!("the cluster refused the change: {e}"))
    }
}

/// This node's status as the admin API reports it.
pub fn status_of(ctx: &NodeContext) -> pb::StatusReply {
    let m = ctx.raft.metrics().borrow_watched().clone();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let stopped = ctx.stopped();
    let role = match m.state {
        _ if stopped.is_some() => "stopped",
        ServerState::Leader => "leader",
        ServerState::Candidate => "candidate",
        ServerState::Shutdown => "shutdown",
        ServerState::Follower | ServerState::Learner if voters.contains(&ctx.id) => "follower",
        ServerState::Follower | ServerState::Learner => "learner",
    };
    let matched: BTreeMap<u64, Option<u64>> = m
        .replication
        .as_ref()
        .map(|r| r.iter().map(|(id, l)| (*id, l.as_ref().map(|l| l.index))).collect())
        .unwrap_or_default();
    let members = membership
        .nodes()
        .map(|(id, n)| pb::Member {
            id: *id,
            addr: n.addr.clone(),
            voter: voters.contains(id),
            matched_index: matched.get(id).copied().flatten(),
        })
        .collect();
    let leader_addr =
        m.current_leader.and_then(|l| membership.get_node(&l)).map(|n| n.addr.clone()).unwrap_or_default();
    pb::StatusReply {
        id: ctx.id,
        addr: ctx.addr.clone(),
        role: role.to_string(),
        term: m.current_term,
        leader_id: m.current_leader,
        leader_addr,
        last_log_index: m.last_log_index,
        last_applied: m.last_applied.map(|l| l.index),
        snapshot_index: m.snapshot.map(|l| l.index),
        purged_index: m.purged.map(|l| l.index),
        members,
        joint: membership.get_joint_config().len() > 1,
        outside: ctx.outside().map(|s| s.message().to_string()).unwrap_or_default(),
        cluster_id: ctx.cluster.get().map(|c| c.to_string()).unwrap_or_default(),
        stopped: stopped.unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl ClusterAdmin for AdminApi {
    async fn status(&self, _request: Request<pb::StatusRequest>) -> Result<Reply<pb::StatusReply>, Status> {
        Ok(Reply::new(AdminApi::status(self)))
    }

    async fn init(&self, request: Request<pb::InitRequest>) -> Result<Reply<pb::StatusReply>, Status> {
        let members: BTreeMap<u64, BasicNode> =
            request.into_inner().members.into_iter().map(|m| (m.id, BasicNode { addr: m.addr })).collect();
        if members.is_empty() {
            return Err(Status::invalid_argument("init needs at least one member"));
        }
        self.ctx
            .raft
            .initialize(members)
            .await
            .map_err(|e| Status::failed_precondition(format!("cannot initialize: {e}")))?;
        Ok(Reply::new(AdminApi::status(self)))
    }

    async fn add_learner(&self, request: Request<pb::NodeSpec>) -> Result<Reply<pb::StatusReply>, Status> {
        if let Some(mut leader) = self.leader_client(request.metadata()).await? {
            return leader.add_learner(forwarded(request.into_inner())).await;
        }
        let spec = request.into_inner();
        self.probe_new_member(&spec.addr).await?;
        self.add_learner_and_wait(&spec).await?;
        Ok(Reply::new(AdminApi::status(self)))
    }

    async fn promote(&self, request: Request<pb::NodeIds>) -> Result<Reply<pb::StatusReply>, Status> {
        if let Some(mut leader) = self.leader_client(request.metadata()).await? {
            return leader.promote(forwarded(request.into_inner())).await;
        }
        let ids: BTreeSet<u64> = request.into_inner().ids.into_iter().collect();
        self.change(ChangeMembers::AddVoterIds(ids), false).await?;
        Ok(Reply::new(AdminApi::status(self)))
    }

    async fn change_membership(
        &self,
        request: Request<pb::ChangeMembershipRequest>,
    ) -> Result<Reply<pb::StatusReply>, Status> {
        if let Some(mut leader) = self.leader_client(request.metadata()).await? {
            return leader.change_membership(forwarded(request.into_inner())).await;
        }
        let r = request.into_inner();
        if r.voters.is_empty() {
            return Err(Status::invalid_argument("a cluster needs at least one voter"));
        }
        self.change(ChangeMembers::ReplaceAllVoters(r.voters.into_iter().collect()), r.retain).await?;
        Ok(Reply::new(AdminApi::status(self)))
    }

    async fn remove(&self, request: Request<pb::NodeIds>) -> Result<Reply<pb::StatusReply>, Status> {
        if let Some(mut leader) = self.leader_client(request.metadata()).await? {
            return leader.remove(forwarded(request.into_inner())).await;
        }
        let ids: BTreeSet<u64> = request.into_inner().ids.into_iter().collect();
        let membership = self.ctx.raft.metrics().borrow_watched().membership_config.membership().clone();
        let voters: BTreeSet<u64> = membership.voter_ids().filter(|v| ids.contains(v)).collect();
        if !voters.is_empty() {
            self.change(ChangeMembers::RemoveVoters(voters), false).await?;
        }
        let membership = self.ctx.raft.metrics().borrow_watched().membership_config.membership().clone();
        let left: BTreeSet<u64> = membership.nodes().map(|(id, _)| *id).filter(|id| ids.contains(id)).collect();
        if !left.is_empty() {
            self.change(ChangeMembers::RemoveNodes(left), false).await?;
        }
        Ok(Reply::new(AdminApi::status(self)))
    }

    async fn join(&self, request: Request<pb::NodeSpec>) -> Result<Reply<pb::StatusReply>, Status> {
        if let Some(mut leader) = self.leader_client(request.metadata()).await? {
            return leader.join(forwarded(request.into_inner())).await;
        }
        AdminApi::join(self, request.into_inner()).await?;
        Ok(Reply::new(AdminApi::status(self)))
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Reply<pb::StatusReply>, Status> {
        if let Some(mut leader) = self.leader_client(request.metadata()).await? {
            return leader.transfer_leader(forwarded(request.into_inner())).await;
        }
        let to = request.into_inner().to;
        let membership = self.ctx.raft.metrics().borrow_watched().membership_config.membership().clone();
        if !membership.voter_ids().any(|v| v == to) {
            return Err(Status::invalid_argument(format!("node {to} is not a voter and cannot lead")));
        }
        if to != self.ctx.id {
            self.ctx.raft.trigger().transfer_leader(to).await.map_err(|e| Status::unavailable(e.to_string()))?;
            self.ctx
                .raft
                .wait(Some(ADMIN_WAIT))
                .metrics(|m| m.current_leader == Some(to), "leadership transferred")
                .await
                .map_err(|e| Status::deadline_exceeded(format!("node {to} did not take over leadership: {e}")))?;
        }
        Ok(Reply::new(AdminApi::status(self)))
    }

    type BackupStream = super::backup::BackupStream;

    async fn backup(&self, request: Request<pb::BackupRequest>) -> Result<Reply<Self::BackupStream>, Status> {
        let max_age = Duration::from_secs(request.into_inner().max_age_seconds);
        Ok(Reply::new(super::backup::backup(&self.ctx, max_age).await?))
    }

    async fn trigger_snapshot(
        &self,
        _request: Request<pb::TriggerSnapshotRequest>,
    ) -> Result<Reply<pb::SnapshotTaken>, Status> {
        let applied = self.ctx.raft.metrics().borrow_watched().last_applied;
        self.ctx.raft.trigger().snapshot().await.map_err(|e| Status::unavailable(e.to_string()))?;
        let m = self
            .ctx
            .raft
            .wait(Some(ADMIN_WAIT))
            .metrics(|m| m.snapshot >= applied, "snapshot taken")
            .await
            .map_err(|e| Status::deadline_exceeded(format!("the snapshot did not complete: {e}")))?;
        Ok(Reply::new(pb::SnapshotTaken { last_index: m.snapshot.map(|l| l.index) }))
    }
}
