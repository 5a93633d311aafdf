//! Engine throughput and latency: Set (batches of 1 and 1,000 entries of 128-d with three
//! metadata fields), GetSimN (linear cosine and HNSW, 10k and 100k × 128-d, k = 10), and a
//! predicate query with and without an index (100k entries), and the first write after a
//! snapshot capture against a write with none held.
//!
//! Run: `cargo bench --bench engine`. Single-threaded: each figure is per core. Set times the
//! apply alone (its entries are made before the clock starts, and dropped after it stops).

use std::hint::black_box;

use ahnlich_raft::engine::{
    Algorithm, Command, Condition, Engine, Entry, HnswConfig, Metadata, MetadataValue, Metric, NonLinearIndex,
    Predicate, Query, StoreRef,
};
use ahnlich_raft::wal::sim_fs::SimRng;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group};

const DIM: usize = 128;

/// The server's allocator (`src/main.rs`), so the engine is measured as it runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/server_memory.rs"]
mod server_memory;

fn vector(rng: &mut SimRng) -> Vec<f32> {
    (0..DIM).map(|_| (rng.below(1 << 20) as f32 / (1 << 19) as f32) - 1.0).collect()
}

fn metadata(i: u64) -> Metadata {
    Metadata::from([
        ("author".to_string(), MetadataValue::RawString(format!("author-{}", i % 100))),
        ("lang".to_string(), MetadataValue::RawString(["en", "fr", "yo"][(i % 3) as usize].to_string())),
        ("id".to_string(), MetadataValue::RawString(i.to_string())),
    ])
}

fn store_with(name: &str, n: usize, predicates: &[&str], non_linear: Vec<NonLinearIndex>) -> (Engine, StoreRef) {
    let e = Engine::default();
    let store = StoreRef::public(name);
    e.apply(&Command::CreateStore {
        store: store.clone(),
        dimension: DIM,
        predicates: predicates.iter().map(|p| p.to_string()).collect(),
        non_linear,
        error_if_exists: true,
    })
    .expect("create");
    let mut rng = SimRng::new(7);
    let mut i = 0;
    while i < n as u64 {
        let entries =
            (i..(i + 1000).min(n as u64)).map(|j| Entry { key: vector(&mut rng), value: metadata(j) }).collect();
        e.apply(&Command::Set { store: store.clone(), entries }).expect("set");
        i += 1000;
    }
    (e, store)
}

fn set_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("set");
    for batch in [1u64, 1000] {
        let (e, store) = store_with("s", 0, &["author"], vec![]);
        let mut rng = SimRng::new(batch);
        let mut next = 0u64;
        group.throughput(Throughput::Elements(batch));
        // The entries are made outside the timed part (and dropped after it): this measures the
        // engine's apply, not the making of inputs.
        group.bench_function(BenchmarkId::from_parameter(batch), |b| {
            b.iter_batched(
                || {
                    let entries =
                        (next..next + batch).map(|j| Entry { key: vector(&mut rng), value: metadata(j) }).collect();
                    next += batch;
                    Command::Set { store: store.clone(), entries }
                },
                // The Set is handed back, so its entries are freed after the clock stops.
                |set| (e.apply(&set).expect("set"), set),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn get_sim_n(c: &mut Criterion) {
    let mut group = c.benchmark_group("get_sim_n");
    group.sample_size(30);
    for n in [10_000usize, 100_000] {
        let hnsw = HnswConfig { m: 16, ef_construction: 100, ef_search: 64, metric: Metric::Euclidean };
        let (e, store) = store_with("v", n, &[], vec![NonLinearIndex::Hnsw(hnsw)]);
        let mut rng = SimRng::new(99);
        let queries: Vec<Vec<f32>> = (0..64).map(|_| vector(&mut rng)).collect();
        for (label, algorithm) in
            [("linear_cosine", Algorithm::Linear(Metric::Cosine)), ("hnsw_ef64", Algorithm::Hnsw { ef_search: None })]
        {
            let mut at = 0;
            group.bench_function(BenchmarkId::new(label, n), |b| {
                b.iter(|| {
                    at = (at + 1) % queries.len();
                    let q = Query::GetSimN {
                        store: store.clone(),
                        search: queries[at].clone(),
                        closest_n: 10,
                        algorithm,
                        condition: None,
                    };
                    black_box(e.query(&q).expect("query"))
                })
            });
        }
    }
    group.finish();
}

fn predicate_query(c: &mut Criterion) {
    let mut group = c.benchmark_group("get_pred_100k");
    group.sample_size(30);
    let condition = Condition::Value(Predicate::Equals {
        key: "author".into(),
        value: MetadataValue::RawString("author-42".into()),
    });
    for (label, predicates) in [("indexed", vec!["author"]), ("scan", vec![])] {
        let (e, store) = store_with("p", 100_000, &predicates, vec![]);
        let q = Query::GetPred { store, condition: condition.clone() };
        group.bench_function(label, |b| b.iter(|| black_box(e.query(&q).expect("pred"))));
    }
    group.finish();
}

/// The first Set of one entry after a snapshot capture (which makes the next write to each
/// store copy what it shares with the capture), against the same Set with no capture held.
/// 1M entries with a predicate index (`AHNLICH_BENCH_CAPTURE_ENTRIES`), and 100k with an HNSW
/// index as well (building 1M into HNSW here would take minutes).
fn first_write_after_capture(c: &mut Criterion) {
    let n = std::env::var("AHNLICH_BENCH_CAPTURE_ENTRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let hnsw = HnswConfig { m: 16, ef_construction: 100, ef_search: 64, metric: Metric::Euclidean };
    let mut group = c.benchmark_group("first_write_after_capture");
    group.sample_size(10);
    for (label, n, non_linear) in
        [("predicate", n, vec![]), ("predicate_hnsw", n / 10, vec![NonLinearIndex::Hnsw(hnsw)])]
    {
        let (e, store) = store_with("c", n, &["author"], non_linear);
        let mut rng = SimRng::new(5);
        let mut next = n as u64;
        let mut one_set = || {
            next += 1;
            Command::Set { store: store.clone(), entries: vec![Entry { key: vector(&mut rng), value: metadata(next) }] }
        };
        group.bench_function(BenchmarkId::new(format!("{label}/no_capture"), n), |b| {
            b.iter_batched(&mut one_set, |set| (e.apply(&set).expect("set"), set), BatchSize::PerIteration)
        });
        group.bench_function(BenchmarkId::new(format!("{label}/after_capture"), n), |b| {
            b.iter_batched(
                || (e.capture(), one_set()),
                // The capture and the Set are handed back, so they are dropped after the clock stops.
                |(capture, set)| (e.apply(&set).expect("set"), capture, set),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, set_throughput, get_sim_n, predicate_query, first_write_after_capture);
fn main() {
    server_memory::as_in_the_server();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
