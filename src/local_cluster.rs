//! `ahnlich-raft local-cluster`: N nodes of this binary on loopback, as child processes, for
//! trying a cluster on one machine. Node 1 bootstraps and the others join it; each writes its
//! log to `DIR/n{i}.log` and works on its share of the CPUs ([`worker_share`]). A node that
//! exits is reported and not restarted; Ctrl-C or SIGTERM stops them all (SIGTERM to each, so a
//! leader hands over first) and waits for them.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::cli;
use crate::proto::admin as pb;
use crate::proto::admin::cluster_admin_client::ClusterAdminClient;

/// How long a node has to exit after SIGTERM before it is killed.
const STOP_WAIT: Duration = Duration::from_secs(20);

/// How long the cluster has to form (every node a voter) before the command gives up.
const FORM_WAIT: Duration = Duration::from_secs(60);

/// One node process.
struct Member {
    id: u64,
    addr: SocketAddr,
    child: Option<Child>,
}

/// `n` loopback addresses: ports `base..base + n`, or free ones the system picks if `base` is 0.
fn addresses(n: usize, base: u16) -> Result<Vec<SocketAddr>, String> {
    if base != 0 {
        return (0..n)
            .map(|i| {
                let port =
                    u16::try_from(usize::from(base) + i).map_err(|_| format!("port {base} + {i} is out of range"))?;
                Ok(SocketAddr::from(([127, 0, 0, 1], port)))
            })
            .collect();
    }
    // Held together so that no two are the same; freed just before the nodes bind them.
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("picking ports: {e}"))?;
    held.iter().map(|l| l.local_addr().map_err(|e| format!("picking ports: {e}"))).collect()
}

/// The worker threads each of `nodes` nodes gets: its share of the CPUs this process may use,
/// at least one. Nodes that share CPUs spend less of them per request on fewer threads each
/// (see "Threads" in the README).
pub fn worker_share(nodes: usize) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus / nodes.max(1)).max(1)
}

fn spawn(
    exe: &Path,
    dir: &Path,
    id: u64,
    addr: SocketAddr,
    join: Option<SocketAddr>,
    workers: usize,
) -> Result<Child, String> {
    let log = dir.join(format!("n{id}.log"));
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| format!("opening {}: {e}", log.display()))?;
    let err_file = log_file.try_clone().map_err(|e| format!("opening {}: {e}", log.display()))?;
    let mut cmd = Command::new(exe);
    cmd.arg("serve")
        .arg("--id")
        .arg(id.to_string())
        .arg("--data-dir")
        .arg(dir.join(format!("n{id}")))
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--worker-threads")
        .arg(workers.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(log_file)
        .stderr(err_file)
        .kill_on_drop(true);
    if let Some(join) = join {
        cmd.arg("--join").arg(join.to_string());
    }
    cmd.spawn().map_err(|e| format!("starting node {id}: {e}"))
}

/// Runs `nodes` nodes with data and logs under `dir`, ports from `base_port` (0: free ones),
/// printing through `say`, until Ctrl-C or SIGTERM.
pub async fn run(nodes: usize, dir: &Path, base_port: u16, say: impl Fn(&str)) -> Result<(), String> {
    if nodes == 0 || nodes > 9 {
        return Err(format!("--nodes must be 1 to 9, not {nodes}"));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let exe: PathBuf = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
    let addrs = addresses(nodes, base_port)?;
    let workers = worker_share(nodes);
    let mut members = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let id = i as u64 + 1;
        let join = (i > 0).then_some(addrs[0]);
        members.push(Member { id, addr: *addr, child: Some(spawn(&exe, dir, id, *addr, join, workers)?) });
        say(&format!(
            "node {id}: {addr} (data {}, log {}, worker threads {workers})",
            dir.join(format!("n{id}")).display(),
            dir.join(format!("n{id}.log")).display()
        ));
    }
    let status = wait_formed(&members).await;
    match status {
        Ok(status) => say(&format!("cluster formed:\n{status}")),
        Err(e) => say(&format!("the cluster did not form: {e} (see the logs in {})", dir.display())),
    }
    say("Ctrl-C or SIGTERM stops every node");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("listening for SIGTERM: {e}"))?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                for m in &mut members {
                    if let Some(child) = &mut m.child
                        && let Ok(Some(exit)) = child.try_wait()
                    {
                        say(&format!("node {} ({}) exited ({exit}); it is not restarted (its log: {})",
                            m.id, m.addr, dir.join(format!("n{}.log", m.id)).display()));
                        m.child = None;
                    }
                }
            }
        }
    }
    say("stopping every node");
    for m in &mut members {
        if let Some(child) = &m.child
            && let Some(pid) = child.id()
        {
            // SIGTERM, so that each node stops cleanly (a leader hands over first).
            let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        }
    }
    for m in &mut members {
        if let Some(mut child) = m.child.take() {
            match tokio::time::timeout(STOP_WAIT, child.wait()).await {
                Ok(Ok(exit)) => say(&format!("node {} stopped ({exit})", m.id)),
                _ => {
                    let _ = child.kill().await;
                    say(&format!("node {} did not stop within {STOP_WAIT:?} and was killed", m.id));
                }
            }
        }
    }
    Ok(())
}

/// Waits until node 1 reports every node a voter under a leader, and returns its status as
/// `cluster status` prints it.
async fn wait_formed(members: &[Member]) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + FORM_WAIT;
    let first = members[0].addr.to_string();
    let mut last_error;
    loop {
        match cli::connect(&first, None, Duration::from_secs(3)).await {
            Ok(channel) => match ClusterAdminClient::new(channel).status(pb::StatusRequest {}).await {
                Ok(reply) => {
                    let s = reply.into_inner();
                    let voters = s.members.iter().filter(|m| m.voter).count();
                    if s.leader_id.is_some() && voters == members.len() && !s.joint {
                        return Ok(cli::format_status(&s));
                    }
                    last_error = format!("{voters} of {} nodes are voters", members.len());
                }
                Err(e) => last_error = e.message().to_string(),
            },
            Err(e) => last_error = e,
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("after {FORM_WAIT:?}: {last_error}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
