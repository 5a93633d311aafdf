//! The `ahnlich-raft` command line: `serve` runs a node; `wal-inspect` checks a log directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use ahnlich_raft::server::node::{Node, NodeConfig};
use ahnlich_raft::wal::{self, fs::OsFs};

const USAGE: &str = "\
usage:
  ahnlich-raft serve [--data-dir DIR] [--listen ADDR] [--node-id N]
      run a node serving the Ahnlich DB API; a fresh data directory becomes a single-node
      cluster (defaults: --data-dir ./data, --listen 127.0.0.1:1369, --node-id 1);
      logs go to stderr, level from AHNLICH_RAFT_LOG (default warn)
  ahnlich-raft wal-inspect DIR
      verify a Raft log directory (DIR/log of a node), read-only, and report it
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => match serve_config(&args[1..]) {
            Ok(config) => serve(config),
            Err(e) => {
                eprint!("error: {e}\n{USAGE}");
                ExitCode::from(2)
            }
        },
        Some("wal-inspect") if args.len() == 2 => match wal::inspect(&OsFs, &PathBuf::from(&args[1])) {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprint!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn serve_config(args: &[String]) -> Result<NodeConfig, String> {
    let mut config = NodeConfig::new("data", SocketAddr::from(([127, 0, 0, 1], 1369)));
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--data-dir" => config.data_dir = PathBuf::from(value()?),
            "--listen" => {
                let v = value()?;
                config.listen = v.parse().map_err(|e| format!("--listen {v}: {e}"))?;
            }
            "--node-id" => {
                let v = value()?;
                config.node_id = v.parse().map_err(|e| format!("--node-id {v}: {e}"))?;
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(config)
}

/// Logs to stderr at the level named by `AHNLICH_RAFT_LOG` (error, warn, info, debug, trace;
/// default warn, which shows every repair recovery makes and every failure).
fn init_logging() {
    let level = std::env::var("AHNLICH_RAFT_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::WARN);
    tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::stderr).init();
}

fn serve(config: NodeConfig) -> ExitCode {
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let node = match Node::start(config).await {
            Ok(node) => node,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("ahnlich-raft serving the Ahnlich DB API on {} (Ctrl-C to stop)", node.addr());
        if let Err(e) = tokio::signal::ctrl_c().await {
            eprintln!("error: waiting for Ctrl-C: {e}");
        }
        match node.shutdown().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
