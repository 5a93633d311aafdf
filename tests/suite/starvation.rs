//! Heartbeats and elections never wait for user work: 64 clients scan 100k × 128-d vectors
//! linearly on the leader of three real processes while one client writes, and no node's term
//! or leader changes for the whole run, with the nodes' default worker threads and with one
//! each. The writer's latency is printed; `cargo bench --bench cluster` measures it against an
//! idle cluster.
//!
//! `AHNLICH_RAFT_STARVATION_ENTRIES` (default 100,000) and `AHNLICH_RAFT_STARVATION_SECONDS`
//! (default 10) scale the run.

use std::time::Duration;

use crate::support::procs::{ProcRoot, start_three, voters};
use crate::support::starvation::{self, term_and_leader};

const DIM: usize = 128;
const READERS: usize = 64;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_on_the_leader_cause_no_election() {
    scans_on_the_leader_cause_no_election_with(&[]).await;
}

/// With one worker thread per node (as `local-cluster` gives nodes on a small machine), any
/// slow work left on it would hold back the heartbeats it sends and the ones it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_on_the_leader_cause_no_election_with_one_worker_thread_per_node() {
    scans_on_the_leader_cause_no_election_with(&["--worker-threads", "1"]).await;
}

/// Three nodes started with `extra` flags, the leader scanned by clients while a writer writes:
/// no node's (term, leader) changes, and the scans make progress.
async fn scans_on_the_leader_cause_no_election_with(extra: &[&str]) {
    let entries = env_or("AHNLICH_RAFT_STARVATION_ENTRIES", 100_000);
    let seconds = env_or("AHNLICH_RAFT_STARVATION_SECONDS", 10);
    let root = ProcRoot::new();
    let nodes = start_three(root.path(), extra);
    let status = voters(&nodes[0], 3).await;
    let leader = nodes.iter().find(|p| Some(p.id) == status.leader_id).expect("the leader runs").addr;
    starvation::load(leader, entries, DIM).await;

    let mut before = Vec::new();
    for p in &nodes {
        before.push(term_and_leader(p.addr).await);
    }
    let report = starvation::run(leader, READERS, Duration::from_secs(seconds), DIM).await;
    let mut after = Vec::new();
    for p in &nodes {
        after.push(term_and_leader(p.addr).await);
    }
    eprintln!(
        "{READERS} clients scanning {entries} × {DIM}: {} scans ({} refused); the writer's p50 {:?}, p99 {:?} over {} writes",
        report.scans,
        report.scan_errors,
        report.write_percentile(50.0),
        report.write_percentile(99.0),
        report.write_latencies.len()
    );
    assert_eq!(before, after, "(term, leader) of each node changed under the scan load: an election happened");
    assert!(report.scans >= READERS as u64, "the readers made progress: {} scans", report.scans);
    assert_eq!(report.scan_errors, 0, "scans were refused");
}
