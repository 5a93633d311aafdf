//! `ahnlich-raft local-cluster`: three nodes on loopback from one command; a write through one
//! node is read through another, the example Python script runs against it (when python3 has
//! the published client), each node works on its share of the CPUs, and SIGTERM stops every
//! node cleanly.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::procs::{channel, eventually};
use crate::support::python::client_installed_or_skip;
use ahnlich_raft::proto::ahnlich::db::query as q;
use ahnlich_raft::proto::ahnlich::keyval::{DbStoreEntry, StoreKey, StoreValue};
use ahnlich_raft::proto::ahnlich::services::db_service::db_service_client::DbServiceClient;

/// The local-cluster process, stopped (with its nodes) should the test fail before it does.
struct Stopping(std::process::Child);

impl Drop for Stopping {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
        }
    }
}

/// Lines from `lines` until one contains `until`, within `limit`.
fn read_until(lines: &mpsc::Receiver<String>, until: &str, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let done = line.contains(until);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(_) => panic!("no {until:?} within {limit:?}; printed so far:\n{}", seen.join("\n")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_cluster_serves_writes_through_any_node_and_stops_on_sigterm() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let mut child = Stopping(
        Command::new(env!("CARGO_BIN_EXE_ahnlich-raft"))
            .args(["local-cluster", "--nodes", "3", "--base-port", "0", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn local-cluster"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let printed = read_until(&lines, "Ctrl-C or SIGTERM stops every node", Duration::from_secs(90));
    let text = printed.join("\n");
    assert!(text.contains("cluster formed:"), "{text}");
    let addrs: Vec<SocketAddr> = printed
        .iter()
        .filter_map(|l| l.strip_prefix("node ").and_then(|r| r.split_once(": ")))
        .filter_map(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(addrs.len(), 3, "{text}");
    let members = printed.iter().filter(|l| l.contains("  voter   ") || l.contains("  leader  ")).count();
    assert_eq!(members, 3, "{text}");
    assert!(!text.contains("joint configuration"), "{text}");
    // Each node works on its share of the CPUs, as it says once it serves (a node may be a
    // voter a moment before it says so).
    let share = ahnlich_raft::local_cluster::worker_share(3);
    for id in 1..=3 {
        let said = format!("(worker threads: {share};");
        let log = dir.path().join(format!("n{id}.log"));
        let says = || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            std::future::ready(text.contains(&said).then_some(()))
        };
        eventually(Duration::from_secs(20), &format!("node {id} to say {said}"), says).await;
    }

    let mut first = DbServiceClient::new(channel(addrs[0]).await);
    let create = q::CreateStore {
        store: "lc".into(),
        dimension: 2,
        create_predicates: vec![],
        non_linear_indices: vec![],
        error_if_exists: true,
        schema: None,
    };
    first.create_store(create).await.expect("create through node 1");
    let entry = DbStoreEntry {
        key: Some(StoreKey { key: vec![1.0, 2.0] }),
        value: Some(StoreValue { value: Default::default() }),
    };
    first.set(q::Set { store: "lc".into(), inputs: vec![entry], schema: None }).await.expect("write through node 1");
    let mut third = DbServiceClient::new(channel(addrs[2]).await);
    let get = q::GetKey { store: "lc".into(), keys: vec![StoreKey { key: vec![1.0, 2.0] }], schema: None };
    let got = third.get_key(get).await.expect("read through node 3").into_inner().entries;
    assert_eq!(got.len(), 1, "node 3 reads the write made through node 1");

    if client_installed_or_skip() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/local_cluster.py");
        let out = tokio::process::Command::new("python3")
            .arg(script)
            .arg(addrs[1].to_string())
            .output()
            .await
            .expect("run the example");
        let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && report.contains("\nok"), "the example failed:\n{report}");
        assert!(report.contains("closest finance document: 'stocks fell on monday'"), "{report}");
    }

    let term = Command::new("kill").arg("-TERM").arg(child.0.id().to_string()).status().expect("kill");
    assert!(term.success());
    let stopped = read_until(&lines, "node 3 stopped", Duration::from_secs(60)).join("\n");
    for id in 1..=3 {
        assert!(stopped.contains(&format!("node {id} stopped (exit status: 0)")), "{stopped}");
    }
    assert!(child.0.wait().expect("wait").success());
    for addr in addrs {
        assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(), "{addr} still serves");
    }
}
