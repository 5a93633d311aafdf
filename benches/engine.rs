//! Engine throughput and latency: Set (batches of 1 and 1,000 entries of 128-d with three
//! metadata fields), GetSimN (linear cosine and HNSW, 10k and 100k × 128-d, k = 10), and a
//! predicate query with and without an index (100k entries), and the first write after a
//! snapshot capture against a write with none held.
//!
//! Run: `cargo bench --bench engine`. Single-threaded: each figure is per core. Set times the
//! apply alone (its entries are made before the clock starts, and dropped after it stops), into
//! a store kept between 1M and 2M entries (`AHNLICH_BENCH_SET_STORE` sets the lower bound).

use std::hint::black_box;
use std::time::{Duration, Instant};

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

/// Sets of `batch` entries applied into a store that always holds between `fill` and twice
/// `fill` entries (`AHNLICH_BENCH_SET_STORE`, default 1M), so that each figure is for a stated
/// store size and not for however far the store grew while criterion ran (a Set's cost rises
/// with the store: its key table, indexes and fresh memory). The Sets of a sample are made
/// before the clock starts and dropped after it stops, so this times the engine's apply alone.
struct SetBench {
    engine: Engine,
    store: StoreRef,
    rng: SimRng,
    next: u64,
    batch: u64,
    fill: u64,
    held: u64,
}

impl SetBench {
    fn new(batch: u64) -> Self {
        let fill = std::env::var("AHNLICH_BENCH_SET_STORE").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
        let mut bench = Self {
            engine: Engine::default(),
            store: StoreRef::public("s"),
            rng: SimRng::new(batch),
            next: 0,
            batch,
            fill,
            held: 0,
        };
        bench.refill();
        bench
    }

    /// Starts over from a store of `fill` entries. The old store's memory goes back to the
    /// system first, so that the timed Sets grow the new store into fresh memory, as a store
    /// grows in the server, rather than into the old store's freed pages.
    fn refill(&mut self) {
        self.engine = Engine::default();
        return_freed_memory();
        let (engine, store) = store_with("s", self.fill as usize, &["author"], vec![]);
        self.engine = engine;
        self.store = store;
        self.next = self.fill;
        self.held = self.fill;
        return_freed_memory();
    }

    fn next_set(&mut self) -> Command {
        let entries = (self.next..self.next + self.batch)
            .map(|j| Entry { key: vector(&mut self.rng), value: metadata(j) })
            .collect();
        self.next += self.batch;
        Command::Set { store: self.store.clone(), entries }
    }

    /// The time `iters` Sets take to apply, in runs that keep the store within its window.
    fn time(&mut self, iters: u64) -> Duration {
        let per_run = (self.fill / self.batch).max(1);
        let mut left = iters;
        let mut elapsed = Duration::ZERO;
        while left > 0 {
            let n = left.min(per_run);
            if self.held + n * self.batch > 2 * self.fill {
                self.refill();
            }
            let sets: Vec<Command> = (0..n).map(|_| self.next_set()).collect();
            let start = Instant::now();
            for set in &sets {
                self.engine.apply(set).expect("set");
            }
            elapsed += start.elapsed();
            drop(sets);
            self.held += n * self.batch;
            left -= n;
        }
        elapsed
    }
}

/// Hands the memory the allocator holds free back to the system.
fn return_freed_memory() {
    unsafe extern "C" {
        /// mimalloc's own collection (part of the library this bench links as its allocator).
        fn mi_collect(force: bool);
    }
    // SAFETY: `mi_collect` takes a plain flag and only releases memory that is free; it is safe
    // to call at any time from any thread.
    unsafe { mi_collect(true) }
}

fn set_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("set");
    for batch in [1u64, 1000] {
        // Filled on first use, so that a filter naming other benches skips the fill.
        let mut bench = None;
        group.throughput(Throughput::Elements(batch));
        group.bench_function(BenchmarkId::from_parameter(batch), |b| {
            b.iter_custom(|iters| bench.get_or_insert_with(|| SetBench::new(batch)).time(iters))
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
