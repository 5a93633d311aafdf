//! What `serve` sets on its own process: transparent huge pages off unless allowed
//! (`ahnlich_raft::process`), and the number of threads its runtime works on.

use std::time::Duration;

use crate::support::procs::{Proc, ProcRoot, eventually};

/// `THP_enabled` of `/proc/<pid>/status`: 0 once the process has turned huge pages off.
fn thp_enabled(pid: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    let line = status.lines().find_map(|l| l.strip_prefix("THP_enabled:"));
    line.unwrap_or_else(|| panic!("no THP_enabled in /proc/{pid}/status")).trim().to_string()
}

/// Starts a node with `extra` flags and returns what its process reports once it answers.
async fn thp_enabled_of_a_node_started_with(extra: &[&str]) -> String {
    let root = ProcRoot::new();
    let node = Proc::start(root.path(), 1, None, extra);
    eventually(Duration::from_secs(20), "the node to answer", || node.status()).await;
    thp_enabled(&node.pid().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_turns_transparent_huge_pages_off_unless_allowed() {
    // The node inherits this process's setting: it must start out on for the test to mean anything.
    assert_eq!(thp_enabled("self"), "1", "the test process itself runs without huge pages");
    assert_eq!(thp_enabled_of_a_node_started_with(&[]).await, "0", "off by default");
    let allowed = thp_enabled_of_a_node_started_with(&["--allow-transparent-huge-pages"]).await;
    assert_eq!(allowed, "1", "--allow-transparent-huge-pages leaves them as the system sets them");
}

#[test]
fn the_flag_takes_only_true_or_false() {
    let print_config = |value: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ahnlich-raft"))
            .args(["serve", "--print-config"])
            .env("AHNLICH_RAFT_ALLOW_TRANSPARENT_HUGE_PAGES", value)
            .output()
            .expect("run ahnlich-raft")
    };
    let refused = print_config("1");
    assert!(!refused.status.success(), "`1` is refused");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("invalid value '1' for '--allow-transparent-huge-pages'"), "{stderr}");
    let accepted = print_config("true");
    assert!(accepted.status.success(), "{}", String::from_utf8_lossy(&accepted.stderr));
    let config = String::from_utf8_lossy(&accepted.stdout);
    assert!(config.contains("allow-transparent-huge-pages = true  # env"), "{config}");
}

/// Starts a node with `extra` flags and returns the worker count its runtime reports once it
/// is up (the "worker threads: N" of the line it prints when it serves, from tokio's own
/// metrics).
async fn workers_of_a_node_started_with(extra: &[&str]) -> usize {
    let root = ProcRoot::new();
    let node = Proc::start(root.path(), 1, None, extra);
    let reported = || {
        let out = node.stdout();
        let count = out.lines().find_map(|l| l.split("(worker threads: ").nth(1)?.split(';').next()?.parse().ok());
        async move { count }
    };
    eventually(Duration::from_secs(20), "the node to say how many worker threads it runs", reported).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_works_on_as_many_threads_as_asked_and_one_per_cpu_by_default() {
    assert_eq!(workers_of_a_node_started_with(&["--worker-threads", "1"]).await, 1);
    assert_eq!(workers_of_a_node_started_with(&["--worker-threads", "3"]).await, 3);
    let cpus = std::thread::available_parallelism().expect("the CPU count").get();
    assert_eq!(workers_of_a_node_started_with(&[]).await, cpus, "one per CPU by default");
}

/// `serve --print-config` with `flag` set to `value` (as `--flag=value`, so a value may start
/// with a dash).
fn print_config_with(flag: &str, value: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ahnlich-raft"))
        .args(["serve", "--print-config", &format!("{flag}={value}")])
        .output()
        .expect("run ahnlich-raft")
}

/// Asserts that `serve` refuses `value` for `flag`, naming both.
fn assert_refused(flag: &str, value: &str) {
    let out = print_config_with(flag, value);
    assert!(!out.status.success(), "{value} is refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("invalid value '{value}' for '{flag}")), "{stderr}");
}

#[test]
fn the_worker_count_is_one_to_1024() {
    for refused in ["0", "1025", "many"] {
        assert_refused("--worker-threads", refused);
    }
}

#[test]
fn the_snapshot_schedule_takes_a_share_up_to_1000_percent_and_a_byte_count() {
    for refused in ["1001", "-1", "half"] {
        assert_refused("--snapshot-log-percent", refused);
    }
    for refused in ["-1", "18446744073709551616", "256MiB"] {
        assert_refused("--snapshot-log-bytes", refused);
    }
    for (flag, value) in [("--snapshot-log-percent", "1000"), ("--snapshot-log-bytes", "0")] {
        let out = print_config_with(flag, value);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{flag} {value}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.lines().any(|l| l.contains(&flag[2..]) && l.contains(value)), "{stdout}");
    }
}
