//! HNSW recall against brute force on 10k random 128-d vectors (uniform in [-1, 1]: a hard case,
//! with no clusters to exploit). Measured here: recall@10 rises with `ef_search` from 0.64 (50)
//! to 0.94 (200), 0.96 (256) and 0.997 (800) at M = 16, ef_construction = 100. The data and the
//! graph are deterministic, so the figure is the same on every run.

use ahnlich_raft::engine::{
    Algorithm, Command, Engine, Entry, HnswConfig, Metadata, Metric, NonLinearIndex, Query, Response, StoreRef,
};
use ahnlich_raft::wal::sim_fs::SimRng;

const N: usize = 10_000;
const DIM: usize = 128;
const QUERIES: usize = 100;
const K: usize = 10;

fn vector(rng: &mut SimRng) -> Vec<f32> {
    (0..DIM).map(|_| (rng.below(1 << 20) as f32 / (1 << 19) as f32) - 1.0).collect()
}

fn keys(r: Response) -> Vec<Vec<f32>> {
    match r {
        Response::Similar(v) => v.into_iter().map(|(e, _)| e.key).collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn hnsw_recall_at_10_is_at_least_095() {
    let store = StoreRef::public("v");
    let e = Engine::default();
    let config = HnswConfig { m: 16, ef_construction: 100, ef_search: 256, metric: Metric::Euclidean };
    e.apply(&Command::CreateStore {
        store: store.clone(),
        dimension: DIM,
        predicates: vec![],
        non_linear: vec![NonLinearIndex::Hnsw(config)],
        error_if_exists: true,
    })
    .expect("create");
    let mut rng = SimRng::new(42);
    for _ in 0..N / 1000 {
        let entries = (0..1000).map(|_| Entry { key: vector(&mut rng), value: Metadata::new() }).collect();
        e.apply(&Command::Set { store: store.clone(), entries }).expect("set");
    }
    let mut hits = 0;
    for _ in 0..QUERIES {
        let q = vector(&mut rng);
        let ask = |algorithm| Query::GetSimN {
            store: store.clone(),
            search: q.clone(),
            closest_n: K,
            algorithm,
            condition: None,
        };
        let exact = keys(e.query(&ask(Algorithm::Linear(Metric::Euclidean))).expect("linear"));
        let approx = keys(e.query(&ask(Algorithm::Hnsw { ef_search: None })).expect("hnsw"));
        hits += approx.iter().filter(|k| exact.contains(k)).count();
    }
    let recall = hits as f64 / (QUERIES * K) as f64;
    println!("HNSW recall@{K} over {QUERIES} queries on {N}×{DIM}: {recall:.3}");
    assert!(recall >= 0.95, "recall@{K} = {recall:.3}");
}
