//! Nothing a caller who is not a member of the cluster sends changes it. A 3-node cluster with
//! mutual TLS and client auth is sent every Raft RPC (with forged votes of a higher term) and
//! every admin RPC, by three kinds of stranger: (a) a TLS client with no certificate, (b) the
//! same with a valid DB user's credentials, (c) a holder of a node certificate from the same
//! CA but of another cluster. Each call is refused before it is decoded, and every node's term,
//! leader, membership, log position and state digest are the same afterwards.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use crate::support::cluster::Cluster;
use ahnlich_raft::certs::{self, CertCommand};
use ahnlich_raft::proto::admin as adm;
use ahnlich_raft::proto::admin::cluster_admin_client::ClusterAdminClient;
use ahnlich_raft::proto::ahnlich::db::query as q;
use ahnlich_raft::proto::ahnlich::services::db_service::db_service_client::DbServiceClient;
use ahnlich_raft::proto::log as lg;
use ahnlich_raft::proto::raft as pb;
use ahnlich_raft::proto::raft::raft_service_client::RaftServiceClient;
use ahnlich_raft::server::auth::hash_api_key;
use ahnlich_raft::server::gate::CLUSTER_ID;
use ahnlich_raft::server::identity::ClusterId;
use ahnlich_raft::server::security::{PeerFiles, SecurityConfig, files};
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const USER_KEY: &str = "alice-key-0123456789";

/// A CA, a node certificate for 127.0.0.1 and a users file with alice, in `dir`.
fn secure_config(dir: &Path) -> SecurityConfig {
    certs::run(dir, &CertCommand::Ca).expect("ca");
    certs::run(dir, &CertCommand::Node { hosts: vec!["127.0.0.1".into()] }).expect("node cert");
    let users = dir.join("auth.toml");
    std::fs::write(&users, format!("[users]\nalice = \"{}\"\n", hash_api_key(USER_KEY))).expect("users");
    SecurityConfig { peer: Some(PeerFiles::in_dir(dir)), auth: Some(users), ..Default::default() }
}

/// Who is calling.
#[derive(Clone, Copy, Debug)]
enum Stranger {
    /// TLS, no certificate.
    NoCertificate,
    /// TLS, no certificate, a valid DB user's credentials.
    DbUser,
    /// A node certificate of the same CA, another cluster's id.
    OtherCluster,
}

async fn channel(addr: &str, certs: &Path, with_node_cert: bool) -> Channel {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(certs.join(files::CA_CERT)).expect("ca")));
    if with_node_cert {
        let cert = std::fs::read(certs.join(files::NODE_CERT)).expect("cert");
        let key = std::fs::read(certs.join(files::NODE_KEY)).expect("key");
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("the TLS handshake itself succeeds")
}

fn request<T>(message: T, who: Stranger, cluster: Option<ClusterId>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    match who {
        Stranger::DbUser => {
            let bearer = MetadataValue::try_from(format!("Bearer alice:{USER_KEY}")).expect("ascii");
            r.metadata_mut().insert("authorization", bearer);
        }
        Stranger::OtherCluster => {
            let id = cluster.expect("a cluster id to send");
            r.metadata_mut().insert(CLUSTER_ID, MetadataValue::try_from(id.to_string()).expect("ascii"));
        }
        Stranger::NoCertificate => {}
    }
    r
}

fn forged_vote(term: u64) -> Option<lg::Vote> {
    Some(lg::Vote { term, voted_for: 987_654_321, committed: true })
}

fn log_id(term: u64, index: u64) -> Option<lg::LogId> {
    Some(lg::LogId { term, index })
}

/// Sends every Raft and admin RPC as `who` to the node at `addr`; returns each call's name and
/// the code it was answered with (`Ok` if it was not refused).
async fn attack(addr: &str, certs: &Path, who: Stranger, sent_cluster: Option<ClusterId>) -> Vec<(&'static str, Code)> {
    let ch = channel(addr, certs, matches!(who, Stranger::OtherCluster)).await;
    let mut raft = RaftServiceClient::new(ch.clone());
    let mut admin = ClusterAdminClient::new(ch);
    macro_rules! r {
        ($m:expr) => {
            request($m, who, sent_cluster)
        };
    }
    let code = |res: Result<(), tonic::Status>| res.err().map_or(Code::Ok, |s| s.code());
    let vote =
        pb::VoteRequest { vote: forged_vote(1_000), last_log_id: log_id(1_000, 1_000_000), leadership_transfer: true };
    let append = pb::AppendRequest {
        vote: forged_vote(1_000),
        prev_log_id: None,
        entries: vec![pb::Entry { term: 1_000, index: 1, payload: Default::default() }],
        leader_commit: log_id(1_000, 1),
    };
    let offer = pb::SnapshotChunk {
        kind: Some(pb::snapshot_chunk::Kind::Offer(pb::SnapshotOffer {
            vote: forged_vote(1_000),
            last_log_id: log_id(1_000, 1_000_000),
            length: 4,
        })),
    };
    let data = pb::SnapshotChunk { kind: Some(pb::snapshot_chunk::Kind::Data(vec![1, 2, 3, 4].into())) };
    let me = adm::NodeSpec { id: 99, addr: "127.0.0.1:9".into() };
    let mut out = vec![
        ("Vote", code(raft.vote(r!(vote)).await.map(drop))),
        ("PreVote", code(raft.pre_vote(r!(vote)).await.map(drop))),
        ("Append", code(raft.append(r!(append.clone())).await.map(drop))),
        (
            "StreamAppend",
            code(match raft.stream_append(r!(futures_util::stream::iter(vec![append]))).await {
                Ok(replies) => replies.into_inner().message().await.map(drop),
                Err(s) => Err(s),
            }),
        ),
        (
            "InstallSnapshot",
            code(raft.install_snapshot(r!(futures_util::stream::iter(vec![offer, data]))).await.map(drop)),
        ),
        (
            "TransferLeader",
            code(
                raft.transfer_leader(r!(pb::TransferLeaderRequest {
                    from_leader: forged_vote(1_000),
                    to_node_id: 1,
                    last_log_id: log_id(1_000, 1_000_000),
                }))
                .await
                .map(drop),
            ),
        ),
        ("ReadIndex", code(raft.read_index(r!(pb::ReadIndexRequest {})).await.map(drop))),
    ];
    out.extend([
        ("admin Status", code(admin.status(r!(adm::StatusRequest {})).await.map(drop))),
        ("admin Init", code(admin.init(r!(adm::InitRequest { members: vec![me.clone()] })).await.map(drop))),
        ("admin AddLearner", code(admin.add_learner(r!(me.clone())).await.map(drop))),
        ("admin Promote", code(admin.promote(r!(adm::NodeIds { ids: vec![99] })).await.map(drop))),
        (
            "admin ChangeMembership",
            code(
                admin
                    .change_membership(r!(adm::ChangeMembershipRequest { voters: vec![1], retain: false }))
                    .await
                    .map(drop),
            ),
        ),
        ("admin Remove", code(admin.remove(r!(adm::NodeIds { ids: vec![2, 3] })).await.map(drop))),
        ("admin Join", code(admin.join(r!(me)).await.map(drop))),
        ("admin TransferLeader", code(admin.transfer_leader(r!(adm::TransferLeaderRequest { to: 2 })).await.map(drop))),
        ("admin TriggerSnapshot", code(admin.trigger_snapshot(r!(adm::TriggerSnapshotRequest {})).await.map(drop))),
    ]);
    out
}

/// What must not change on a node: term, leader, voters, members, log and state.
#[derive(Debug, PartialEq, Eq)]
struct View {
    term: u64,
    leader: Option<u64>,
    voters: BTreeSet<u64>,
    members: BTreeSet<(u64, String)>,
    last_log_index: Option<u64>,
    last_applied: Option<u64>,
    snapshot_index: Option<u64>,
    digest: u64,
}

fn views(cluster: &Cluster) -> Vec<View> {
    (1..=3)
        .map(|id| {
            let n = cluster.node(id);
            let s = n.status();
            View {
                term: s.term,
                leader: s.leader_id,
                voters: s.members.iter().filter(|m| m.voter).map(|m| m.id).collect(),
                members: s.members.iter().map(|m| (m.id, m.addr.clone())).collect(),
                last_log_index: s.last_log_index,
                last_applied: s.last_applied,
                snapshot_index: s.snapshot_index,
                digest: n.state().engine().digest(),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_are_refused_every_raft_and_admin_call_and_change_nothing() {
    let certs = tempfile::TempDir::new().expect("tempdir");
    let security = secure_config(certs.path());
    let cluster = Cluster::start_with(3, |c| c.security = security.clone()).await;
    let ours = cluster.node(1).cluster_id().expect("a bootstrapped cluster has an id");
    for id in 2..=3 {
        assert_eq!(cluster.node(id).cluster_id(), Some(ours), "node {id} adopted the cluster's id when it joined");
    }

    // Some state, through the DB API as a user, so the digests have something to guard.
    let leader = cluster.node(cluster.leader().expect("leader")).addr().to_string();
    let mut db = DbServiceClient::new(channel(&leader, certs.path(), false).await);
    let create = q::CreateStore { store: "s".into(), dimension: 2, error_if_exists: true, ..Default::default() };
    db.create_store(request(create, Stranger::DbUser, None)).await.expect("a user may write");
    let applied = cluster.node(1).status().last_log_index;
    cluster
        .wait_for(Duration::from_secs(10), "every node applied the write", |c| {
            (1..=3).all(|id| c.node(id).status().last_applied == applied)
        })
        .await;

    // A member with the right cluster id gets through: the refusals below are the gate's.
    let mut member = ClusterAdminClient::new(channel(&leader, certs.path(), true).await);
    let mut ok = tonic::Request::new(adm::StatusRequest {});
    ok.metadata_mut().insert(CLUSTER_ID, MetadataValue::try_from(ours.to_string()).expect("ascii"));
    member.status(ok).await.expect("a member's call is served");

    let before = views(&cluster);
    let other = Some(ClusterId::generate().expect("id"));
    for (who, expected) in [
        (Stranger::NoCertificate, Code::Unauthenticated),
        (Stranger::DbUser, Code::PermissionDenied),
        (Stranger::OtherCluster, Code::PermissionDenied),
    ] {
        for id in 1..=3 {
            let addr = cluster.node(id).addr().to_string();
            for (rpc, code) in attack(&addr, certs.path(), who, other).await {
                assert_eq!(code, expected, "{rpc} from {who:?} to node {id}");
            }
        }
    }
    // Anything a refused call set going would show within a few heartbeats.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(views(&cluster), before, "a stranger's call changed the cluster");
    let dirs = std::fs::read_dir(cluster.dir.path().join("n1").join("snapshots")).expect("snapshot dir");
    let received: Vec<_> = dirs.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("received")).collect();
    assert!(received.is_empty(), "a refused snapshot left a file: {received:?}");
    cluster.shutdown().await;
}
