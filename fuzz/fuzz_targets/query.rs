//! Arbitrary writes and reads against a small engine holding a store of each index kind (linear
//! only, k-d tree, HNSW; all with a predicate index), with every size a client chooses drawn
//! from the whole `u64` range. Nothing may panic or allocate beyond the fuzzer's
//! `-malloc_limit_mb`; a refused write changes nothing; and every answer agrees with a
//! brute-force reading of the same store: GetKey and GetPred with a filter over all entries,
//! paging with the full listing, linear GetSimN with scores computed here, and the exact k-d
//! tree with the linear Euclidean scan.
#![no_main]

use ahnlich_raft::engine::{
    Algorithm, Command, Condition, Engine, Entry, HnswConfig, Limits, Metadata, MetadataValue, Metric, NonLinearIndex,
    NonLinearKind, Predicate, Query, Response, StoreRef,
};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

const DIM: usize = 3;
const STORES: [&str; 3] = ["linear", "kdtree", "hnsw"];
const KEY: &str = "colour";
const COLOURS: [&str; 4] = ["red", "green", "blue", "grey"];
/// The answer limit the fuzzed reads run under (the server passes its message limit).
const MAX_ANSWER_BYTES: usize = 1 << 20;
/// Longest condition chain built (the gRPC decoder stops nesting at 100).
const MAX_CHAIN: usize = 128;

#[derive(Arbitrary, Debug)]
enum Name {
    Known(u8),
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Key {
    /// A key of the stores' dimension, on a coarse grid so that keys repeat.
    Grid([i8; DIM]),
    /// Anything: wrong length, NaN, infinities.
    Raw(Vec<f32>),
}

#[derive(Arbitrary, Debug)]
enum Value {
    Colour(u8),
    Text(String),
    Bytes(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Pred {
    kind: u8,
    other_key: bool,
    values: Vec<Value>,
}

/// A condition as a chain folded left to right, so its depth is bounded by the input.
#[derive(Arbitrary, Debug)]
struct Cond {
    first: Pred,
    rest: Vec<(bool, Pred)>,
}

#[derive(Arbitrary, Debug)]
enum Algo {
    Linear(u8),
    KdTree,
    Hnsw(Option<u64>),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Set { store: Name, entries: Vec<(Key, Option<Value>)> },
    DelKey { store: Name, keys: Vec<Key> },
    DelPred { store: Name, condition: Cond },
    Upsert { store: Name, condition: Cond, new_key: Option<Key>, new_value: Option<Value>, merge: bool },
    CreateHnsw { store: Name, m: u64, ef_construction: u64, ef_search: u64, metric: u8 },
    CreateKdTree { store: Name },
    DropIndex { store: Name, hnsw: bool },
    CreatePredIndex { store: Name, keys: Vec<String> },
    ClearStore { store: Name },
    GetKey { store: Name, keys: Vec<Key> },
    GetPred { store: Name, condition: Cond },
    GetSimN { store: Name, search: Key, closest_n: u64, algorithm: Algo, condition: Option<Cond> },
    List { store: Name, cursor: Option<String>, limit: u64, condition: Option<Cond> },
    GetStore { store: Name },
}

#[derive(Arbitrary, Debug)]
struct Input {
    seed_entries: Vec<([i8; DIM], u8)>,
    ops: Vec<Op>,
}

fn store_ref(name: &Name) -> StoreRef {
    match name {
        Name::Known(i) => StoreRef::public(STORES[*i as usize % STORES.len()]),
        Name::Other(s) => StoreRef::public(s.clone()),
    }
}

fn key(k: &Key) -> Vec<f32> {
    match k {
        Key::Grid(g) => g.iter().map(|&x| f32::from(x) / 8.0).collect(),
        Key::Raw(v) => v.clone(),
    }
}

fn value(v: &Value) -> MetadataValue {
    match v {
        Value::Colour(c) => MetadataValue::RawString(COLOURS[*c as usize % COLOURS.len()].to_owned()),
        Value::Text(s) => MetadataValue::RawString(s.clone()),
        Value::Bytes(b) => MetadataValue::Image(b.clone()),
    }
}

fn metadata(v: &Option<Value>) -> Metadata {
    v.iter().map(|v| (KEY.to_owned(), value(v))).collect()
}

fn predicate(p: &Pred) -> Predicate {
    let key = if p.other_key { "other".to_owned() } else { KEY.to_owned() };
    let values: Vec<MetadataValue> = p.values.iter().map(value).collect();
    let one = values.first().cloned().unwrap_or(MetadataValue::RawString(String::new()));
    match p.kind % 4 {
        0 => Predicate::Equals { key, value: one },
        1 => Predicate::NotEquals { key, value: one },
        2 => Predicate::In { key, values },
        _ => Predicate::NotIn { key, values },
    }
}

fn condition(c: &Cond) -> Condition {
    c.rest.iter().take(MAX_CHAIN).fold(Condition::Value(predicate(&c.first)), |acc, (and, p)| {
        let next = Box::new(Condition::Value(predicate(p)));
        if *and { Condition::And(Box::new(acc), next) } else { Condition::Or(Box::new(acc), next) }
    })
}

fn metric(m: u8) -> Metric {
    [Metric::Cosine, Metric::Euclidean, Metric::DotProduct][m as usize % 3]
}

/// A client-chosen `u64` as the engine receives it (the server converts the same way).
fn size(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn engine(seed: &[([i8; DIM], u8)]) -> Engine {
    let engine = Engine::new(Limits { max_memory_bytes: Some(8 << 20), ..Limits::default() });
    let hnsw = HnswConfig { m: 4, ef_construction: 16, ef_search: 16, metric: Metric::Euclidean };
    let indexes = [vec![], vec![NonLinearIndex::KdTree], vec![NonLinearIndex::Hnsw(hnsw)]];
    let entries: Vec<Entry> = seed
        .iter()
        .take(64)
        .map(|(k, c)| Entry { key: key(&Key::Grid(*k)), value: metadata(&Some(Value::Colour(*c))) })
        .collect();
    for (name, non_linear) in STORES.iter().zip(indexes) {
        let store = StoreRef::public(*name);
        let create = Command::CreateStore {
            store: store.clone(),
            dimension: DIM,
            predicates: vec![KEY.to_owned()],
            non_linear,
            error_if_exists: true,
        };
        engine.apply(&create).expect("create a fuzzed store");
        engine.apply(&Command::Set { store, entries: entries.clone() }).expect("seed a fuzzed store");
    }
    engine
}

/// Every entry of `store`, in key order, read with one page as large as the store.
fn all_entries(engine: &Engine, store: &StoreRef) -> Option<Vec<Entry>> {
    match engine.query(&Query::ListStoreEntries {
        store: store.clone(),
        cursor: None,
        limit: usize::MAX,
        condition: None,
    }) {
        Ok(Response::Page { entries, next_cursor: None }) => Some(entries),
        Ok(other) => panic!("a full listing returned {other:?}"),
        Err(_) => None,
    }
}

fn apply(engine: &Engine, cmd: Command) {
    let before = engine.digest();
    let checked = engine.validate(&cmd);
    match engine.apply(&cmd) {
        Ok(_) => assert!(checked.is_ok(), "validate refused {cmd:?} ({checked:?}) but apply took it"),
        Err(e) => {
            assert!(checked.is_err(), "validate passed {cmd:?} but apply refused it: {e}");
            assert_eq!(engine.digest(), before, "a refused {cmd:?} changed the state: {e}");
        }
    }
}

fn close(a: f32, b: f32) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-3 * (1.0 + a.abs().max(b.abs()))
}

/// The score of `key` against `search` under `metric`, computed plainly in f64.
fn reference_score(metric: Metric, search: &[f32], key: &[f32]) -> f64 {
    let dot: f64 = search.iter().zip(key).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    match metric {
        Metric::DotProduct => dot,
        Metric::Cosine => dot / (norm(search) * norm(key)),
        Metric::Euclidean => {
            search.iter().zip(key).map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2)).sum::<f64>().sqrt()
        }
    }
}

fn check_similar(engine: &Engine, q: &Query, found: &[(Entry, f32)]) {
    let Query::GetSimN { store, search, closest_n, algorithm, condition } = q else { unreachable!() };
    let Some(all) = all_entries(engine, store) else { return };
    let candidates: Vec<&Entry> =
        all.iter().filter(|e| condition.as_ref().is_none_or(|c| c.accepts(&e.value))).collect();
    assert!(found.len() <= (*closest_n).min(candidates.len()), "GetSimN {q:?} returned {} entries", found.len());
    for (e, _) in found {
        assert!(
            candidates.iter().any(|c| c.key == e.key && c.value == e.value),
            "GetSimN returned {e:?}, not a candidate"
        );
    }
    let metric = match algorithm {
        Algorithm::Linear(m) => *m,
        Algorithm::KdTree => Metric::Euclidean,
        Algorithm::Hnsw { .. } => return, // approximate: membership and size only
    };
    assert_eq!(found.len(), (*closest_n).min(candidates.len()), "exact GetSimN {q:?} returned too few");
    // Scores are f32, as upstream's are: compared with the f64 reference only where f32 neither
    // overflows nor loses the value to subnormals, and where cosine is defined.
    let moderate = |v: &[f32]| v.iter().all(|x| *x == 0.0 || (1e-3..=1e3).contains(&x.abs()));
    let zero = |v: &[f32]| v.iter().all(|x| *x == 0.0);
    if !moderate(search) || candidates.iter().any(|c| !moderate(&c.key)) {
        return;
    }
    if metric == Metric::Cosine && (zero(search) || candidates.iter().any(|c| zero(&c.key))) {
        return;
    }
    let mut expected: Vec<f64> = candidates.iter().map(|c| reference_score(metric, search, &c.key)).collect();
    expected.sort_by(|a, b| if metric.higher_is_closer() { b.total_cmp(a) } else { a.total_cmp(b) });
    for (i, ((_, got), want)) in found.iter().zip(&expected).enumerate() {
        assert!(close(*got, *want as f32), "GetSimN {q:?}: result {i} scores {got}, a brute-force scan {want}");
    }
}

fn check_answer(engine: &Engine, q: &Query, answer: Response) {
    match (q, answer) {
        (Query::GetKey { store, keys }, Response::Entries(found)) => {
            let all = all_entries(engine, store).expect("GetKey answered for a store that lists");
            let expected: Vec<&Entry> = keys.iter().filter_map(|k| all.iter().find(|e| &e.key == k)).collect();
            assert_eq!(found.iter().collect::<Vec<_>>(), expected, "GetKey {keys:?}");
        }
        (Query::GetPred { store, condition }, Response::Entries(found)) => {
            let all = all_entries(engine, store).expect("GetPred answered for a store that lists");
            let expected: Vec<&Entry> = all.iter().filter(|e| condition.accepts(&e.value)).collect();
            let mut found_keys: Vec<&Vec<f32>> = found.iter().map(|e| &e.key).collect();
            let mut expected_keys: Vec<&Vec<f32>> = expected.iter().map(|e| &e.key).collect();
            found_keys.sort_by(|a, b| a.partial_cmp(b).expect("stored keys are finite"));
            expected_keys.sort_by(|a, b| a.partial_cmp(b).expect("stored keys are finite"));
            assert_eq!(found_keys, expected_keys, "GetPred {condition:?}");
        }
        (Query::GetSimN { .. }, Response::Similar(found)) => check_similar(engine, q, &found),
        (
            Query::ListStoreEntries { store, cursor: None, limit, condition },
            Response::Page { entries, next_cursor },
        ) => {
            let all = all_entries(engine, store).expect("a page answered for a store that lists");
            let matching: Vec<Entry> =
                all.into_iter().filter(|e| condition.as_ref().is_none_or(|c| c.accepts(&e.value))).collect();
            let n = (*limit).min(matching.len());
            assert_eq!(entries, matching[..n], "the first page of {limit} entries");
            assert_eq!(next_cursor.is_some(), n < matching.len(), "a next cursor while entries remain");
        }
        (Query::GetStore { store }, Response::Store(info)) => {
            let all = all_entries(engine, store).expect("a store that describes itself lists");
            assert_eq!(info.len, all.len(), "GetStore's count");
        }
        (_, Response::Page { .. }) | (Query::GetStore { .. }, _) => {}
        (q, other) => panic!("{q:?} answered {other:?}"),
    }
}

fn run(engine: &Engine, op: &Op) {
    let query = match op {
        Op::Set { store, entries } => {
            let entries = entries.iter().take(256).map(|(k, v)| Entry { key: key(k), value: metadata(v) }).collect();
            return apply(engine, Command::Set { store: store_ref(store), entries });
        }
        Op::DelKey { store, keys } => {
            return apply(engine, Command::DelKey { store: store_ref(store), keys: keys.iter().map(key).collect() });
        }
        Op::DelPred { store, condition: c } => {
            return apply(engine, Command::DelPred { store: store_ref(store), condition: condition(c) });
        }
        Op::Upsert { store, condition: c, new_key, new_value, merge } => {
            let cmd = Command::Upsert {
                store: store_ref(store),
                condition: condition(c),
                new_key: new_key.as_ref().map(key),
                new_value: new_value.as_ref().map(|v| metadata(&Some(Value::Text(format!("{v:?}"))))),
                merge_metadata: *merge,
            };
            return apply(engine, cmd);
        }
        Op::CreateHnsw { store, m, ef_construction, ef_search, metric: me } => {
            let config = HnswConfig {
                m: size(*m),
                ef_construction: size(*ef_construction),
                ef_search: size(*ef_search),
                metric: metric(*me),
            };
            return apply(
                engine,
                Command::CreateNonLinearIndex { store: store_ref(store), indexes: vec![NonLinearIndex::Hnsw(config)] },
            );
        }
        Op::CreateKdTree { store } => {
            return apply(
                engine,
                Command::CreateNonLinearIndex { store: store_ref(store), indexes: vec![NonLinearIndex::KdTree] },
            );
        }
        Op::DropIndex { store, hnsw } => {
            let kind = if *hnsw { NonLinearKind::Hnsw } else { NonLinearKind::KdTree };
            return apply(
                engine,
                Command::DropNonLinearIndex { store: store_ref(store), kinds: vec![kind], error_if_not_exists: true },
            );
        }
        Op::CreatePredIndex { store, keys } => {
            return apply(engine, Command::CreatePredIndex { store: store_ref(store), predicates: keys.clone() });
        }
        Op::ClearStore { store } => return apply(engine, Command::ClearStore { store: store_ref(store) }),
        Op::GetKey { store, keys } => Query::GetKey { store: store_ref(store), keys: keys.iter().map(key).collect() },
        Op::GetPred { store, condition: c } => Query::GetPred { store: store_ref(store), condition: condition(c) },
        Op::GetSimN { store, search, closest_n, algorithm, condition: c } => Query::GetSimN {
            store: store_ref(store),
            search: key(search),
            closest_n: size(*closest_n),
            algorithm: match algorithm {
                Algo::Linear(m) => Algorithm::Linear(metric(*m)),
                Algo::KdTree => Algorithm::KdTree,
                Algo::Hnsw(ef) => Algorithm::Hnsw { ef_search: ef.map(size) },
            },
            condition: c.as_ref().map(condition),
        },
        Op::List { store, cursor, limit, condition: c } => Query::ListStoreEntries {
            store: store_ref(store),
            cursor: cursor.clone(),
            limit: size(*limit),
            condition: c.as_ref().map(condition),
        },
        Op::GetStore { store } => Query::GetStore { store: store_ref(store) },
    };
    if let Ok(answer) = engine.query_within(&query, MAX_ANSWER_BYTES) {
        check_answer(engine, &query, answer);
    }
}

fuzz_target!(|input: Input| {
    let engine = engine(&input.seed_entries);
    for op in input.ops.iter().take(64) {
        run(&engine, op);
    }
});
