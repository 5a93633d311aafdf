//! What the `ahnlich-raft` commands do, for `main.rs` to call once it has parsed the command
//! line: run a node until it is told to stop, and the `cluster` admin commands. (`cert` is in
//! [`crate::certs`].)

use std::fmt::Write as _;
use std::time::Duration;

use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::proto::admin as pb;
use crate::proto::admin::cluster_admin_client::ClusterAdminClient;
use crate::server::node::{Node, NodeConfig};

/// Runs a node until SIGTERM or Ctrl-C, then hands over leadership (if it leads, saying so on
/// stdout), stops and returns once everything is closed. `ready` is called with the bound
/// address once serving.
pub async fn serve(config: NodeConfig, ready: impl FnOnce(std::net::SocketAddr)) -> Result<(), String> {
    let node = Node::start(config).await.map_err(|e| e.to_string())?;
    let reloading = match node.users().cloned() {
        // Installed before the node says it is ready, so no SIGHUP after that can kill it.
        Some(users) => Some(tokio::spawn(reload_users_on_sighup(users, hangup_signal()?))),
        None => None,
    };
    ready(node.addr());
    let stopped = wait_for_stop_signal().await;
    if let Some(r) = reloading {
        r.abort();
    }
    stopped?;
    tracing::info!("node {} stopping", node.id());
    if let Some(leader) = node.step_down().await {
        println!("stopping: handed leadership to node {leader}");
    }
    node.shutdown().await.map_err(|e| e.to_string())
}

async fn wait_for_stop_signal() -> Result<(), String> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("installing the SIGTERM handler: {e}"))?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.map_err(|e| format!("waiting for Ctrl-C: {e}")),
        _ = term.recv() => Ok(()),
    }
}

fn hangup_signal() -> Result<tokio::signal::unix::Signal, String> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| format!("installing the SIGHUP handler: {e}"))
}

/// Re-reads the users file on every SIGHUP and says so on stdout; a file that does not parse
/// keeps the users as they were, and the log says why.
async fn reload_users_on_sighup(
    users: std::sync::Arc<crate::server::auth::Users>,
    mut hangup: tokio::signal::unix::Signal,
) {
    while hangup.recv().await.is_some() {
        let path = users.path().display().to_string();
        let reader = users.clone();
        match tokio::task::spawn_blocking(move || reader.reload()).await {
            Ok(Ok(n)) => println!("SIGHUP: re-read {path}: {n} users"),
            Ok(Err(e)) => tracing::error!("SIGHUP: keeping the users as they were: {e}"),
            Err(e) => tracing::error!("SIGHUP: re-reading {path}: {e}"),
        }
    }
}

/// A `cluster` subcommand.
#[derive(Clone, Debug)]
pub enum ClusterCommand {
    /// Print the node's view of the cluster.
    Status,
    /// Add a learner and wait until it has caught up.
    AddLearner {
        /// Its id.
        id: u64,
        /// Its address.
        addr: String,
    },
    /// Make learners voters.
    Promote(Vec<u64>),
    /// Remove members.
    Remove(Vec<u64>),
    /// Hand leadership to a voter.
    TransferLeader(u64),
    /// Take a snapshot on the node now.
    Snapshot,
}

/// A channel to the node at `addr`, over TLS with an operator's certificate when `tls` is
/// given; a call that takes longer than `deadline` fails.
pub async fn connect(addr: &str, tls: Option<ClientTlsConfig>, deadline: Duration) -> Result<Channel, String> {
    let scheme = if tls.is_none() { "http" } else { "https" };
    let mut endpoint =
        Endpoint::from_shared(format!("{scheme}://{addr}")).map_err(|e| format!("{addr:?} is not a host:port: {e}"))?;
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(|e| format!("TLS to {addr}: {e}"))?;
    }
    endpoint
        .connect_timeout(Duration::from_secs(3))
        .timeout(deadline)
        .connect()
        .await
        .map_err(|e| format!("cannot reach {addr}: {e}"))
}

/// What to say when the node at `addr` refused a call; `plain` says whether the call was
/// made without TLS (a TLS node's refusal then gets a hint).
fn refusal(addr: &str, plain: bool, s: &tonic::Status) -> String {
    let hint = match s.code() {
        tonic::Code::Internal | tonic::Code::Unknown | tonic::Code::Unavailable if plain => {
            " (if the cluster uses TLS, give --certs-dir, or --ca, --cert and --key)"
        }
        _ => "",
    };
    format!("{addr}: {}: {}{hint}", s.code(), s.message())
}

/// `cluster backup`: a consistent copy of the state of the node at `addr` into `out`, from a
/// snapshot at most `max_age` old (or one taken now); returns what to print.
pub async fn backup(
    addr: &str,
    tls: Option<ClientTlsConfig>,
    deadline: Duration,
    out: &std::path::Path,
    max_age: Duration,
) -> Result<String, String> {
    let mut client = ClusterAdminClient::new(connect(addr, tls, deadline).await?);
    crate::backup::receive(&mut client, out, max_age).await.map_err(|e| format!("backup from {addr}: {e}"))
}

/// Runs `command` against the node at `addr` and returns what to print; over TLS with an
/// operator's certificate when `tls` is given; a call that takes longer than `deadline` fails.
pub async fn cluster(
    addr: &str,
    tls: Option<ClientTlsConfig>,
    deadline: Duration,
    command: ClusterCommand,
) -> Result<String, String> {
    let plain = tls.is_none();
    let mut client = ClusterAdminClient::new(connect(addr, tls, deadline).await?);
    let failed = |s: tonic::Status| refusal(addr, plain, &s);
    let status = match command {
        ClusterCommand::Status => client.status(pb::StatusRequest {}).await,
        ClusterCommand::AddLearner { id, addr } => client.add_learner(pb::NodeSpec { id, addr }).await,
        ClusterCommand::Promote(ids) => client.promote(pb::NodeIds { ids }).await,
        ClusterCommand::Remove(ids) => client.remove(pb::NodeIds { ids }).await,
        ClusterCommand::TransferLeader(to) => client.transfer_leader(pb::TransferLeaderRequest { to }).await,
        ClusterCommand::Snapshot => {
            let taken = client.trigger_snapshot(pb::TriggerSnapshotRequest {}).await.map_err(failed)?.into_inner();
            return Ok(match taken.last_index {
                Some(i) => format!("snapshot taken up to log index {i}\n"),
                None => "nothing to snapshot yet\n".to_string(),
            });
        }
    };
    Ok(format_status(&status.map_err(failed)?.into_inner()))
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// A status as a few lines of text.
pub fn format_status(s: &pb::StatusReply) -> String {
    let mut out = String::new();
    let leader = match s.leader_id {
        Some(l) => format!("{l} ({})", s.leader_addr),
        None => "unknown".to_string(),
    };
    let _ = writeln!(out, "node {} at {}: {}, term {}, leader {leader}", s.id, s.addr, s.role, s.term);
    if !s.cluster_id.is_empty() {
        let _ = writeln!(out, "cluster {}", s.cluster_id);
    }
    let _ = writeln!(
        out,
        "log: last index {}, applied {}, snapshot {}, purged {}{}",
        opt(s.last_log_index),
        opt(s.last_applied),
        opt(s.snapshot_index),
        opt(s.purged_index),
        if s.joint { " (joint configuration)" } else { "" }
    );
    if !s.stopped.is_empty() {
        let _ = writeln!(out, "STOPPED: {}", s.stopped);
    }
    if !s.outside.is_empty() && s.stopped.is_empty() {
        let _ = writeln!(out, "not serving the DB API: {}", s.outside);
    }
    for m in &s.members {
        let role = if s.leader_id == Some(m.id) {
            "leader"
        } else if m.voter {
            "voter"
        } else {
            "learner"
        };
        let matched = m.matched_index.map(|i| format!(", matched {i}")).unwrap_or_default();
        let _ = writeln!(out, "  {:>20}  {:<7} {}{matched}", m.id, role, m.addr);
    }
    out
}
