//! Crash tests that run a workload in a child process (this same test binary, one named test)
//! and kill it: the child prints `ACK n` for each acknowledged step; the parent keeps the
//! largest `n` it saw.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A running child and the largest acknowledgement it printed so far.
pub struct AckingChild {
    child: Child,
    acked: Arc<Mutex<u64>>,
    reader: JoinHandle<()>,
}

impl AckingChild {
    /// Runs test `test_name` of module `module` (its `module_path!()`) of this binary with
    /// `env` set.
    pub fn spawn(module: &str, test_name: &str, env: &[(&str, &OsStr)]) -> Self {
        let exe = std::env::current_exe().expect("test binary");
        // libtest names a test by its path below the crate root.
        let below_root = module.split_once("::").map_or("", |(_, rest)| rest);
        let full_name = format!("{below_root}::{test_name}");
        let mut cmd = Command::new(exe);
        cmd.args(["--exact", &full_name, "--nocapture", "--test-threads=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let acked = Arc::new(Mutex::new(0u64));
        let seen = acked.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("ACK ").and_then(|s| s.parse::<u64>().ok()) {
                    let mut a = seen.lock().expect("lock");
                    *a = (*a).max(n);
                }
            }
        });
        Self { child, acked, reader }
    }

    /// Kills the child with SIGKILL and returns the largest acknowledgement it printed.
    pub fn kill(mut self) -> u64 {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
        self.reader.join().expect("reader");
        *self.acked.lock().expect("lock")
    }
}

/// Prints an acknowledgement for the parent, at once.
pub fn ack(n: u64) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ACK {n}");
    let _ = out.flush();
}
