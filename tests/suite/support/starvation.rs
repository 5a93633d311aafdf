//! The starvation workload: many clients run linear GetSimN scans on the leader while one client
//! writes, and the cluster's term and leader are read before and after. Shared by the test that
//! asserts no election happens and by `cargo bench --bench cluster`, which reports the writer's
//! latency against an idle-cluster baseline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ahnlich_raft::proto::admin::StatusRequest;
use ahnlich_raft::proto::admin::cluster_admin_client::ClusterAdminClient;
use ahnlich_raft::proto::ahnlich::algorithm::algorithms::Algorithm;
use ahnlich_raft::proto::ahnlich::db::query as q;
use ahnlich_raft::proto::ahnlich::keyval::{DbStoreEntry, StoreKey, StoreValue};
use ahnlich_raft::proto::ahnlich::services::db_service::db_service_client::DbServiceClient;
use tonic::transport::Channel;

/// The store the readers scan.
pub const SCANNED: &str = "scanned";
/// The store the writer writes.
pub const WRITTEN: &str = "written";
const LOAD_BATCH: u64 = 1_000;

/// A deterministic vector of `dim` components for entry `i`.
pub fn vector(i: u64, dim: usize) -> Vec<f32> {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..dim)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn entry(key: Vec<f32>) -> DbStoreEntry {
    DbStoreEntry { key: Some(StoreKey { key }), value: Some(StoreValue { value: Default::default() }) }
}

async fn connect(addr: SocketAddr) -> DbServiceClient<Channel> {
    let ch = Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connect");
    DbServiceClient::new(ch).max_encoding_message_size(64 << 20).max_decoding_message_size(64 << 20)
}

/// Creates the scanned store with `entries` vectors of `dim` components and the written store.
pub async fn load(addr: SocketAddr, entries: u64, dim: usize) {
    let mut db = connect(addr).await;
    for store in [SCANNED, WRITTEN] {
        let create =
            q::CreateStore { store: store.into(), dimension: dim as u32, error_if_exists: true, ..Default::default() };
        db.create_store(create).await.expect("create store");
    }
    let mut i = 0;
    while i < entries {
        let end = (i + LOAD_BATCH).min(entries);
        let inputs = (i..end).map(|j| entry(vector(j, dim))).collect();
        db.set(q::Set { store: SCANNED.into(), inputs, ..Default::default() }).await.expect("load a batch");
        i = end;
    }
}

/// The term and leader a node reports.
pub async fn term_and_leader(addr: SocketAddr) -> (u64, Option<u64>) {
    let ch = Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connect");
    let s = ClusterAdminClient::new(ch).status(StatusRequest {}).await.expect("status").into_inner();
    (s.term, s.leader_id)
}

/// What a run measured.
pub struct Report {
    /// Every acknowledged write's latency, sorted.
    pub write_latencies: Vec<Duration>,
    /// Scans answered.
    pub scans: u64,
    /// Scans refused (any error).
    pub scan_errors: u64,
}

impl Report {
    /// The `p`-th percentile (0..=100) of the write latency.
    pub fn write_percentile(&self, p: f64) -> Duration {
        let n = self.write_latencies.len();
        assert!(n > 0, "no write was acknowledged");
        self.write_latencies[((n - 1) as f64 * p / 100.0).round() as usize]
    }
}

/// Runs `readers` clients scanning the leader (linear cosine GetSimN, k = 10) and one client
/// writing one entry at a time through it, for `length`; with `readers == 0` it measures the
/// writer alone. Every write must be acknowledged.
pub async fn run(leader: SocketAddr, readers: usize, length: Duration, dim: usize) -> Report {
    let stop = Arc::new(AtomicBool::new(false));
    let scans = Arc::new(AtomicU64::new(0));
    let scan_errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for r in 0..readers {
        let (stop, scans, scan_errors) = (stop.clone(), scans.clone(), scan_errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut db = connect(leader).await;
            let mut n = r as u64;
            while !stop.load(Ordering::Relaxed) {
                let query = q::GetSimN {
                    store: SCANNED.into(),
                    search_input: Some(StoreKey { key: vector(u64::MAX - n, dim) }),
                    closest_n: 10,
                    algorithm: Algorithm::CosineSimilarity as i32,
                    ..Default::default()
                };
                match db.get_sim_n(query).await {
                    Ok(_) => scans.fetch_add(1, Ordering::Relaxed),
                    Err(_) => scan_errors.fetch_add(1, Ordering::Relaxed),
                };
                n += readers as u64;
            }
        }));
    }
    let mut db = connect(leader).await;
    let mut write_latencies = Vec::new();
    let end = Instant::now() + length;
    let mut i = 0u64;
    while Instant::now() < end {
        let set = q::Set { store: WRITTEN.into(), inputs: vec![entry(vector(i, dim))], ..Default::default() };
        let started = Instant::now();
        db.set(set).await.unwrap_or_else(|e| panic!("write {i} under load: {e}"));
        write_latencies.push(started.elapsed());
        i += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("reader");
    }
    write_latencies.sort();
    Report { write_latencies, scans: scans.load(Ordering::Relaxed), scan_errors: scan_errors.load(Ordering::Relaxed) }
}
