//! Cluster benchmark: real `ahnlich-raft serve` processes on loopback, driven over gRPC.
//!
//! `cargo bench --bench cluster` prints one table:
//! - Set of one 128-d entry with 3 metadata fields: 1 client sequential and 64 concurrent,
//!   on a 3-node cluster and, as the baseline in the same run, on a single node;
//! - linearizable GetSimN (cosine, k = 10) on 10k entries, 1 client and 64 concurrent;
//! - bulk ingest in Sets of 1,000 entries (entries/s);
//! - the data directory of one node after the ingest and a snapshot, against the raw size of
//!   the vectors;
//! - restart of a node holding everything, from spawn to its first answered read.
//!
//! Scale with `AHNLICH_BENCH_ENTRIES` (bulk entries, default 1,000,000) and
//! `AHNLICH_BENCH_WRITES` (writes per latency run, default 2,000).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahnlich_raft::proto::admin::cluster_admin_client::ClusterAdminClient;
use ahnlich_raft::proto::admin::{StatusRequest, TriggerSnapshotRequest};
use ahnlich_raft::proto::ahnlich::db::query as q;
use ahnlich_raft::proto::ahnlich::keyval::{DbStoreEntry, StoreKey, StoreValue};
use ahnlich_raft::proto::ahnlich::metadata::{MetadataValue, metadata_value};
use ahnlich_raft::proto::ahnlich::services::db_service::db_service_client::DbServiceClient;
use tonic::transport::Channel;

const DIM: usize = 128;

#[allow(dead_code)]
#[path = "../tests/support/procs.rs"]
mod procs;

use procs::{Proc, channel, start_three};

async fn db(addr: SocketAddr) -> DbServiceClient<Channel> {
    DbServiceClient::new(channel(addr).await).max_encoding_message_size(64 << 20).max_decoding_message_size(64 << 20)
}

async fn wait_voters(addr: SocketAddr, n: usize) -> u64 {
    let mut admin = ClusterAdminClient::new(channel(addr).await);
    for _ in 0..600 {
        if let Ok(s) = admin.status(StatusRequest {}).await {
            let s = s.into_inner();
            if s.members.iter().filter(|m| m.voter).count() == n
                && let Some(l) = s.leader_id
            {
                return l;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {n}-voter cluster at {addr}");
}

/// Deterministic pseudo-random vector number `i`.
fn vector(i: u64) -> Vec<f32> {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..DIM)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn entry(i: u64) -> DbStoreEntry {
    let text = |s: String| MetadataValue { value: Some(metadata_value::Value::RawString(s)) };
    let value = HashMap::from([
        ("author".to_string(), text(format!("a{}", i % 97))),
        ("lang".to_string(), text(["en", "fr", "de"][i as usize % 3].to_string())),
        ("id".to_string(), text(i.to_string())),
    ]);
    DbStoreEntry { key: Some(StoreKey { key: vector(i) }), value: Some(StoreValue { value }) }
}

async fn create(db: &mut DbServiceClient<Channel>, store: &str) {
    db.create_store(q::CreateStore {
        store: store.into(),
        dimension: DIM as u32,
        create_predicates: vec!["author".into()],
        ..Default::default()
    })
    .await
    .expect("create store");
}

struct Run {
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn summarize(mut lat: Vec<Duration>, wall: Duration) -> Run {
    lat.sort();
    let at = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    Run { ops_per_sec: lat.len() as f64 / wall.as_secs_f64(), p50: at(0.5), p99: at(0.99) }
}

/// `total` operations from `clients` concurrent clients; `op(client, i)` does operation `i`.
async fn drive<F, Fut>(addr: SocketAddr, clients: usize, total: u64, op: F) -> Run
where
    F: Fn(DbServiceClient<Channel>, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients as u64 {
        let client = db(addr).await;
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = c;
            while i < total {
                let t = Instant::now();
                op(client.clone(), i).await;
                lat.push(t.elapsed());
                i += clients as u64;
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("client task"));
    }
    summarize(lat, start.elapsed())
}

async fn writes(addr: SocketAddr, store: &'static str, clients: usize, total: u64, offset: u64) -> Run {
    drive(addr, clients, total, move |mut c, i| async move {
        c.set(q::Set { store: store.into(), inputs: vec![entry(offset + i)], ..Default::default() })
            .await
            .expect("set");
    })
    .await
}

async fn searches(addr: SocketAddr, store: &'static str, clients: usize, total: u64) -> Run {
    drive(addr, clients, total, move |mut c, i| async move {
        let r = c
            .get_sim_n(q::GetSimN {
                store: store.into(),
                search_input: Some(StoreKey { key: vector(i + 7_000_000) }),
                closest_n: 10,
                algorithm: 2, // cosine similarity
                ..Default::default()
            })
            .await
            .expect("get sim n");
        assert_eq!(r.into_inner().entries.len(), 10);
    })
    .await
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            total += if m.is_dir() { dir_size(&e.path()) } else { m.len() };
        }
    }
    total
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn row(name: &str, r: &Run) {
    println!(
        "| {name:<52} | {:>10.0} | {:>9.2} | {:>9.2} |",
        r.ops_per_sec,
        r.p50.as_secs_f64() * 1e3,
        r.p99.as_secs_f64() * 1e3
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that is not ours skips this bench.
    if std::env::args().skip(1).any(|a| !a.starts_with('-') && !"cluster".contains(a.as_str())) {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let writes_n = env_u64("AHNLICH_BENCH_WRITES", 2_000);
    let bulk = env_u64("AHNLICH_BENCH_ENTRIES", 1_000_000);
    let root = tempfile::TempDir::new().expect("tempdir");

    println!("| {:<52} | {:>10} | {:>9} | {:>9} |", "operation", "ops/s", "p50 ms", "p99 ms");
    println!("|{:-<54}|{:->12}|{:->11}|{:->11}|", "", "", "", "");

    // Baseline in the same run: one node.
    {
        let single = Proc::start(&root.path().join("single"), 1, None, &[]);
        wait_voters(single.addr, 1).await;
        create(&mut db(single.addr).await, "w").await;
        row("1 node: Set 1 entry, 1 client", &writes(single.addr, "w", 1, writes_n, 0).await);
        row("1 node: Set 1 entry, 64 clients", &writes(single.addr, "w", 64, writes_n * 4, 1 << 32).await);
    }

    let [n1, n2, mut n3] = start_three(root.path(), &[]);
    let leader = wait_voters(n1.addr, 3).await;
    let leader_addr = [&n1, &n2, &n3].iter().find(|p| p.id == leader).map(|p| p.addr).expect("leader");
    let follower_addr = [&n1, &n2, &n3].iter().find(|p| p.id != leader).map(|p| p.addr).expect("follower");
    create(&mut db(leader_addr).await, "w").await;
    row("3 nodes: Set 1 entry, 1 client (leader)", &writes(leader_addr, "w", 1, writes_n, 0).await);
    row("3 nodes: Set 1 entry, 64 clients (leader)", &writes(leader_addr, "w", 64, writes_n * 4, 1 << 32).await);
    row("3 nodes: Set 1 entry, 1 client (via follower)", &writes(follower_addr, "w", 1, writes_n, 2 << 32).await);

    create(&mut db(leader_addr).await, "search").await;
    let mut c = db(leader_addr).await;
    for chunk in 0..10u64 {
        let inputs = (chunk * 1000..(chunk + 1) * 1000).map(entry).collect();
        c.set(q::Set { store: "search".into(), inputs, ..Default::default() }).await.expect("load");
    }
    row("3 nodes: GetSimN 10k linearizable, 1 client (leader)", &searches(leader_addr, "search", 1, 500).await);
    row("3 nodes: GetSimN 10k linearizable, 64 clients (leader)", &searches(leader_addr, "search", 64, 2000).await);
    row("3 nodes: GetSimN 10k linearizable, 1 client (follower)", &searches(follower_addr, "search", 1, 500).await);

    create(&mut db(leader_addr).await, "bulk").await;
    let batches = bulk.div_ceil(1000);
    // Four clients keep the pipeline full without queueing much.
    let ingest = drive(leader_addr, 4, batches, move |mut c, b| async move {
        let inputs = (b * 1000..((b + 1) * 1000).min(bulk)).map(|i| entry(i + (8 << 32))).collect();
        c.set(q::Set { store: "bulk".into(), inputs, ..Default::default() }).await.expect("bulk set");
    })
    .await;
    println!(
        "| {:<52} | {:>10.0} | {:>9.2} | {:>9.2} |",
        format!("3 nodes: bulk ingest {bulk} entries, Sets of 1,000 (entries/s)"),
        ingest.ops_per_sec * 1000.0,
        ingest.p50.as_secs_f64() * 1e3,
        ingest.p99.as_secs_f64() * 1e3
    );

    // A snapshot on every node, then the size of one node's data directory.
    for p in [&n1, &n2, &n3] {
        let mut admin = ClusterAdminClient::new(channel(p.addr).await);
        admin.trigger_snapshot(TriggerSnapshotRequest {}).await.expect("snapshot");
    }
    // The log behind the snapshot is purged just after it; wait for that to show on disk.
    let mut admin3 = ClusterAdminClient::new(channel(n3.addr).await);
    for _ in 0..200 {
        let s = admin3.status(StatusRequest {}).await.expect("status").into_inner();
        if s.purged_index.is_some() && s.purged_index >= s.snapshot_index.map(|i| i.saturating_sub(100)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let raw = bulk * DIM as u64 * 4;
    let size = dir_size(&n3.dir);
    println!();
    for sub in ["log", "snapshots"] {
        let mut files: Vec<String> = std::fs::read_dir(n3.dir.join(sub))
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        let len = e.metadata().map_or(0, |m| m.len());
                        format!("{} {:.1} MiB", e.file_name().to_string_lossy(), len as f64 / (1 << 20) as f64)
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        println!("node 3 {sub}/: {}", files.join(", "));
    }
    println!(
        "data dir of node 3 after {bulk} x {DIM}-d and a snapshot: {:.1} MiB; raw vectors {:.1} MiB; ratio {:.2} \
         (all stores, with metadata: {} entries more)",
        size as f64 / (1 << 20) as f64,
        raw as f64 / (1 << 20) as f64,
        size as f64 / raw as f64,
        10_000 + writes_n * 6
    );

    // Restart node 3 and time it to its first answered read.
    n3.terminate();
    let started = Instant::now();
    n3.restart();
    let probe = StoreKey { key: entry(8 << 32).key.expect("key").key };
    loop {
        if let Ok(c) = Channel::from_shared(format!("http://{}", n3.addr)).expect("uri").connect().await {
            let mut r = tonic::Request::new(q::GetKey {
                store: "bulk".into(),
                keys: vec![probe.clone()],
                ..Default::default()
            });
            r.metadata_mut().insert("x-ahnlich-read-consistency", "local".parse().expect("ascii"));
            if DbServiceClient::new(c).get_key(r).await.is_ok_and(|g| g.into_inner().entries.len() == 1) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(started.elapsed() < Duration::from_secs(120), "node 3 did not come back");
    }
    println!("restart of node 3 to its first answered read: {:?}", started.elapsed());
    drop((n1, n2, n3));
}
