//! Cluster benchmark: real `ahnlich-raft serve` processes on loopback, driven over gRPC.
//!
//! `cargo bench --bench cluster` prints one table:
//! - Set of one 128-d entry with 3 metadata fields: 1 client sequential and 64 concurrent,
//!   on a 3-node cluster and, as the baseline in the same run, on a single node;
//! - linearizable GetSimN (cosine, k = 10) on 10k entries, 1 client and 64 concurrent;
//! - bulk ingest in Sets of 1,000 entries (entries/s);
//! - the data directory of one node after the ingest and a snapshot, against the raw size of
//!   the vectors;
//! - restart of a node holding everything, from spawn to its first answered read;
//! - then a second table: a 3-node cluster with TLS (certificates from `ahnlich-raft cert`)
//!   and client auth against a plain-text one, both running, measured in alternating rounds
//!   (sequential and 64-client Sets, linearizable GetSimN), medians and their ratio.
//!
//! - then a third: the writer's latency on a 3-node cluster while 64 clients scan 100k × 128-d
//!   linearly on the leader, against the same writer on the idle cluster, and whether any
//!   node's term moved (an election) meanwhile.
//!
//! - then the upstream load profile (`AHNLICH_BENCH_ONLY=profile`): Sets of one 128-d entry
//!   with 3 metadata fields from 1, 8 and 64 connections, and bulk Sets of 1,000 from 1 and 4, on
//!   an in-memory reference (this project's engine and DB service with no Raft and no log,
//!   `benches/reference.rs`), one durable node and a 3-node cluster, in interleaved rounds
//!   (each round in an order rotated by one, so no system always runs right after another);
//!   medians and the ratios durable/reference and 3 nodes/1 node. After each run the bench
//!   waits until the system's nodes are quiet, so the work a run leaves behind (a snapshot it
//!   made due) counts in its CPU and not in the next system's time. `AHNLICH_BENCH_ROUNDS`
//!   (default 3) and `AHNLICH_BENCH_PROFILE_BULK` (entries per bulk run, default 200,000);
//!   `AHNLICH_BENCH_PROFILE_WORKLOAD` and `AHNLICH_BENCH_PROFILE_SYSTEM` (part of a name) run
//!   only the workloads and systems they name. Each node works on its share of the CPUs, the
//!   load generator taking one share (`AHNLICH_BENCH_WORKER_THREADS` sets the count instead);
//!   the reference on one worker per CPU. A second table splits each system's CPU per
//!   operation between the bench process (the load generator, and the reference's server),
//!   the leader and the followers, with the operations per log entry. A third gives the most
//!   each durable system could do with every CPU busy at that CPU per operation, and what that
//!   allows each ratio.
//!
//! - then a fourth (`AHNLICH_BENCH_ONLY=backup`): `cluster backup` of a node holding
//!   `AHNLICH_BENCH_BACKUP_ENTRIES` (default 1,000,000) × 128-d from its newest snapshot, MB/s,
//!   against copying the same snapshot file on the same disk; and `restore` of that backup to
//!   its first answered read, against restarting the source node to its first answered read;
//!   and a new node joining it, from spawn through the snapshot's transfer and install to its
//!   first answered read (MB/s of the snapshot file, against the copy).
//!
//! Scale with `AHNLICH_BENCH_ENTRIES` (bulk entries, default 1,000,000),
//! `AHNLICH_BENCH_WRITES` (writes per latency run, default 2,000), `AHNLICH_BENCH_SCAN_ENTRIES`
//! (default 100,000) and `AHNLICH_BENCH_SCAN_SECONDS` (per starvation run, default 10);
//! `AHNLICH_BENCH_ONLY=tls` or `=starvation` runs only that table.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahnlich_raft::certs::{self, CertCommand};
use ahnlich_raft::proto::admin::cluster_admin_client::ClusterAdminClient;
use ahnlich_raft::proto::admin::{StatusRequest, TriggerSnapshotRequest};
use ahnlich_raft::proto::ahnlich::db::query as q;
use ahnlich_raft::proto::ahnlich::keyval::{DbStoreEntry, StoreKey, StoreValue};
use ahnlich_raft::proto::ahnlich::metadata::{MetadataValue, metadata_value};
use ahnlich_raft::proto::ahnlich::services::db_service::db_service_client::DbServiceClient;
use ahnlich_raft::server::auth::hash_api_key;
use ahnlich_raft::server::security::files;
use tonic::metadata::{Ascii, MetadataValue as Header};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

const DIM: usize = 128;

/// The server's allocator, for the in-process reference too (a fair baseline).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/server_memory.rs"]
mod server_memory;

#[allow(dead_code)]
#[path = "../tests/suite/support/procs.rs"]
mod procs;

use procs::{Proc, channel, start_three};

#[allow(dead_code)]
#[path = "../tests/suite/support/starvation.rs"]
mod starvation;

mod reference;

/// A node as clients reach it: over TLS with credentials, or in plain text.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    tls: Option<ClientTlsConfig>,
    auth: Option<Header<Ascii>>,
}

impl Target {
    fn plain(addr: SocketAddr) -> Self {
        Self { addr, tls: None, auth: None }
    }

    /// `message` as a request carrying this target's credentials.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        if let Some(auth) = &self.auth {
            r.metadata_mut().insert("authorization", auth.clone());
        }
        r
    }
}

async fn db(target: &Target) -> DbServiceClient<Channel> {
    let ch = match &target.tls {
        None => channel(target.addr).await,
        Some(tls) => Channel::from_shared(format!("https://{}", target.addr))
            .expect("uri")
            .tls_config(tls.clone())
            .expect("tls")
            .connect()
            .await
            .expect("TLS connection"),
    };
    DbServiceClient::new(ch).max_encoding_message_size(64 << 20).max_decoding_message_size(64 << 20)
}

async fn wait_voters(addr: SocketAddr, n: usize) -> u64 {
    wait_voters_on(channel(addr).await, addr, n).await
}

/// The leader of an `n`-voter cluster, once the node on `ch` (at `addr`) reports one.
async fn wait_voters_on(ch: Channel, addr: SocketAddr, n: usize) -> u64 {
    let mut admin = ClusterAdminClient::new(ch);
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
    let value = BTreeMap::from([
        ("author".to_string(), text(format!("a{}", i % 97))),
        ("lang".to_string(), text(["en", "fr", "de"][i as usize % 3].to_string())),
        ("id".to_string(), text(i.to_string())),
    ]);
    DbStoreEntry { key: Some(StoreKey { key: vector(i) }), value: Some(StoreValue { value }) }
}

async fn create(target: &Target, store: &str) {
    db(target)
        .await
        .create_store(target.request(q::CreateStore {
            store: store.into(),
            dimension: DIM as u32,
            create_predicates: vec!["author".into()],
            ..Default::default()
        }))
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
async fn drive<F, Fut>(target: &Target, clients: usize, total: u64, op: F) -> Run
where
    F: Fn(DbServiceClient<Channel>, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    // Connections (TLS handshakes included) are made before the clock starts.
    let mut connected = Vec::with_capacity(clients);
    for _ in 0..clients {
        connected.push(db(target).await);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (c, client) in connected.into_iter().enumerate() {
        let c = c as u64;
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

async fn writes(target: &Target, store: &'static str, clients: usize, total: u64, offset: u64) -> Run {
    let t = target.clone();
    drive(target, clients, total, move |mut c, i| {
        let set = t.request(q::Set { store: store.into(), inputs: vec![entry(offset + i)], ..Default::default() });
        async move {
            c.set(set).await.expect("set");
        }
    })
    .await
}

async fn searches(target: &Target, store: &'static str, clients: usize, total: u64) -> Run {
    let t = target.clone();
    drive(target, clients, total, move |mut c, i| {
        let query = t.request(q::GetSimN {
            store: store.into(),
            search_input: Some(StoreKey { key: vector(i + 7_000_000) }),
            closest_n: 10,
            algorithm: 2, // cosine similarity
            ..Default::default()
        });
        async move {
            let r = c.get_sim_n(query).await.expect("get sim n");
            assert_eq!(r.into_inner().entries.len(), 10);
        }
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
    // The in-process reference runs with the servers' memory settings.
    server_memory::as_in_the_server();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let only = std::env::var("AHNLICH_BENCH_ONLY").ok();
    let wanted = |table: &str| only.as_deref().is_none_or(|o| o == table);
    if wanted("main") {
        runtime.block_on(bench());
    }
    if wanted("tls") {
        runtime.block_on(tls_against_plain_text());
    }
    if wanted("starvation") {
        runtime.block_on(scans_against_a_writer());
    }
    if wanted("backup") {
        runtime.block_on(backup_and_restore());
    }
    if wanted("profile") {
        runtime.block_on(upstream_profile());
    }
}

/// Bulk ingest: `entries` entries (from `offset` on) in Sets of 1,000 from `clients` clients.
async fn ingest(target: &Target, store: &'static str, clients: usize, entries: u64, offset: u64) -> Run {
    let t = target.clone();
    drive(target, clients, entries.div_ceil(1000), move |mut c, b| {
        let inputs = (b * 1000..((b + 1) * 1000).min(entries)).map(|i| entry(offset + i)).collect();
        let set = t.request(q::Set { store: store.into(), inputs, ..Default::default() });
        async move {
            c.set(set).await.expect("bulk set");
        }
    })
    .await
}

/// The median of `xs`; 0 when there are none (a workload or system left out of the run).
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(0.0)
}

/// Worker threads for each node of a profiled system of `nodes` nodes:
/// `AHNLICH_BENCH_WORKER_THREADS`, or each node's share of the CPUs with the load generator
/// taking one share (`local_cluster::worker_share`), as an operator would set nodes that share
/// a machine. The reference keeps one per CPU, its fastest here.
fn profile_workers(nodes: usize) -> u64 {
    let share = ahnlich_raft::local_cluster::worker_share(nodes + 1) as u64;
    env_u64("AHNLICH_BENCH_WORKER_THREADS", share)
}

/// Upstream Ahnlich's load profile (128-d entries with three metadata fields into a store with
/// one predicate index; Sets of one entry from 1, 8 and 64 connections; bulk Sets of 1,000 from 1
/// and 4) on three systems up at once: the in-memory reference (`reference.rs`: the engine and
/// the DB service, no Raft, no log), one durable node, and a 3-node cluster (at its leader).
/// Each workload runs on each system in turn, `AHNLICH_BENCH_ROUNDS` rounds (default 3), each
/// round in an order rotated by one; medians, and the ratios the performance targets are
/// stated in.
async fn upstream_profile() {
    let rounds = env_u64("AHNLICH_BENCH_ROUNDS", 3) as usize;
    let writes_n = env_u64("AHNLICH_BENCH_WRITES", 2_000);
    let bulk = env_u64("AHNLICH_BENCH_PROFILE_BULK", 200_000);
    let root = procs::ProcRoot::new();

    let reference_addr = procs::free_addr();
    reference::start(reference_addr);
    let workers = |nodes| profile_workers(nodes).to_string();
    let single = Proc::start(&root.path().join("single"), 1, None, &["--worker-threads", &workers(1)]);
    wait_voters(single.addr, 1).await;
    let three = start_three(&root.path().join("three"), &["--worker-threads", &workers(3)]);
    let leader = wait_voters(three[0].addr, 3).await;
    let leader_addr = three.iter().find(|p| p.id == leader).map(|p| p.addr).expect("leader");
    let systems = [
        ("reference", Target::plain(reference_addr)),
        ("1 node", Target::plain(single.addr)),
        ("3 nodes", Target::plain(leader_addr)),
    ];
    // Each system's processes, leader first (the reference runs inside the bench process).
    let leader_proc = three.iter().find(|p| p.id == leader).expect("leader");
    let mut processes: [Vec<&Proc>; 3] = [vec![], vec![&single], vec![leader_proc]];
    processes[2].extend(three.iter().filter(|p| p.id != leader));
    for (_, t) in &systems {
        for _ in 0..600 {
            if Channel::from_shared(format!("http://{}", t.addr)).expect("uri").connect().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        create(t, "w").await;
        create(t, "bulk").await;
    }

    struct Workload {
        name: &'static str,
        unit: &'static str,
        clients: usize,
        bulk: bool,
    }
    let workloads = [
        Workload { name: "Set 1 entry, 1 client", unit: "writes/s", clients: 1, bulk: false },
        Workload { name: "Set 1 entry, 8 clients", unit: "writes/s", clients: 8, bulk: false },
        Workload { name: "Set 1 entry, 64 clients", unit: "writes/s", clients: 64, bulk: false },
        Workload { name: "bulk Sets of 1,000, 1 client", unit: "entries/s", clients: 1, bulk: true },
        Workload { name: "bulk Sets of 1,000, 4 clients", unit: "entries/s", clients: 4, bulk: true },
    ];
    // rates[workload][system]: one figure per round.
    // `AHNLICH_BENCH_PROFILE_WORKLOAD` and `AHNLICH_BENCH_PROFILE_SYSTEM` (part of a name) run
    // only the workloads and systems they name (to profile one); the others print as zero.
    let named = |var: &str, name: &str| std::env::var(var).map_or(true, |part| name.contains(part.as_str()));
    let mut rates = vec![vec![Vec::new(); systems.len()]; workloads.len()];
    // splits[workload][system]: one CPU split per round.
    let mut splits = vec![vec![Vec::new(); systems.len()]; workloads.len()];
    for round in 0..rounds as u64 {
        for (w, load) in workloads.iter().enumerate().filter(|(_, l)| named("AHNLICH_BENCH_PROFILE_WORKLOAD", l.name)) {
            // Each round starts with another system: the one that runs right after another
            // was measured ~10-15% faster here (the previous one's background work fades
            // meanwhile), so every system takes every place in turn.
            for k in 0..systems.len() {
                let sys = (k + round as usize) % systems.len();
                if !named("AHNLICH_BENCH_PROFILE_SYSTEM", systems[sys].0) {
                    continue;
                }
                let target = &systems[sys].1;
                let offset = ((round * 8 + w as u64) << 36) + ((sys as u64) << 34);
                let before = CpuSnapshot::take(&processes[sys]).await;
                let (rate, ops) = if load.bulk {
                    (ingest(target, "bulk", load.clients, bulk, offset).await.ops_per_sec * 1000.0, bulk)
                } else {
                    let total = if load.clients == 1 { writes_n } else { writes_n * 4 };
                    (writes(target, "w", load.clients, total, offset).await.ops_per_sec, total)
                };
                rates[w][sys].push(rate);
                settle(&processes[sys]).await;
                splits[w][sys].push(CpuSnapshot::take(&processes[sys]).await.split_since(&before, ops));
            }
        }
    }

    println!();
    println!(
        "upstream load profile, medians of {rounds} interleaved rounds (128-d, 3 metadata fields, 1 predicate index)"
    );
    println!(
        "| {:<32} | {:>9} | {:>11} | {:>11} | {:>11} | {:>12} | {:>11} |",
        "workload", "unit", "reference", "1 node", "3 nodes", "1 node / ref", "3 / 1 node"
    );
    println!("|{:-<34}|{:->11}|{:->13}|{:->13}|{:->13}|{:->14}|{:->13}|", "", "", "", "", "", "", "");
    for (w, load) in workloads.iter().enumerate() {
        let m: Vec<f64> = rates[w].iter().map(|r| median(r.clone())).collect();
        println!(
            "| {:<32} | {:>9} | {:>11.0} | {:>11.0} | {:>11.0} | {:>11.2}x | {:>10.2}x |",
            load.name,
            load.unit,
            m[0],
            m[1],
            m[2],
            m[1] / m[0],
            m[2] / m[1]
        );
    }
    println!();
    println!(
        "CPU per operation, µs (user + system, medians of {rounds} rounds; bench = load generator, and the reference's server)"
    );
    println!(
        "| {:<32} | {:<9} | {:>7} | {:>7} | {:>9} | {:>7} | {:>13} |",
        "workload", "system", "bench", "leader", "followers", "total", "ops per entry"
    );
    println!("|{:-<34}|{:-<11}|{:->9}|{:->9}|{:->11}|{:->9}|{:->15}|", "", "", "", "", "", "", "");
    for (w, load) in workloads.iter().enumerate() {
        for (sys, (name, _)) in systems.iter().enumerate() {
            let runs = &splits[w][sys];
            if runs.is_empty() {
                continue;
            }
            let m = |f: fn(&CpuSplit) -> f64| median(runs.iter().map(f).collect());
            let per_entry = m(|c| c.ops_per_entry);
            println!(
                "| {:<32} | {:<9} | {:>7.1} | {:>7.1} | {:>9.1} | {:>7.1} | {:>13} |",
                load.name,
                name,
                m(|c| c.bench_us),
                m(|c| c.leader_us),
                m(|c| c.followers_us),
                m(CpuSplit::total_us),
                if per_entry > 0.0 { format!("{per_entry:.1}") } else { "-".into() }
            );
        }
    }
    print_ceilings(&workloads.map(|l| l.name), &rates, &splits);
    drop((single, three));
}

/// Prints, for each workload, the most each durable system could do if it kept every CPU busy
/// at the CPU per operation it was measured at (load generator included), and the ratio
/// targets' ceilings that follow: a system's ceiling over the rate its baseline reached.
/// Batches grow with load, so a system that left CPU idle could do a little better than this.
fn print_ceilings(names: &[&str], rates: &[Vec<Vec<f64>>], splits: &[Vec<Vec<CpuSplit>>]) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    println!();
    println!("At most, on {cpus} CPUs at the CPU per operation above (operations per second)");
    println!(
        "| {:<32} | {:>12} | {:>12} | {:>16} | {:>16} |",
        "workload", "1 node", "3 nodes", "1 node / ref", "3 / 1 node"
    );
    println!("|{:-<34}|{:->14}|{:->14}|{:->18}|{:->18}|", "", "", "", "", "");
    for (w, name) in names.iter().enumerate() {
        let rate = |sys: usize| median(rates[w][sys].clone());
        let at_most = |sys: usize| {
            let total = median(splits[w][sys].iter().map(CpuSplit::total_us).collect());
            if total > 0.0 { cpus * 1e6 / total } else { 0.0 }
        };
        let (one_node, three_nodes) = (at_most(1), at_most(2));
        if one_node == 0.0 && three_nodes == 0.0 {
            continue;
        }
        // A ratio needs both systems measured in this run.
        let ratio = |ceiling: f64, baseline: f64| {
            if ceiling > 0.0 && baseline > 0.0 { format!("{:.2}x", ceiling / baseline) } else { "-".into() }
        };
        println!(
            "| {:<32} | {:>12.0} | {:>12.0} | {:>16} | {:>16} |",
            name,
            one_node,
            three_nodes,
            ratio(one_node, rate(0)),
            ratio(three_nodes, rate(1))
        );
    }
}

/// The CPU time (user + system, all threads) the process `pid` has used so far, from
/// `/proc/<pid>/stat`, at the kernel's fixed 100 ticks per second; zero if it cannot be read.
fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name (in parentheses, and free to hold spaces) come the fields from
    // the third on; utime and stime are the 14th and 15th.
    let fields = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = fields.split_whitespace().skip(11).take(2).filter_map(|f| f.parse::<u64>().ok()).sum();
    Duration::from_millis(ticks * 10)
}

/// Waits (up to a minute) until `nodes` are quiet, each using at most 10 ms of CPU in 250 ms
/// (the clock's tick is 10 ms). Work a run left behind (a snapshot it made due, a purge) is
/// then counted in that run's CPU, and does not run during the next system's run.
async fn settle(nodes: &[&Proc]) {
    let used = || nodes.iter().map(|p| cpu_time(&p.pid().to_string())).sum::<Duration>();
    let quiet = Duration::from_millis(10) * nodes.len() as u32;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut before = used();
    while !nodes.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = used();
        if now.saturating_sub(before) <= quiet {
            return;
        }
        before = now;
    }
}

/// The CPU used so far by the bench process and by a system's nodes (leader first), and the
/// leader's last log index.
struct CpuSnapshot {
    bench: Duration,
    nodes: Vec<Duration>,
    last_index: Option<u64>,
}

/// A run's CPU per operation, µs, and its operations per log entry (0 without a log).
#[derive(Clone)]
struct CpuSplit {
    bench_us: f64,
    leader_us: f64,
    followers_us: f64,
    ops_per_entry: f64,
}

impl CpuSplit {
    /// The CPU per operation of the whole run: load generator, leader and followers.
    fn total_us(&self) -> f64 {
        self.bench_us + self.leader_us + self.followers_us
    }
}

impl CpuSnapshot {
    async fn take(nodes: &[&Proc]) -> Self {
        let last_index = match nodes.first() {
            Some(leader) => leader.status().await.and_then(|s| s.last_log_index),
            None => None,
        };
        Self {
            bench: cpu_time("self"),
            nodes: nodes.iter().map(|p| cpu_time(&p.pid().to_string())).collect(),
            last_index,
        }
    }

    fn split_since(&self, before: &Self, ops: u64) -> CpuSplit {
        let per_op = |d: Duration| d.as_secs_f64() * 1e6 / ops.max(1) as f64;
        let used: Vec<Duration> = self.nodes.iter().zip(&before.nodes).map(|(a, b)| a.saturating_sub(*b)).collect();
        let entries = match (self.last_index, before.last_index) {
            (Some(a), Some(b)) if a > b => (a - b) as f64,
            _ => 0.0,
        };
        CpuSplit {
            bench_us: per_op(self.bench.saturating_sub(before.bench)),
            leader_us: used.first().map_or(0.0, |d| per_op(*d)),
            followers_us: used.iter().skip(1).fold(0.0, |sum, d| sum + per_op(*d)),
            ops_per_entry: if entries > 0.0 { ops as f64 / entries } else { 0.0 },
        }
    }
}

/// Spawn-to-first-read: polls the node at `addr` until a local GetKey of `key` in `store` answers.
async fn first_read(addr: SocketAddr, store: &str, key: &StoreKey, started: Instant) -> Duration {
    loop {
        if let Ok(c) = Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await {
            let mut r =
                tonic::Request::new(q::GetKey { store: store.into(), keys: vec![key.clone()], ..Default::default() });
            r.metadata_mut().insert("x-ahnlich-read-consistency", "local".parse().expect("ascii"));
            if DbServiceClient::new(c).get_key(r).await.is_ok_and(|g| g.into_inner().entries.len() == 1) {
                return started.elapsed();
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(started.elapsed() < Duration::from_secs(300), "{addr} did not answer");
    }
}

fn mb_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / 1e6 / took.as_secs_f64()
}

/// Backup and restore of a node holding many entries, each against its baseline in this run.
async fn backup_and_restore() {
    let n = env_u64("AHNLICH_BENCH_BACKUP_ENTRIES", 1_000_000);
    let root = procs::ProcRoot::new();
    let mut source = Proc::start(root.path(), 1, None, &[]);
    wait_voters(source.addr, 1).await;
    let target = Target::plain(source.addr);
    create(&target, "b").await;
    let clients = 4;
    let batches = n.div_ceil(1000);
    let tasks: Vec<_> = (0..clients)
        .map(|k| {
            let target = target.clone();
            tokio::spawn(async move {
                let mut c = db(&target).await;
                for b in (k..batches).step_by(clients as usize) {
                    let inputs = (b * 1000..((b + 1) * 1000).min(n)).map(entry).collect();
                    c.set(q::Set { store: "b".into(), inputs, ..Default::default() }).await.expect("set");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("ingest");
    }
    let mut admin = ClusterAdminClient::new(channel(source.addr).await);
    admin.trigger_snapshot(TriggerSnapshotRequest {}).await.expect("snapshot");
    let snapshots = source.dir.join("snapshots");
    let newest = std::fs::read_dir(&snapshots)
        .expect("snapshots")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "snap"))
        .max()
        .expect("a snapshot");
    let bytes = std::fs::metadata(&newest).expect("size").len();

    let out = tempfile::TempDir::new().expect("tempdir");
    let copy = out.path().join("copy.snap");
    let started = Instant::now();
    std::fs::copy(&newest, &copy).expect("copy");
    std::fs::File::open(&copy).and_then(|f| f.sync_all()).expect("sync the copy");
    let copied = started.elapsed();

    let file = out.path().join("b.backup");
    let started = Instant::now();
    let backup = std::process::Command::new(env!("CARGO_BIN_EXE_ahnlich-raft"))
        .args(["cluster", "--addr", &source.addr.to_string(), "backup", "--max-age", "3600", "--out"])
        .arg(&file)
        .output()
        .expect("backup");
    let backed_up = started.elapsed();
    assert!(backup.status.success(), "{}", String::from_utf8_lossy(&backup.stderr));

    let probe = StoreKey { key: vector(n - 1) };
    source.terminate();
    let started = Instant::now();
    source.restart();
    let restarted = first_read(source.addr, "b", &probe, started).await;

    // A new node joins: the leader's log behind its snapshot is purged, so it gets the snapshot,
    // streamed, checked and installed; timed from its spawn to its first local read.
    let started = Instant::now();
    let joiner = Proc::start(root.path(), 2, Some(source.addr), &[]);
    let installed = first_read(joiner.addr, "b", &probe, started).await;
    drop(joiner);
    drop(source);

    let data = out.path().join("restored");
    let at = procs::free_addr();
    let started = Instant::now();
    let restore = std::process::Command::new(env!("CARGO_BIN_EXE_ahnlich-raft"))
        .args(["restore", "--advertise", &at.to_string(), "--from"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("restore");
    assert!(restore.status.success(), "{}", String::from_utf8_lossy(&restore.stderr));
    let restored_files = started.elapsed();
    let mut serving = std::process::Command::new(env!("CARGO_BIN_EXE_ahnlich-raft"))
        .args(["serve", "--listen", &at.to_string(), "--data-dir"])
        .arg(&data)
        .env("AHNLICH_RAFT_LOG", "error")
        .spawn()
        .expect("serve the restored directory");
    let restored = first_read(at, "b", &probe, started).await;
    let _ = serving.kill();
    let _ = serving.wait();

    println!();
    println!("backup and restore of {n} x {DIM}-d ({:.1} MB snapshot file)", bytes as f64 / 1e6);
    println!("| what | time | MB/s | vs baseline |");
    println!("|---|---:|---:|---:|");
    println!(
        "| copy of the snapshot file on the same disk, synced (baseline) | {copied:.2?} | {:.0} | 1.00 |",
        mb_per_s(bytes, copied)
    );
    println!(
        "| cluster backup over loopback, checked and synced | {backed_up:.2?} | {:.0} | {:.2} |",
        mb_per_s(bytes, backed_up),
        mb_per_s(bytes, backed_up) / mb_per_s(bytes, copied)
    );
    println!(
        "| new node joins: snapshot sent, installed, first read | {installed:.2?} | {:.0} | {:.2} |",
        mb_per_s(bytes, installed),
        mb_per_s(bytes, installed) / mb_per_s(bytes, copied)
    );
    println!("| restart of the source node to its first read (baseline) | {restarted:.2?} | | 1.00 |");
    println!(
        "| restore (files: {restored_files:.2?}) and serve to its first read | {restored:.2?} | {:.0} | {:.2} |",
        mb_per_s(bytes, restored),
        restored.as_secs_f64() / restarted.as_secs_f64()
    );
}

/// The writer's latency while 64 clients scan linearly on the leader, against the idle
/// cluster in the same run, and the terms before and after (any change is an election).
async fn scans_against_a_writer() {
    const READERS: usize = 64;
    let entries = env_u64("AHNLICH_BENCH_SCAN_ENTRIES", 100_000);
    let length = Duration::from_secs(env_u64("AHNLICH_BENCH_SCAN_SECONDS", 10));
    let root = tempfile::TempDir::new().expect("tempdir");
    let nodes = start_three(root.path(), &[]);
    let leader = wait_voters(nodes[0].addr, 3).await;
    let leader = nodes.iter().find(|p| p.id == leader).map(|p| p.addr).expect("leader");
    starvation::load(leader, entries, DIM).await;
    let terms = || async {
        let mut all = Vec::new();
        for p in &nodes {
            all.push(starvation::term_and_leader(p.addr).await);
        }
        all
    };
    let before = terms().await;
    let idle = starvation::run(leader, 0, length, DIM).await;
    let loaded = starvation::run(leader, READERS, length, DIM).await;
    let after = terms().await;
    println!();
    println!(
        "| {:<60} | {:>9} | {:>9} | {:>9} |",
        "writer, 3 nodes, 1 client, Set of one 128-d entry", "writes", "p50 ms", "p99 ms"
    );
    println!("|{:-<62}|{:->11}|{:->11}|{:->11}|", "", "", "", "");
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (name, r) in [("idle cluster (baseline)", &idle), ("64 clients scanning linearly on the leader", &loaded)] {
        println!(
            "| {name:<60} | {:>9} | {:>9.2} | {:>9.2} |",
            r.write_latencies.len(),
            ms(r.write_percentile(50.0)),
            ms(r.write_percentile(99.0))
        );
    }
    println!(
        "loaded/idle: p50 {:.2}x, p99 {:.2}x; {} scans of {entries} × {DIM} ({:.0}/s, {} refused); elections: {}",
        ms(loaded.write_percentile(50.0)) / ms(idle.write_percentile(50.0)),
        ms(loaded.write_percentile(99.0)) / ms(idle.write_percentile(99.0)),
        loaded.scans,
        loaded.scans as f64 / length.as_secs_f64(),
        loaded.scan_errors,
        if before == after { "none".to_string() } else { format!("(term, leader) per node {before:?} -> {after:?}") }
    );
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
        let single = Target::plain(single.addr);
        create(&single, "w").await;
        row("1 node: Set 1 entry, 1 client", &writes(&single, "w", 1, writes_n, 0).await);
        row("1 node: Set 1 entry, 64 clients", &writes(&single, "w", 64, writes_n * 4, 1 << 32).await);
    }

    let [n1, n2, mut n3] = start_three(root.path(), &[]);
    let leader = wait_voters(n1.addr, 3).await;
    let at_leader = Target::plain([&n1, &n2, &n3].iter().find(|p| p.id == leader).map(|p| p.addr).expect("leader"));
    let at_follower = Target::plain([&n1, &n2, &n3].iter().find(|p| p.id != leader).map(|p| p.addr).expect("follower"));
    create(&at_leader, "w").await;
    row("3 nodes: Set 1 entry, 1 client (leader)", &writes(&at_leader, "w", 1, writes_n, 0).await);
    row("3 nodes: Set 1 entry, 64 clients (leader)", &writes(&at_leader, "w", 64, writes_n * 4, 1 << 32).await);
    row("3 nodes: Set 1 entry, 1 client (via follower)", &writes(&at_follower, "w", 1, writes_n, 2 << 32).await);

    create(&at_leader, "search").await;
    let mut c = db(&at_leader).await;
    for chunk in 0..10u64 {
        let inputs = (chunk * 1000..(chunk + 1) * 1000).map(entry).collect();
        c.set(q::Set { store: "search".into(), inputs, ..Default::default() }).await.expect("load");
    }
    row("3 nodes: GetSimN 10k linearizable, 1 client (leader)", &searches(&at_leader, "search", 1, 500).await);
    row("3 nodes: GetSimN 10k linearizable, 64 clients (leader)", &searches(&at_leader, "search", 64, 2000).await);
    row("3 nodes: GetSimN 10k linearizable, 1 client (follower)", &searches(&at_follower, "search", 1, 500).await);

    create(&at_leader, "bulk").await;
    let batches = bulk.div_ceil(1000);
    // Four clients keep the pipeline full without queueing much.
    let ingest = drive(&at_leader, 4, batches, move |mut c, b| async move {
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

/// A 3-node cluster with TLS and auth and a plain-text one, both up; the same work on each in
/// alternating rounds; medians per cluster and their ratio.
async fn tls_against_plain_text() {
    const ROUNDS: usize = 5;
    let writes_n = env_u64("AHNLICH_BENCH_WRITES", 2_000);
    let root = tempfile::TempDir::new().expect("tempdir");
    let certs = root.path().join("certs");
    for command in [
        CertCommand::Ca,
        CertCommand::Node { hosts: vec!["127.0.0.1".into()] },
        CertCommand::Client { name: "bench".into() },
    ] {
        certs::run(&certs, &command).expect("certificates");
    }
    let users = root.path().join("auth.toml");
    std::fs::write(&users, format!("[users]\nbench = \"{}\"\n", hash_api_key("bench-key-0123456789"))).expect("users");
    let secure_flags = [
        "--certs-dir",
        certs.to_str().expect("utf-8"),
        "--enable-auth",
        "--auth-config",
        users.to_str().expect("utf-8"),
    ];
    let plain_nodes = start_three(&root.path().join("plain"), &[]);
    let secure_nodes = start_three(&root.path().join("secure"), &secure_flags);
    let ca = Certificate::from_pem(std::fs::read(certs.join(files::CA_CERT)).expect("ca"));
    let operator = ClientTlsConfig::new().ca_certificate(ca.clone()).identity(tonic::transport::Identity::from_pem(
        std::fs::read(certs.join(files::CLIENT_CERT)).expect("client cert"),
        std::fs::read(certs.join(files::CLIENT_KEY)).expect("client key"),
    ));
    let plain_leader = wait_voters(plain_nodes[0].addr, 3).await;
    let secure_admin = Channel::from_shared(format!("https://{}", secure_nodes[0].addr))
        .expect("uri")
        .tls_config(operator)
        .expect("tls");
    let secure_admin = loop {
        match secure_admin.connect().await {
            Ok(ch) => break ch,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let secure_leader = wait_voters_on(secure_admin, secure_nodes[0].addr, 3).await;
    let leader_of = |nodes: &[Proc; 3], id: u64| nodes.iter().find(|p| p.id == id).map(|p| p.addr).expect("leader");
    let plain = Target::plain(leader_of(&plain_nodes, plain_leader));
    let secure = Target {
        addr: leader_of(&secure_nodes, secure_leader),
        tls: Some(ClientTlsConfig::new().ca_certificate(ca)),
        auth: Some("Bearer bench:bench-key-0123456789".parse().expect("ascii")),
    };
    for target in [&plain, &secure] {
        create(target, "w").await;
        create(target, "search").await;
        let mut c = db(target).await;
        for chunk in 0..10u64 {
            let inputs = (chunk * 1000..(chunk + 1) * 1000).map(entry).collect();
            c.set(target.request(q::Set { store: "search".into(), inputs, ..Default::default() })).await.expect("load");
        }
    }

    type Work = fn(&Target, u64, u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = Run> + Send + '_>>;
    let work: [(&str, Work); 3] = [
        ("Set 1 entry, 1 client", |t, n, round| Box::pin(writes(t, "w", 1, n, round << 40))),
        ("Set 1 entry, 64 clients", |t, n, round| Box::pin(writes(t, "w", 64, n * 4, (round << 40) | (1 << 32)))),
        ("GetSimN 10k linearizable, 64 clients", |t, _, _| Box::pin(searches(t, "search", 64, 2000))),
    ];
    println!();
    println!(
        "3 nodes, TLS + auth against plain text (leader; medians of {ROUNDS} alternating rounds; ratio: median of \
         the rounds' TLS / plain):"
    );
    println!(
        "| {:<38} | {:>12} | {:>12} | {:>6} | {:>12} | {:>12} |",
        "operation", "plain ops/s", "TLS ops/s", "ratio", "plain p99 ms", "TLS p99 ms"
    );
    println!("|{:-<40}|{:->14}|{:->14}|{:->8}|{:->14}|{:->14}|", "", "", "", "", "", "");
    for (name, run) in work {
        let (mut plain_runs, mut secure_runs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS as u64 {
            // Distinct keys every round and cluster, so every Set inserts; the cluster that goes
            // first alternates, so neither always runs on a machine the other just warmed.
            let (p, t) = if round % 2 == 0 {
                let p = run(&plain, writes_n, 2 * round).await;
                (p, run(&secure, writes_n, 2 * round + 1).await)
            } else {
                let t = run(&secure, writes_n, 2 * round + 1).await;
                (run(&plain, writes_n, 2 * round).await, t)
            };
            ratios.push(t.ops_per_sec / p.ops_per_sec);
            plain_runs.push(p);
            secure_runs.push(t);
        }
        let median = |runs: &mut Vec<Run>| {
            runs.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
            let m = &runs[runs.len() / 2];
            (m.ops_per_sec, m.p99.as_secs_f64() * 1e3)
        };
        let (p, p99p) = median(&mut plain_runs);
        let (t, p99t) = median(&mut secure_runs);
        ratios.sort_by(f64::total_cmp);
        let ratio = ratios[ratios.len() / 2];
        println!("| {name:<38} | {p:>12.0} | {t:>12.0} | {ratio:>6.2} | {p99p:>12.2} | {p99t:>12.2} |");
    }
    drop((plain_nodes, secure_nodes));
}
