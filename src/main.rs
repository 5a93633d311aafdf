//! The `ahnlich-raft` command line.
//!
//! Today it carries the offline tools for a data directory; the `serve` and `cluster` commands
//! arrive with the server (see the README for what exists).

use std::path::PathBuf;
use std::process::ExitCode;

use ahnlich_raft::wal::{self, fs::OsFs};

const USAGE: &str = "\
usage:
  ahnlich-raft serve [--data-dir DIR]     run a node (not built yet: see the README)
  ahnlich-raft wal-inspect DIR            verify a Raft log directory, read-only, and report it
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["wal-inspect", dir] => match wal::inspect(&OsFs, &PathBuf::from(dir)) {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        ["serve", ..] => {
            eprintln!(
                "ahnlich-raft: the server is not built yet. What exists today is the durable Raft \
                 log (src/wal, src/raft/log_store.rs) and `ahnlich-raft wal-inspect DIR`."
            );
            ExitCode::from(2)
        }
        ["-h" | "--help" | "help"] => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprint!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
