//! Who may call what, decided from a call's connection and headers before its message is
//! decoded: tonic interceptors in front of each service.
//!
//! - [`PeerGate`] guards the Raft transport and cluster admin: the caller must hold a
//!   certificate from the cluster CA (when the node has TLS), and the cluster id it sends must
//!   be this node's. A Raft call must carry one; an admin call without one is an operator's.
//!   A node that belongs to no cluster yet adopts the id of the first authenticated peer that
//!   sends one (a leader adding it, or the member it joins through).
//! - [`ClientGate`] guards the DB API: with auth on, a user's bearer credentials, or a
//!   certificate from the cluster CA (a follower forwarding a client's write to the leader
//!   checked the client already).

use std::sync::Arc;

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use super::auth::{AUTHORIZATION, Users};
use super::identity::{ClusterId, ClusterIdentity};
use super::security::PeerAuth;

/// Metadata key carrying the caller's cluster id on Raft and admin calls between nodes.
pub const CLUSTER_ID: &str = "x-ahnlich-raft-cluster-id";

/// Which service a [`PeerGate`] stands in front of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerService {
    /// The Raft transport: only nodes call it, always with their cluster id.
    Raft,
    /// Cluster admin: nodes call it with their cluster id, operators without one.
    Admin,
}

/// The check in front of the Raft transport and cluster admin.
#[derive(Clone)]
pub struct PeerGate {
    peers: PeerAuth,
    service: PeerService,
    cluster: Arc<ClusterIdentity>,
}

impl PeerGate {
    /// A gate for `service` of a node whose callers are authenticated as `peers` says and
    /// whose cluster is `cluster`.
    pub fn new(peers: PeerAuth, service: PeerService, cluster: Arc<ClusterIdentity>) -> Self {
        Self { peers, service, cluster }
    }

    /// Whether a call with `metadata`, whose caller presented a verified certificate or not,
    /// may go on.
    pub fn admit(&self, metadata: &MetadataMap, has_certificate: bool) -> Result<(), Status> {
        match self.peers {
            PeerAuth::Open => {}
            PeerAuth::Closed => {
                return Err(Status::permission_denied(
                    "this node has no cluster CA (--certs-dir or --peer-ca): it takes no Raft or cluster-admin calls",
                ));
            }
            PeerAuth::Certificate if has_certificate => {}
            PeerAuth::Certificate if metadata.contains_key(AUTHORIZATION) => {
                return Err(Status::permission_denied(
                    "DB-API credentials do not grant the Raft transport or cluster admin: these take only a client \
                     certificate issued by the cluster CA",
                ));
            }
            PeerAuth::Certificate => {
                return Err(Status::unauthenticated(
                    "the Raft transport and cluster admin take only callers with a client certificate issued by the \
                     cluster CA",
                ));
            }
        }
        self.check_cluster(metadata)
    }

    fn check_cluster(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let theirs = match metadata.get(CLUSTER_ID) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| Status::permission_denied(format!("{CLUSTER_ID} is not text")))?
                    .parse::<ClusterId>()
                    .map_err(|e| Status::permission_denied(format!("{CLUSTER_ID}: {e}")))?,
            ),
        };
        match (self.cluster.get(), theirs) {
            (Some(ours), Some(theirs)) if ours == theirs => Ok(()),
            (Some(ours), Some(theirs)) => Err(Status::permission_denied(format!(
                "this node belongs to cluster {ours}; the call came from cluster {theirs}, and nodes of different \
                 clusters never exchange Raft or admin calls"
            ))),
            (Some(ours), None) if self.service == PeerService::Raft => Err(Status::permission_denied(format!(
                "a Raft call must carry the caller's cluster id ({CLUSTER_ID}); this node belongs to cluster {ours}"
            ))),
            (Some(_), None) | (None, None) => Ok(()),
            (None, Some(theirs)) => adopt(&self.cluster, theirs),
        }
    }
}

/// Makes `id` this node's cluster id (a few bytes written and synced, once in a node's life).
fn adopt(cluster: &ClusterIdentity, id: ClusterId) -> Result<(), Status> {
    let store = || cluster.adopt(id);
    let held = match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(store),
        _ => store(),
    }
    .map_err(Status::unavailable)?;
    if held == id {
        Ok(())
    } else {
        Err(Status::permission_denied(format!("this node belongs to cluster {held}; the call came from cluster {id}")))
    }
}

impl Interceptor for PeerGate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.admit(request.metadata(), has_certificate(&request))?;
        Ok(request)
    }
}

/// Whether the caller presented a certificate (the TLS layer verified it against the cluster CA,
/// or refused the connection).
fn has_certificate(request: &Request<()>) -> bool {
    request.peer_certs().is_some_and(|chain| !chain.is_empty())
}

/// The check in front of the DB API.
#[derive(Clone)]
pub struct ClientGate {
    users: Option<Arc<Users>>,
}

impl ClientGate {
    /// A gate that asks for the credentials of `users`, or lets every call through if `None`.
    pub fn new(users: Option<Arc<Users>>) -> Self {
        Self { users }
    }
}

impl Interceptor for ClientGate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(users) = &self.users
            && !has_certificate(&request)
        {
            users.authenticate(request.metadata())?;
        }
        Ok(request)
    }
}

/// Puts this node's cluster id, if it has one, on an outgoing call to a peer.
pub fn stamp_cluster_id(cluster: &ClusterIdentity, metadata: &mut MetadataMap) {
    if let Some(id) = cluster.get()
        && let Ok(value) = MetadataValue::try_from(id.to_string())
    {
        metadata.insert(CLUSTER_ID, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cluster(id: Option<ClusterId>) -> MetadataMap {
        let mut m = MetadataMap::new();
        stamp_cluster_id(&ClusterIdentity::unstored(id), &mut m);
        m
    }

    fn gate(peers: PeerAuth, service: PeerService, ours: Option<ClusterId>) -> PeerGate {
        PeerGate::new(peers, service, Arc::new(ClusterIdentity::unstored(ours)))
    }

    #[test]
    fn a_certificate_is_required_and_db_credentials_do_not_replace_it() {
        let ours = ClusterId::generate().expect("id");
        let g = gate(PeerAuth::Certificate, PeerService::Raft, Some(ours));
        let mut m = with_cluster(Some(ours));
        g.admit(&m, true).expect("member with certificate");
        assert_eq!(g.admit(&m, false).expect_err("no certificate").code(), tonic::Code::Unauthenticated);
        m.insert(AUTHORIZATION, MetadataValue::from_static("Bearer alice:0123456789abcdef"));
        assert_eq!(g.admit(&m, false).expect_err("a user is not a peer").code(), tonic::Code::PermissionDenied);
        let closed = gate(PeerAuth::Closed, PeerService::Admin, Some(ours));
        assert_eq!(closed.admit(&m, true).expect_err("no CA").code(), tonic::Code::PermissionDenied);
    }

    #[test]
    fn another_clusters_calls_are_refused_and_raft_calls_must_name_theirs() {
        let (ours, theirs) = (ClusterId::generate().expect("a"), ClusterId::generate().expect("b"));
        for service in [PeerService::Raft, PeerService::Admin] {
            let g = gate(PeerAuth::Open, service, Some(ours));
            let refused = g.admit(&with_cluster(Some(theirs)), true).expect_err("other cluster");
            assert_eq!(refused.code(), tonic::Code::PermissionDenied);
            assert!(refused.message().contains(&theirs.to_string()), "{}", refused.message());
        }
        let raft = gate(PeerAuth::Open, PeerService::Raft, Some(ours));
        assert_eq!(raft.admit(&MetadataMap::new(), true).expect_err("unnamed").code(), tonic::Code::PermissionDenied);
        let admin = gate(PeerAuth::Open, PeerService::Admin, Some(ours));
        admin.admit(&MetadataMap::new(), true).expect("an operator's admin call names no cluster");
        let mut garbage = MetadataMap::new();
        garbage.insert(CLUSTER_ID, MetadataValue::from_static("zz"));
        assert_eq!(admin.admit(&garbage, true).expect_err("garbage").code(), tonic::Code::PermissionDenied);
    }

    #[test]
    fn a_node_without_a_cluster_adopts_the_first_one_it_is_sent() {
        let (first, second) = (ClusterId::generate().expect("a"), ClusterId::generate().expect("b"));
        let g = gate(PeerAuth::Open, PeerService::Raft, None);
        g.admit(&MetadataMap::new(), true).expect("neither side has a cluster id yet");
        g.admit(&with_cluster(Some(first)), true).expect("adopted");
        assert_eq!(g.cluster.get(), Some(first));
        g.admit(&with_cluster(Some(second)), true).expect_err("kept the first");
    }
}
