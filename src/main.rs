//! The `ahnlich-raft` command line. This file only parses; the work is in the library
//! (`ahnlich_raft::cli`, `ahnlich_raft::wal::inspect`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use ahnlich_raft::backup::Backup;
use ahnlich_raft::certs::{self, CertCommand};
use ahnlich_raft::cli::{self, ClusterCommand};
use ahnlich_raft::config_file;
use ahnlich_raft::logging::{self, LogFormat};
use ahnlich_raft::server::context::ReadConsistency;
use ahnlich_raft::server::node::{DEFAULT_MAX_SNAPSHOT_BYTES, MAX_MESSAGE_BYTES, NodeConfig, ServerLimits};
use ahnlich_raft::server::security::{self, CertFiles, PeerFiles, SecurityConfig, files};
use ahnlich_raft::wal::{self, fs::OsFs};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

/// The allocator of the server (and of the benches that measure it); see `Cargo.toml`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A durable, Raft-replicated server for the Ahnlich vector database.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node serving the Ahnlich DB API, the Raft transport and cluster admin on one port.
    ///
    /// An empty data directory becomes a single-node cluster at once, unless --join names a
    /// member to join through; a directory with a log restarts from it. Logs go to stderr at
    /// the filter in AHNLICH_RAFT_LOG (default `info,openraft=warn`), as --log-format says.
    Serve(Box<ServeArgs>),
    /// Administer a running cluster through any of its nodes.
    ///
    /// On a cluster with TLS, give the cluster CA and an operator certificate it issued
    /// (--certs-dir holding ca.crt, client.crt and client.key, or --ca, --cert and --key).
    Cluster {
        /// Address (host:port) of a node of the cluster.
        #[arg(long, env = "AHNLICH_RAFT_ADDR", default_value = "127.0.0.1:1369")]
        addr: String,
        #[command(flatten)]
        tls: OperatorTls,
        /// Seconds a call may take before it fails (adding a learner waits up to a minute for
        /// it to catch up).
        #[arg(long, env = "AHNLICH_RAFT_TIMEOUT", default_value_t = 120)]
        timeout: u64,
        #[command(subcommand)]
        command: ClusterCmd,
    },
    /// Make the certificates of a cluster with TLS: a CA, then a certificate per node and per
    /// operator, all issued by it and written into one directory.
    ///
    /// Copy ca.crt, node.crt and node.key to each node (one node certificate per host) and
    /// start it with --certs-dir; keep ca.key off the nodes.
    Cert {
        /// The directory the files are written to (and ca.key read from).
        #[arg(long, env = "AHNLICH_RAFT_CERTS_DIR", default_value = "certs")]
        certs_dir: PathBuf,
        #[command(subcommand)]
        command: CertCmd,
    },
    /// Make a data directory from a backup (`cluster backup`): it starts as a new single-node
    /// cluster (a new cluster id) holding exactly the backup's state; other nodes then join it.
    Restore {
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
        /// The new data directory (must not exist or be empty).
        #[arg(long, env = "AHNLICH_RAFT_DATA_DIR")]
        data_dir: PathBuf,
        /// The new node's id (default: a new random one).
        #[arg(long, env = "AHNLICH_RAFT_ID")]
        id: Option<u64>,
        /// The address (host:port) the node will serve on, as peers and clients reach it.
        #[arg(long, env = "AHNLICH_RAFT_ADVERTISE", default_value = "127.0.0.1:1369")]
        advertise: String,
    },
    /// Run a cluster of N nodes on loopback as child processes (node 1 bootstraps, the others
    /// join it), print their addresses and the cluster's status, and stop them all on Ctrl-C.
    LocalCluster {
        /// How many nodes (1 to 9).
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Where the nodes keep their data (DIR/n1, …) and logs (DIR/n1.log, …).
        #[arg(long, default_value = "local-cluster")]
        dir: PathBuf,
        /// Node i listens on 127.0.0.1:(BASE_PORT + i - 1); 0 picks free ports.
        #[arg(long, default_value_t = 1369)]
        base_port: u16,
    },
    /// Check or describe a snapshot or backup file, offline.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCmd,
    },
    /// Verify a Raft log directory (DIR/log of a node) read-only and report what it holds.
    WalInspect {
        /// The log directory.
        dir: PathBuf,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// A TOML file with the same keys as these flags (`data-dir = "d1"`); a flag or its
    /// environment variable overrides the file. An unknown key or a wrong type is an error.
    #[arg(long, env = "AHNLICH_RAFT_CONFIG")]
    config: Option<PathBuf>,
    /// Print the effective configuration (as a --config file, each value with its source:
    /// flag, env, file or default) and exit.
    #[arg(long)]
    print_config: bool,
    /// Directory holding this node's log, snapshots and id (created if missing; locked).
    #[arg(long, env = "AHNLICH_RAFT_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "AHNLICH_RAFT_LISTEN", default_value = "127.0.0.1:1369")]
    listen: SocketAddr,
    /// Address peers and clients reach this node at (default: the listen address).
    #[arg(long, env = "AHNLICH_RAFT_ADVERTISE")]
    advertise: Option<String>,
    /// This node's id; default: the id stored in the data directory, or a new random one.
    #[arg(long, visible_alias = "node-id", env = "AHNLICH_RAFT_ID")]
    id: Option<u64>,
    /// A member (host:port) to join through when the data directory is empty.
    #[arg(long, env = "AHNLICH_RAFT_JOIN")]
    join: Option<String>,
    /// With an empty data directory and no --join, start empty and wait to be added with
    /// `cluster add-learner` instead of bootstrapping a single-node cluster.
    #[arg(long, env = "AHNLICH_RAFT_NO_BOOTSTRAP")]
    no_bootstrap: bool,
    /// Default read consistency: `linearizable`, or `local` (fast, possibly stale on a
    /// follower). A request may ask for either with the `x-ahnlich-read-consistency` header.
    #[arg(long, env = "AHNLICH_RAFT_READ_CONSISTENCY", default_value = "linearizable")]
    read_consistency: ReadConsistency,
    /// Largest client message in bytes; any write accepted can be replicated.
    #[arg(long, env = "AHNLICH_RAFT_MAX_MESSAGE_BYTES", default_value_t = MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,
    /// Largest memory (bytes) the stores may use; writes past it get RESOURCE_EXHAUSTED and
    /// change nothing (default: no cap).
    #[arg(long, env = "AHNLICH_RAFT_MAX_MEMORY")]
    max_memory: Option<usize>,
    /// Largest snapshot (bytes) this node accepts from a leader; one larger, or larger than
    /// the free space of the data volume, is refused before a byte is written.
    #[arg(long, env = "AHNLICH_RAFT_MAX_SNAPSHOT_BYTES", default_value_t = DEFAULT_MAX_SNAPSHOT_BYTES)]
    max_snapshot_bytes: u64,
    /// Seconds `cluster add-learner` waits for the new node's address to answer before it
    /// refuses to add it.
    #[arg(long, env = "AHNLICH_RAFT_ADD_LEARNER_TIMEOUT", default_value_t = 3)]
    add_learner_timeout: u64,
    /// Requests served at once on one connection; more wait.
    #[arg(long, env = "AHNLICH_RAFT_CONCURRENCY_PER_CONNECTION", default_value_t = ServerLimits::default().concurrency_per_connection)]
    concurrency_per_connection: usize,
    /// HTTP/2 streams a client may open at once on one connection.
    #[arg(long, env = "AHNLICH_RAFT_MAX_CONCURRENT_STREAMS", default_value_t = ServerLimits::default().max_concurrent_streams)]
    max_concurrent_streams: u32,
    /// Seconds a request may take before it is answered DEADLINE_EXCEEDED.
    #[arg(long, env = "AHNLICH_RAFT_REQUEST_TIMEOUT", default_value_t = ServerLimits::default().request_timeout.as_secs())]
    request_timeout: u64,
    /// Seconds between pings of an idle connection; one that does not answer within
    /// --keepalive-timeout seconds is closed.
    #[arg(long, env = "AHNLICH_RAFT_KEEPALIVE_INTERVAL", default_value_t = ServerLimits::default().keepalive_interval.as_secs())]
    keepalive_interval: u64,
    /// See --keepalive-interval.
    #[arg(long, env = "AHNLICH_RAFT_KEEPALIVE_TIMEOUT", default_value_t = ServerLimits::default().keepalive_timeout.as_secs())]
    keepalive_timeout: u64,
    #[command(flatten)]
    security: ServeSecurity,
    /// Take a snapshot once this many log entries were applied since the last one (0: only when
    /// asked) and the log they take is large enough (--snapshot-log-percent), or once that log
    /// reaches --snapshot-log-bytes.
    #[arg(long, env = "AHNLICH_RAFT_SNAPSHOT_EVERY", default_value_t = ahnlich_raft::raft::config::DEFAULT_SNAPSHOT_EVERY)]
    snapshot_every: u64,
    /// A snapshot also waits until the log written since the last one is this percentage of
    /// that snapshot's size (0: the entry count alone decides; at most 1000), unless that log
    /// reaches --snapshot-log-bytes first.
    #[arg(long, env = "AHNLICH_RAFT_SNAPSHOT_LOG_PERCENT", default_value_t = ahnlich_raft::raft::config::DEFAULT_SNAPSHOT_LOG_PERCENT,
          value_parser = clap::value_parser!(u64).range(0..=1000))]
    snapshot_log_percent: u64,
    /// Bytes of log since the last snapshot that are enough for the next, however large the
    /// state and however few entries hold them (see --snapshot-log-percent).
    #[arg(long, env = "AHNLICH_RAFT_SNAPSHOT_LOG_BYTES", default_value_t = ahnlich_raft::raft::config::DEFAULT_SNAPSHOT_LOG_BYTES)]
    snapshot_log_bytes: u64,
    /// Log entries kept behind a snapshot for followers that lag a little.
    #[arg(long, env = "AHNLICH_RAFT_KEEP_BEHIND_SNAPSHOT", default_value_t = 1000)]
    keep_behind_snapshot: u64,
    /// How log lines are written to stderr: `text` or `json` (one object per line). Which lines
    /// are kept is set by AHNLICH_RAFT_LOG (e.g. `info,openraft=warn`, the default).
    #[arg(long, env = "AHNLICH_RAFT_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    /// Serve Prometheus metrics at http://ADDR/metrics (plain HTTP, no auth: bind it where only
    /// your monitoring reaches). Off unless given.
    #[arg(long, env = "AHNLICH_RAFT_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Let the kernel back this node's memory with transparent huge pages. Off by default: the
    /// allocator's reuse of memory then keeps faulting in fresh 2 MiB pages to zero, which
    /// slowed bulk ingest by a third here; on, snapshot transfers and backups run faster (see
    /// the README).
    #[arg(long, env = "AHNLICH_RAFT_ALLOW_TRANSPARENT_HUGE_PAGES")]
    allow_transparent_huge_pages: bool,
    /// Threads that serve requests and drive Raft (default: one per CPU this process may use).
    /// Where other nodes or a load generator share the CPUs, fewer cost less CPU per request
    /// (see "Threads" in the README).
    #[arg(long, env = "AHNLICH_RAFT_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=MAX_WORKER_THREADS))]
    worker_threads: Option<u16>,
}

/// The most `--worker-threads` takes.
const MAX_WORKER_THREADS: i64 = 1024;

/// TLS, peer certificates and client auth of `serve`.
#[derive(Args)]
struct ServeSecurity {
    /// A directory holding the cluster CA and this node's certificate (ca.crt, node.crt,
    /// node.key, as `ahnlich-raft cert` writes them): TLS on the port, and mutual TLS
    /// between nodes and with operators.
    #[arg(long, env = "AHNLICH_RAFT_CERTS_DIR", conflicts_with_all = ["peer_ca", "peer_cert", "peer_key"])]
    certs_dir: Option<PathBuf>,
    /// The cluster CA's certificate (PEM): peers and operators must present a certificate it
    /// issued.
    #[arg(long, env = "AHNLICH_RAFT_PEER_CA", requires_all = ["peer_cert", "peer_key"])]
    peer_ca: Option<PathBuf>,
    /// This node's certificate (PEM) issued by the cluster CA, for server and client use.
    #[arg(long, env = "AHNLICH_RAFT_PEER_CERT", requires_all = ["peer_ca", "peer_key"])]
    peer_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, env = "AHNLICH_RAFT_PEER_KEY", requires_all = ["peer_ca", "peer_cert"])]
    peer_key: Option<PathBuf>,
    /// The certificate (PEM) the port presents to clients, as upstream Ahnlich's --tls-cert
    /// (default: the node certificate). In a cluster the cluster CA must have issued it too.
    #[arg(long, env = "AHNLICH_RAFT_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "AHNLICH_RAFT_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require DB-API clients to authenticate (`authorization: Bearer user:api_key`) against
    /// the users of --auth-config, as upstream Ahnlich does. Needs TLS.
    #[arg(long, env = "AHNLICH_RAFT_ENABLE_AUTH", requires = "auth_config")]
    enable_auth: bool,
    /// Upstream Ahnlich's users file (TOML: [users] name = "sha256 hex of the key";
    /// [security] min_key_length). Re-read on SIGHUP.
    #[arg(long, env = "AHNLICH_RAFT_AUTH_CONFIG", requires = "enable_auth")]
    auth_config: Option<PathBuf>,
    /// Serve in clear text on a non-loopback address (anyone who reaches the port can read
    /// and change all data and administer the cluster).
    #[arg(long, env = "AHNLICH_RAFT_INSECURE")]
    insecure: bool,
}

impl ServeSecurity {
    fn config(self) -> SecurityConfig {
        let peer = match (self.certs_dir, self.peer_ca, self.peer_cert, self.peer_key) {
            (Some(dir), ..) => Some(PeerFiles::in_dir(&dir)),
            (None, Some(ca), Some(cert), Some(key)) => Some(PeerFiles { ca, node: CertFiles { cert, key } }),
            _ => None,
        };
        let tls = self.tls_cert.zip(self.tls_key).map(|(cert, key)| CertFiles { cert, key });
        SecurityConfig { tls, peer, auth: self.auth_config, insecure: self.insecure }
    }
}

/// The cluster CA and an operator's certificate, for `cluster` on a cluster with TLS.
#[derive(Args)]
struct OperatorTls {
    /// A directory holding ca.crt, client.crt and client.key.
    #[arg(long, env = "AHNLICH_RAFT_CERTS_DIR", conflicts_with_all = ["ca", "cert", "key"])]
    certs_dir: Option<PathBuf>,
    /// The cluster CA's certificate (PEM).
    #[arg(long, env = "AHNLICH_RAFT_CA", requires_all = ["cert", "key"])]
    ca: Option<PathBuf>,
    /// An operator certificate (PEM) issued by the cluster CA.
    #[arg(long, env = "AHNLICH_RAFT_CERT", requires_all = ["ca", "key"])]
    cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "AHNLICH_RAFT_KEY", requires_all = ["ca", "cert"])]
    key: Option<PathBuf>,
}

impl OperatorTls {
    fn config(self) -> Result<Option<tonic::transport::ClientTlsConfig>, String> {
        let (ca, client) = match (self.certs_dir, self.ca, self.cert, self.key) {
            (Some(dir), ..) => (
                dir.join(files::CA_CERT),
                CertFiles { cert: dir.join(files::CLIENT_CERT), key: dir.join(files::CLIENT_KEY) },
            ),
            (None, Some(ca), Some(cert), Some(key)) => (ca, CertFiles { cert, key }),
            _ => return Ok(None),
        };
        security::operator_tls(&ca, &client).map(Some)
    }
}

// The variants name the subcommands (`create-ca`, …).
#[allow(clippy::enum_variant_names)]
#[derive(Subcommand)]
enum CertCmd {
    /// Make a new cluster CA (ca.crt, ca.key).
    CreateCa,
    /// Make a node certificate (node.crt, node.key) for the hosts peers and clients dial.
    CreateNode {
        /// DNS names and IP addresses of the node, e.g. `10.0.0.1 db1.example.com`.
        hosts: Vec<String>,
        /// More hosts, one per flag (`--host 10.0.0.1 --host db1.example.com`).
        #[arg(long = "host")]
        host: Vec<String>,
    },
    /// Make an operator's client certificate (client.crt, client.key) for `cluster`.
    CreateClient {
        /// The name the certificate is issued to.
        #[arg(long, default_value = "root")]
        name: String,
    },
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Print the node's view: role, term, log position, members and the leader.
    Status,
    /// Add a non-voting member and wait until it has caught up.
    AddLearner {
        /// The new member's id.
        #[arg(long, env = "AHNLICH_RAFT_LEARNER_ID")]
        id: u64,
        /// The new member's address (host:port).
        #[arg(long = "node-addr", env = "AHNLICH_RAFT_LEARNER_ADDR")]
        node_addr: String,
    },
    /// Make learners voters.
    Promote {
        /// Ids of the learners.
        #[arg(required = true)]
        ids: Vec<u64>,
    },
    /// Remove members from the cluster.
    Remove {
        /// Ids of the members.
        #[arg(required = true)]
        ids: Vec<u64>,
    },
    /// Hand leadership to a voter.
    TransferLeader {
        /// Id of the voter to lead.
        #[arg(long, env = "AHNLICH_RAFT_TRANSFER_TO")]
        to: u64,
    },
    /// Take a snapshot on the node now (returns once it is durable).
    Snapshot,
    /// Copy the node's whole state, consistent at one log index, into a file while it runs.
    Backup {
        /// The file to write (must not exist); checked whole before it gets this name.
        #[arg(long)]
        out: PathBuf,
        /// Send the newest snapshot if it is at most this many seconds old (or holds everything
        /// applied); otherwise the node takes a fresh one first.
        #[arg(long, default_value_t = 0)]
        max_age: u64,
    },
}

#[derive(Subcommand)]
enum SnapshotCmd {
    /// Check a snapshot or backup file (checksums, length, archive); exit non-zero if damaged.
    Verify {
        /// The file.
        file: PathBuf,
    },
    /// Check a snapshot or backup file and print its log position, membership and stores.
    Inspect {
        /// The file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let command = Cli::command();
    let mut matches = command.clone().get_matches();
    let mut from_file = config_file::FromFile::default();
    if let Some(("serve", serve_matches)) = matches.subcommand()
        && let Some(file) = serve_matches.get_one::<PathBuf>("config")
    {
        let serve_command = command.find_subcommand("serve").expect("serve is a subcommand");
        from_file = match config_file::read(serve_command, serve_matches, file) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        // The file's values, as flags after the given ones (each only where none was given).
        matches = match command.clone().try_get_matches_from(std::env::args_os().chain(from_file.args.iter().cloned()))
        {
            Ok(m) => m,
            Err(e) => {
                eprintln!("error: {}", config_file::explain(&e, &from_file, file));
                return ExitCode::FAILURE;
            }
        };
    }
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Serve(args) if args.print_config => {
            let serve_command = command.find_subcommand("serve").expect("serve is a subcommand");
            let serve_matches = matches.subcommand_matches("serve").expect("serve was given");
            print!("{}", config_file::effective(serve_command, serve_matches, &from_file.keys));
            ExitCode::SUCCESS
        }
        Command::Serve(args) => serve(*args),
        Command::Cert { certs_dir, command } => {
            let command = match command {
                CertCmd::CreateCa => CertCommand::Ca,
                CertCmd::CreateNode { hosts, host } => CertCommand::Node { hosts: [hosts, host].concat() },
                CertCmd::CreateClient { name } => CertCommand::Client { name },
            };
            report(certs::run(&certs_dir, &command))
        }
        Command::Restore { from, data_dir, id, advertise } => run(async move {
            print!("{}", ahnlich_raft::backup::restore(&from, &data_dir, id, &advertise).await?);
            Ok(())
        }),
        Command::LocalCluster { nodes, dir, base_port } => run(async move {
            ahnlich_raft::local_cluster::run(nodes, &dir, base_port, |line| {
                use std::io::Write as _;
                // Whoever reads this may be gone; the nodes must still be stopped.
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}").and_then(|()| out.flush());
            })
            .await
        }),
        Command::Snapshot { command } => {
            let (file, describe) = match command {
                SnapshotCmd::Verify { file } => (file, false),
                SnapshotCmd::Inspect { file } => (file, true),
            };
            let checked = Backup::open(&file).and_then(|b| {
                if describe {
                    b.describe()
                } else {
                    b.engine().map(|_| {
                        format!("{}: snapshot {}, checksums, archive and state valid\n", file.display(), b.id())
                    })
                }
            });
            report(checked)
        }
        Command::Cluster { addr, tls, timeout, command } => {
            let command = match command {
                ClusterCmd::Status => ClusterCommand::Status,
                ClusterCmd::AddLearner { id, node_addr } => ClusterCommand::AddLearner { id, addr: node_addr },
                ClusterCmd::Promote { ids } => ClusterCommand::Promote(ids),
                ClusterCmd::Remove { ids } => ClusterCommand::Remove(ids),
                ClusterCmd::TransferLeader { to } => ClusterCommand::TransferLeader(to),
                ClusterCmd::Snapshot => ClusterCommand::Snapshot,
                ClusterCmd::Backup { out, max_age } => {
                    return run(async move {
                        let deadline = std::time::Duration::from_secs(timeout.max(1));
                        let max_age = std::time::Duration::from_secs(max_age);
                        print!("{}", cli::backup(&addr, tls.config()?, deadline, &out, max_age).await?);
                        Ok(())
                    });
                }
            };
            run(async move {
                let deadline = std::time::Duration::from_secs(timeout.max(1));
                let out = cli::cluster(&addr, tls.config()?, deadline, command).await?;
                print!("{out}");
                Ok(())
            })
        }
        Command::WalInspect { dir } => report(wal::inspect(&OsFs, &dir)),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    if let Err(e) = logging::init(std::env::var(logging::LOG_ENV).ok().as_deref(), args.log_format) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    if !args.allow_transparent_huge_pages
        && let Err(e) = ahnlich_raft::process::disable_transparent_huge_pages()
    {
        tracing::info!("transparent huge pages stay as the system sets them: {e}");
    }
    let mut config = NodeConfig::new(args.data_dir, args.listen);
    config.advertise = args.advertise;
    config.node_id = args.id;
    config.join = args.join;
    config.bootstrap = !args.no_bootstrap;
    config.read_consistency = args.read_consistency;
    config.max_message_bytes = args.max_message_bytes;
    config.security = args.security.config();
    config.limits.max_memory_bytes = args.max_memory;
    config.max_snapshot_bytes = args.max_snapshot_bytes;
    config.add_learner_timeout = std::time::Duration::from_secs(args.add_learner_timeout.max(1));
    config.server = ServerLimits {
        concurrency_per_connection: args.concurrency_per_connection.max(1),
        max_concurrent_streams: args.max_concurrent_streams.max(1),
        request_timeout: std::time::Duration::from_secs(args.request_timeout.max(1)),
        keepalive_interval: std::time::Duration::from_secs(args.keepalive_interval.max(1)),
        keepalive_timeout: std::time::Duration::from_secs(args.keepalive_timeout.max(1)),
    };
    config.raft.snapshot_every = args.snapshot_every;
    config.raft.snapshot_log_percent = args.snapshot_log_percent;
    config.raft.snapshot_log_bytes = args.snapshot_log_bytes;
    config.raft.keep_behind_snapshot = args.keep_behind_snapshot;
    config.metrics_listen = args.metrics_listen;
    run_on(
        args.worker_threads.map(usize::from),
        cli::serve(config, |addr| {
            let workers = tokio::runtime::Handle::current().metrics().num_workers();
            println!(
                "ahnlich-raft serving the Ahnlich DB API on {addr} (worker threads: {workers}; Ctrl-C or SIGTERM to stop)"
            )
        }),
    )
}

/// Prints what a command produced, or its error, and exits accordingly.
fn report(outcome: Result<impl std::fmt::Display, impl std::fmt::Display>) -> ExitCode {
    match outcome {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `work` to completion on a runtime of tokio's default size; prints its error, if any.
fn run(work: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    run_on(None, work)
}

/// [`run`] on a runtime of `workers` worker threads (`None`: tokio's default, one per CPU the
/// process may use).
fn run_on(workers: Option<usize>, work: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
