//! Property tests of the engine against plain reference computations.

use std::collections::BTreeMap;

use ahnlich_raft::engine::{
    Algorithm, Command, Condition, Engine, Entry, HnswConfig, Metadata, MetadataValue, Metric, NonLinearIndex,
    Predicate, Query, Response, StoreRef,
};
use ahnlich_raft::wal::sim_fs::SimRng;
use proptest::prelude::*;

fn s(name: &str) -> StoreRef {
    StoreRef::public(name)
}

fn create(e: &Engine, name: &str, dim: usize, preds: &[&str], nl: Vec<NonLinearIndex>) {
    e.apply(&Command::CreateStore {
        store: s(name),
        dimension: dim,
        predicates: preds.iter().map(|p| p.to_string()).collect(),
        non_linear: nl,
        error_if_exists: true,
    })
    .expect("create");
}

fn sim(
    e: &Engine,
    name: &str,
    q: &[f32],
    k: usize,
    algorithm: Algorithm,
    condition: Option<Condition>,
) -> Vec<(Vec<f32>, f32)> {
    let query = Query::GetSimN { store: s(name), search: q.to_vec(), closest_n: k, algorithm, condition };
    match e.query(&query).expect("get sim n") {
        Response::Similar(v) => v.into_iter().map(|(e, score)| (e.key, score)).collect(),
        other => panic!("{other:?}"),
    }
}

fn bits(k: &[f32]) -> Vec<u32> {
    k.iter().map(|x| x.to_bits()).collect()
}

/// Distinct keys (by bits), so that a Set inserts each once.
fn distinct(keys: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
    let mut seen = std::collections::BTreeSet::new();
    keys.into_iter().filter(|k| seen.insert(bits(k))).collect()
}

fn int_vectors(dim: usize, n: usize) -> impl Strategy<Value = Vec<Vec<f32>>> {
    prop::collection::vec(prop::collection::vec((-8i8..=8).prop_map(f32::from), dim), 1..n)
}

/// The dot product in f64, summed from +0.0 as the engine's kernels sum: `Iterator::sum` of
/// floats starts from -0.0, so a key of zeros would score -0.0 and rank below a key whose
/// products cancel to +0.0, a tie the engine breaks by key bits.
fn reference_dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).fold(0.0, |sum, (x, y)| sum + f64::from(*x) * f64::from(*y))
}

/// The case that found the signed zero above: both keys score zero against the query, and the
/// tie goes to the smaller key bits, the zero key.
#[test]
fn a_zero_key_and_a_key_whose_products_cancel_tie_and_rank_by_key_bits() {
    let e = Engine::default();
    create(&e, "a", 2, &[], vec![]);
    let keys = [vec![0.0, 0.0], vec![-4.0, 4.0]];
    let entries = keys.iter().map(|k| Entry { key: k.clone(), value: Metadata::new() }).collect();
    e.apply(&Command::Set { store: s("a"), entries }).expect("set");
    let q = [-5.0, -5.0];
    assert_eq!(reference_dot(&keys[0], &q).to_bits(), 0.0f64.to_bits(), "the reference sums from +0.0");
    let got = sim(&e, "a", &q, 1, Algorithm::Linear(Metric::DotProduct), None);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, keys[0], "a tie at zero goes to the smaller key bits");
    assert_eq!(got[0].1, 0.0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Integer components keep every f32 sum exact, so the reference in f64 must agree exactly
    /// for Euclidean and dot product (ties by key bits), and to rounding for cosine.
    #[test]
    fn linear_sim_n_equals_brute_force(dim in 1usize..6, seed_keys in int_vectors(6, 40), q in prop::collection::vec((-8i8..=8).prop_map(f32::from), 6), k in 1usize..12) {
        let keys = distinct(seed_keys.into_iter().map(|v| v[..dim].to_vec()).collect());
        let q = &q[..dim];
        let e = Engine::default();
        create(&e, "a", dim, &[], vec![]);
        e.apply(&Command::Set { store: s("a"), entries: keys.iter().map(|k| Entry { key: k.clone(), value: Metadata::new() }).collect() }).expect("set");
        let dot = reference_dot;
        for metric in [Metric::Euclidean, Metric::DotProduct, Metric::Cosine] {
            if metric == Metric::Cosine && q.iter().all(|x| *x == 0.0) {
                continue;
            }
            let mut reference: Vec<(f64, &Vec<f32>)> = keys.iter().map(|key| {
                let d: Vec<f32> = key.iter().zip(q).map(|(a, b)| a - b).collect();
                let score = match metric {
                    Metric::Euclidean => dot(&d, &d).sqrt(),
                    Metric::DotProduct => dot(key, q),
                    Metric::Cosine => {
                        let n = dot(key, key).sqrt() * dot(q, q).sqrt();
                        if n == 0.0 { 0.0 } else { dot(key, q) / n }
                    }
                };
                (score, key)
            }).collect();
            reference.sort_by(|a, b| {
                let by = if metric == Metric::Euclidean { a.0.total_cmp(&b.0) } else { b.0.total_cmp(&a.0) };
                by.then_with(|| bits(a.1).cmp(&bits(b.1)))
            });
            reference.truncate(k);
            let got = sim(&e, "a", q, k, Algorithm::Linear(metric), None);
            prop_assert_eq!(got.len(), reference.len());
            for ((gk, gs), (rs, rk)) in got.iter().zip(&reference) {
                prop_assert!((f64::from(*gs) - rs).abs() < 1e-5, "{:?}: score {} vs {}", metric, gs, rs);
                if metric != Metric::Cosine {
                    prop_assert_eq!(gk, *rk, "{:?}", metric);
                }
            }
        }
    }

    /// The k-d tree answers exactly what a linear Euclidean scan answers, through inserts,
    /// deletes (quarantine and rebuilds) and filters.
    #[test]
    fn kdtree_equals_linear_euclidean(seed in any::<u64>()) {
        let mut rng = SimRng::new(seed);
        let dim = 1 + rng.below(8) as usize;
        let e = Engine::default();
        create(&e, "a", dim, &["c"], if rng.coin() { vec![NonLinearIndex::KdTree] } else { vec![] });
        let key = |rng: &mut SimRng| (0..dim).map(|_| (rng.below(2001) as f32 - 1000.0) / 16.0).collect::<Vec<f32>>();
        for round in 0..6 {
            let n = rng.below(150) as usize;
            let entries: Vec<Entry> = (0..n).map(|_| {
                let value: Metadata = BTreeMap::from([("c".to_string(), MetadataValue::RawString(rng.below(3).to_string()))]);
                Entry { key: key(&mut rng), value }
            }).collect();
            e.apply(&Command::Set { store: s("a"), entries: entries.clone() }).expect("set");
            let doomed: Vec<Vec<f32>> = entries.iter().filter(|_| rng.below(3) == 0).map(|x| x.key.clone()).collect();
            e.apply(&Command::DelKey { store: s("a"), keys: doomed }).expect("del");
            if round == 2 {
                e.apply(&Command::CreateNonLinearIndex { store: s("a"), indexes: vec![NonLinearIndex::KdTree] }).expect("index");
            }
            if round >= 2 {
                for _ in 0..5 {
                    let q = key(&mut rng);
                    let k = 1 + rng.below(20) as usize;
                    let c = rng.coin().then(|| Condition::Value(Predicate::Equals { key: "c".into(), value: MetadataValue::RawString(rng.below(3).to_string()) }));
                    let tree = sim(&e, "a", &q, k, Algorithm::KdTree, c.clone());
                    let scan = sim(&e, "a", &q, k, Algorithm::Linear(Metric::Euclidean), c);
                    prop_assert_eq!(tree, scan);
                }
            }
        }
    }

    /// Indexed and scanned predicates give identical sets, for nested conditions.
    #[test]
    fn indexed_and_scanned_predicates_agree(seed in any::<u64>()) {
        let mut rng = SimRng::new(seed);
        let e = Engine::default();
        create(&e, "idx", 1, &["a", "b"], vec![]);
        create(&e, "scan", 1, &[], vec![]);
        let value = |rng: &mut SimRng| MetadataValue::RawString(["x", "y", "z"][rng.below(3) as usize].to_string());
        let entries: Vec<Entry> = (0..60).map(|i| {
            let mut m = Metadata::new();
            for key in ["a", "b"] {
                if rng.below(4) != 0 {
                    m.insert(key.to_string(), value(&mut rng));
                }
            }
            Entry { key: vec![i as f32], value: m }
        }).collect();
        for store in ["idx", "scan"] {
            e.apply(&Command::Set { store: s(store), entries: entries.clone() }).expect("set");
        }
        fn condition(rng: &mut SimRng, depth: usize) -> Condition {
            let key = ["a", "b"][rng.below(2) as usize].to_string();
            let v = |rng: &mut SimRng| MetadataValue::RawString(["x", "y", "z", "w"][rng.below(4) as usize].to_string());
            if depth == 0 || rng.below(3) == 0 {
                return Condition::Value(match rng.below(4) {
                    0 => Predicate::Equals { key, value: v(rng) },
                    1 => Predicate::NotEquals { key, value: v(rng) },
                    2 => Predicate::In { key, values: vec![v(rng), v(rng)] },
                    _ => Predicate::NotIn { key, values: vec![v(rng)] },
                });
            }
            let (l, r) = (Box::new(condition(rng, depth - 1)), Box::new(condition(rng, depth - 1)));
            if rng.coin() { Condition::And(l, r) } else { Condition::Or(l, r) }
        }
        for _ in 0..20 {
            let c = condition(&mut rng, 3);
            let get = |store: &str| e.query(&Query::GetPred { store: s(store), condition: c.clone() }).expect("pred");
            prop_assert_eq!(get("idx"), get("scan"), "{:?}", c);
        }
    }

    /// The same random command sequence (errors included) gives the same answers and the same
    /// state digest on two engines.
    #[test]
    fn replicas_agree(seed in any::<u64>()) {
        let (a, b) = (Engine::default(), Engine::default());
        let mut rng = SimRng::new(seed);
        for _ in 0..120 {
            let cmd = random_command(&mut rng);
            prop_assert_eq!(a.apply(&cmd), b.apply(&cmd));
            let q = Query::GetSimN { store: s("s0"), search: vec![0.5, -0.5, 0.25], closest_n: 5, algorithm: Algorithm::Hnsw { ef_search: None }, condition: None };
            prop_assert_eq!(a.query(&q), b.query(&q));
        }
        prop_assert_eq!(a.digest(), b.digest());
    }
}

fn random_command(rng: &mut SimRng) -> Command {
    let store = s(["s0", "s1"][rng.below(2) as usize]);
    let key = |rng: &mut SimRng| (0..3).map(|_| rng.below(9) as f32 - 4.0).collect::<Vec<f32>>();
    let value = |rng: &mut SimRng| -> Metadata {
        BTreeMap::from([("c".to_string(), MetadataValue::RawString(rng.below(3).to_string()))])
    };
    let cond = |rng: &mut SimRng| {
        Condition::Value(Predicate::Equals {
            key: "c".into(),
            value: MetadataValue::RawString(rng.below(3).to_string()),
        })
    };
    match rng.below(10) {
        0 => Command::CreateStore {
            store,
            dimension: 3,
            predicates: vec!["c".into()],
            non_linear: vec![
                NonLinearIndex::Hnsw(HnswConfig { m: 4, ef_construction: 16, ..HnswConfig::default() }),
                NonLinearIndex::KdTree,
            ],
            error_if_exists: rng.coin(),
        },
        1..=4 => Command::Set {
            store,
            entries: (0..rng.below(12)).map(|_| Entry { key: key(rng), value: value(rng) }).collect(),
        },
        5 => Command::DelKey { store, keys: (0..rng.below(6)).map(|_| key(rng)).collect() },
        6 => Command::DelPred { store, condition: cond(rng) },
        7 => Command::Upsert {
            store,
            condition: cond(rng),
            new_key: rng.coin().then(|| key(rng)),
            new_value: Some(value(rng)),
            merge_metadata: rng.coin(),
        },
        8 => Command::ClearStore { store },
        _ => Command::DropPredIndex { store, predicates: vec!["c".into()], error_if_not_exists: rng.coin() },
    }
}
