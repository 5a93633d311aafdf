//! Real `ahnlich-raft serve` processes on loopback, and gRPC clients to them.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ahnlich_raft::proto::admin::cluster_admin_client::ClusterAdminClient;
use ahnlich_raft::proto::admin::{StatusReply, StatusRequest};
use ahnlich_raft::proto::ahnlich::services::db_service::db_service_client::DbServiceClient;
use tonic::transport::Channel;

/// A port nothing listens on right now.
pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// A temporary directory for the nodes' data and output, kept (and its path printed) if the
/// test fails, so the logs and data directories of a failed run can be read afterwards.
pub struct ProcRoot(Option<tempfile::TempDir>);

impl ProcRoot {
    /// A new empty directory.
    pub fn new() -> Self {
        Self(Some(tempfile::TempDir::new().expect("tempdir")))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("present until dropped").path()
    }
}

impl Drop for ProcRoot {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.0.take()
        {
            eprintln!("the failed test's nodes are in {}", dir.keep().display());
        }
    }
}

/// Three nodes started with `extra` flags under `root`: node 1 bootstraps, and nodes 2 and 3
/// join through it at the same moment.
pub fn start_three(root: &Path, extra: &[&str]) -> [Proc; 3] {
    let n1 = Proc::start(root, 1, None, extra);
    let n2 = Proc::start(root, 2, Some(n1.addr), extra);
    let n3 = Proc::start(root, 3, Some(n1.addr), extra);
    [n1, n2, n3]
}

/// One node process.
pub struct Proc {
    /// Its id.
    pub id: u64,
    /// Its address.
    pub addr: SocketAddr,
    /// Its data directory.
    pub dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl Proc {
    /// Starts node `id` with data in `root/n{id}`, joining through `join` if given, with `extra`
    /// flags.
    pub fn start(root: &Path, id: u64, join: Option<SocketAddr>, extra: &[&str]) -> Proc {
        let mut p = Proc {
            id,
            addr: free_addr(),
            dir: root.join(format!("n{id}")),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        p.spawn(join);
        p
    }

    fn spawn(&mut self, join: Option<SocketAddr>) {
        // `AHNLICH_RAFT_SERVER_BIN` runs another build of the server (a bench comparing two).
        let bin =
            std::env::var("AHNLICH_RAFT_SERVER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_ahnlich-raft").into());
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--id")
            .arg(self.id.to_string())
            .args(&self.extra)
            .env("AHNLICH_RAFT_LOG", std::env::var("AHNLICH_RAFT_TEST_LOG").unwrap_or_else(|_| "error".into()))
            .stdout(self.output_file())
            .stderr(self.output_file());
        if let Some(j) = join {
            cmd.arg("--join").arg(j.to_string());
        }
        self.child = Some(cmd.spawn().expect("spawn ahnlich-raft serve"));
    }

    /// Where the node's stdout and stderr go (next to its data directory, whose parent is made
    /// if missing), appended across restarts.
    fn output_file(&self) -> Stdio {
        let out = self.dir.with_extension("out");
        if let Some(parent) = out.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        std::fs::OpenOptions::new().create(true).append(true).open(out).map_or_else(|_| Stdio::null(), Stdio::from)
    }

    /// Everything the node printed so far (stdout and its log on stderr).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("out")).unwrap_or_default()
    }

    /// Restarts a stopped node from its data directory (same address and flags).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "node {} is still running", self.id);
        self.spawn(None);
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The running node's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `signal` (a name `kill` takes, e.g. `HUP`) to the running node.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid();
        let ok = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().expect("kill");
        assert!(ok.success(), "kill -{signal} {pid}");
    }

    /// SIGTERM, and the exit status (waits up to 20 s).
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        let ok = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status().expect("kill -TERM");
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = c.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("node {} did not exit within 20 s of SIGTERM", self.id);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A DB API client.
    pub async fn db(&self) -> DbServiceClient<Channel> {
        DbServiceClient::new(channel(self.addr).await)
    }

    /// An admin client.
    pub async fn admin(&self) -> ClusterAdminClient<Channel> {
        ClusterAdminClient::new(channel(self.addr).await)
    }

    /// Its status, or `None` while it does not answer.
    pub async fn status(&self) -> Option<StatusReply> {
        let ch = Channel::from_shared(format!("http://{}", self.addr)).ok()?.connect().await.ok()?;
        ClusterAdminClient::new(ch).status(StatusRequest {}).await.ok().map(|r| r.into_inner())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A channel to `addr`, retrying for up to 10 s while the server starts.
pub async fn channel(addr: SocketAddr) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => panic!("cannot reach {addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Polls `check` every 50 ms until it returns `Some`, panicking with `what` after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to 30 s) until `p` reports `n` voters and a leader, and returns its status.
pub async fn voters(p: &Proc, n: usize) -> StatusReply {
    eventually(Duration::from_secs(30), &format!("{n} voters and a leader on node {}", p.id), || async {
        let s = p.status().await?;
        (s.members.iter().filter(|m| m.voter).count() == n && s.leader_id.is_some()).then_some(s)
    })
    .await
}
