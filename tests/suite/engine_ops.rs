//! Every engine operation, including every error case the Ahnlich API describes.

use std::collections::BTreeMap;

use ahnlich_raft::engine::{
    Algorithm, Command, Condition, Engine, EngineError, Entry, ErrorCode, HnswConfig, Limits, Metadata, MetadataValue,
    Metric, NonLinearIndex, NonLinearKind, Predicate, Query, Response, StoreRef,
};

fn s(name: &str) -> StoreRef {
    StoreRef::public(name)
}

fn meta(pairs: &[(&str, &str)]) -> Metadata {
    pairs.iter().map(|(k, v)| (k.to_string(), MetadataValue::RawString(v.to_string()))).collect()
}

fn entry(key: &[f32], pairs: &[(&str, &str)]) -> Entry {
    Entry { key: key.to_vec(), value: meta(pairs) }
}

fn eq(key: &str, value: &str) -> Condition {
    Condition::Value(Predicate::Equals { key: key.into(), value: MetadataValue::RawString(value.into()) })
}

fn create(e: &Engine, name: &str, dim: usize, preds: &[&str]) {
    e.apply(&Command::CreateStore {
        store: s(name),
        dimension: dim,
        predicates: preds.iter().map(|p| p.to_string()).collect(),
        non_linear: vec![],
        error_if_exists: true,
    })
    .expect("create store");
}

fn set(e: &Engine, name: &str, entries: Vec<Entry>) -> Result<Response, EngineError> {
    e.apply(&Command::Set { store: s(name), entries })
}

fn get_pred(e: &Engine, name: &str, c: Condition) -> Vec<Entry> {
    match e.query(&Query::GetPred { store: s(name), condition: c }).expect("get pred") {
        Response::Entries(v) => v,
        other => panic!("unexpected {other:?}"),
    }
}

/// Asserts that `cmd` fails with `code` and leaves the engine's digest unchanged.
fn refused(e: &Engine, cmd: Command, code: ErrorCode) -> EngineError {
    let before = e.digest();
    let err = e.validate(&cmd).expect_err("validate must refuse");
    assert_eq!(e.apply(&cmd).expect_err("apply must refuse"), err, "validate and apply agree");
    assert_eq!(err.code(), code, "{err}");
    assert_eq!(e.digest(), before, "a refused command changed state");
    err
}

#[test]
fn create_store_rules() {
    let e = Engine::default();
    create(&e, "a", 3, &[]);
    let dup = Command::CreateStore {
        store: s("a"),
        dimension: 3,
        predicates: vec![],
        non_linear: vec![],
        error_if_exists: true,
    };
    refused(&e, dup.clone(), ErrorCode::AlreadyExists);
    let Command::CreateStore { store, predicates, non_linear, .. } = dup else { unreachable!() };
    let quiet = Command::CreateStore { store, dimension: 9, predicates, non_linear, error_if_exists: false };
    assert_eq!(e.apply(&quiet), Ok(Response::Unit), "existing store without error_if_exists is a no-op");
    let zero = Command::CreateStore {
        store: s("z"),
        dimension: 0,
        predicates: vec![],
        non_linear: vec![],
        error_if_exists: true,
    };
    refused(&e, zero, ErrorCode::InvalidArgument);
    let huge = Command::CreateStore {
        store: s("h"),
        dimension: 1 << 30,
        predicates: vec![],
        non_linear: vec![],
        error_if_exists: true,
    };
    refused(&e, huge, ErrorCode::InvalidArgument);
    let empty = Command::CreateStore {
        store: s(""),
        dimension: 2,
        predicates: vec![],
        non_linear: vec![],
        error_if_exists: true,
    };
    refused(&e, empty, ErrorCode::InvalidArgument);
    let empty_schema = StoreRef { schema: Some(String::new()), name: "x".into() };
    let cmd = Command::CreateStore {
        store: empty_schema,
        dimension: 2,
        predicates: vec![],
        non_linear: vec![],
        error_if_exists: true,
    };
    refused(&e, cmd, ErrorCode::InvalidArgument);
    let bad_hnsw = Command::CreateStore {
        store: s("g"),
        dimension: 2,
        predicates: vec![],
        non_linear: vec![NonLinearIndex::Hnsw(HnswConfig { m: 0, ..HnswConfig::default() })],
        error_if_exists: true,
    };
    refused(&e, bad_hnsw, ErrorCode::InvalidArgument);

    // Creating a store creates its schema.
    let other = StoreRef { schema: Some("tenant".into()), name: "b".into() };
    e.apply(&Command::CreateStore {
        store: other,
        dimension: 2,
        predicates: vec![],
        non_linear: vec![],
        error_if_exists: true,
    })
    .expect("create in a new schema");
    match e.query(&Query::ListStores { schema: Some("tenant".into()) }).expect("list") {
        Response::Stores(v) => assert_eq!(v.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), vec!["b"]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn set_is_all_or_nothing_and_counts_inserts_and_updates() {
    let e = Engine::default();
    create(&e, "a", 2, &["k"]);
    assert_eq!(set(&e, "a", vec![entry(&[1.0, 2.0], &[("k", "x")])]), Ok(Response::Set { inserted: 1, updated: 0 }));
    let r = set(&e, "a", vec![entry(&[1.0, 2.0], &[("k", "y")]), entry(&[3.0, 4.0], &[])]);
    assert_eq!(r, Ok(Response::Set { inserted: 1, updated: 1 }));
    let err = refused(
        &e,
        Command::Set { store: s("a"), entries: vec![entry(&[5.0, 6.0], &[]), entry(&[1.0, 2.0, 3.0], &[])] },
        ErrorCode::InvalidArgument,
    );
    assert_eq!(err.to_string(), "Store dimension is [2], input dimension of [3] was specified");
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        refused(&e, Command::Set { store: s("a"), entries: vec![entry(&[bad, 0.0], &[])] }, ErrorCode::InvalidArgument);
    }
    let empty_key =
        Entry { key: vec![0.0, 0.0], value: BTreeMap::from([(String::new(), MetadataValue::Image(vec![1]))]) };
    refused(&e, Command::Set { store: s("a"), entries: vec![empty_key] }, ErrorCode::InvalidArgument);
    refused(&e, Command::Set { store: s("nope"), entries: vec![] }, ErrorCode::NotFound);
    assert_eq!(get_pred(&e, "a", eq("k", "y")), vec![entry(&[1.0, 2.0], &[("k", "y")])]);
    assert!(get_pred(&e, "a", eq("k", "x")).is_empty(), "the overwritten value left the index");
}

/// A Set checks its keys in the same pass that takes their norms: keys whose squares overflow
/// are still valid, and a bad component is named by its place whatever comes before it.
#[test]
fn keys_too_large_to_square_are_valid_and_a_bad_component_is_named() {
    let e = Engine::default();
    create(&e, "a", 3, &[]);
    let huge = [f32::MAX, -f32::MAX, 1e30];
    assert_eq!(set(&e, "a", vec![entry(&huge, &[])]), Ok(Response::Set { inserted: 1, updated: 0 }));
    match e.query(&Query::GetKey { store: s("a"), keys: vec![huge.to_vec()] }).expect("get") {
        Response::Entries(v) => assert_eq!(v, vec![entry(&huge, &[])]),
        other => panic!("{other:?}"),
    }
    for (key, index) in
        [([f32::MAX, f32::NAN, 1.0], 1), ([1.0, f32::MAX, f32::NEG_INFINITY], 2), ([f32::INFINITY, 0.0, 0.0], 0)]
    {
        let cmd = Command::Set { store: s("a"), entries: vec![entry(&[0.5, 0.5, 0.5], &[]), entry(&key, &[])] };
        let err = refused(&e, cmd, ErrorCode::InvalidArgument);
        assert_eq!(err, EngineError::NonFiniteComponent { index, value: key[index].to_string() });
    }
}

#[test]
fn keys_are_compared_bit_for_bit() {
    let e = Engine::default();
    create(&e, "a", 1, &[]);
    let r = set(&e, "a", vec![entry(&[0.0], &[("v", "plus")]), entry(&[-0.0], &[("v", "minus")])]);
    assert_eq!(r, Ok(Response::Set { inserted: 2, updated: 0 }), "0.0 and -0.0 are different keys");
    match e.query(&Query::GetKey { store: s("a"), keys: vec![vec![-0.0], vec![0.0], vec![7.0]] }).expect("get") {
        Response::Entries(v) => {
            assert_eq!(v, vec![entry(&[-0.0], &[("v", "minus")]), entry(&[0.0], &[("v", "plus")])]);
        }
        other => panic!("{other:?}"),
    }
    let q = Query::GetKey { store: s("a"), keys: vec![vec![1.0, 2.0]] };
    assert_eq!(e.query(&q).expect_err("dimension").code(), ErrorCode::InvalidArgument);
}

#[test]
fn upsert_rules() {
    let e = Engine::default();
    create(&e, "a", 2, &["k"]);
    set(
        &e,
        "a",
        vec![
            entry(&[1.0, 0.0], &[("k", "one"), ("x", "1")]),
            entry(&[2.0, 0.0], &[("k", "two")]),
            entry(&[3.0, 0.0], &[("k", "two")]),
        ],
    )
    .expect("set");
    let up = |condition, new_key: Option<Vec<f32>>, new_value: Option<Metadata>, merge| Command::Upsert {
        store: s("a"),
        condition,
        new_key,
        new_value,
        merge_metadata: merge,
    };
    refused(&e, up(eq("k", "one"), None, None, false), ErrorCode::InvalidArgument);
    let err = refused(&e, up(eq("k", "two"), None, Some(meta(&[("k", "z")])), false), ErrorCode::InvalidArgument);
    assert_eq!(err.to_string(), "Predicate condition found 2 entries, expected exactly 1 for UPSERT");
    let err = refused(&e, up(eq("k", "none"), None, Some(meta(&[])), false), ErrorCode::InvalidArgument);
    assert_eq!(err.to_string(), "Predicate condition found 0 entries, expected exactly 1 for UPSERT");
    refused(&e, up(eq("k", "one"), Some(vec![2.0, 0.0]), None, false), ErrorCode::InvalidArgument);
    refused(&e, up(eq("k", "one"), Some(vec![2.0]), None, false), ErrorCode::InvalidArgument);

    e.apply(&up(eq("k", "one"), None, Some(meta(&[("y", "2")])), true)).expect("merge");
    assert_eq!(get_pred(&e, "a", eq("k", "one")), vec![entry(&[1.0, 0.0], &[("k", "one"), ("x", "1"), ("y", "2")])]);
    e.apply(&up(eq("k", "one"), Some(vec![9.0, 9.0]), Some(meta(&[("k", "moved")])), false)).expect("move");
    assert_eq!(get_pred(&e, "a", eq("k", "moved")), vec![entry(&[9.0, 9.0], &[("k", "moved")])]);
    match e.query(&Query::GetKey { store: s("a"), keys: vec![vec![1.0, 0.0]] }).expect("get") {
        Response::Entries(v) => assert!(v.is_empty(), "the old key is gone"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn predicates_indexed_or_not_and_missing_keys() {
    let e = Engine::default();
    create(&e, "idx", 1, &["c"]);
    create(&e, "scan", 1, &[]);
    let data = vec![entry(&[1.0], &[("c", "ng")]), entry(&[2.0], &[("c", "us")]), entry(&[3.0], &[("d", "x")])];
    set(&e, "idx", data.clone()).expect("set");
    set(&e, "scan", data).expect("set");
    let ne = Condition::Value(Predicate::NotEquals { key: "c".into(), value: MetadataValue::RawString("ng".into()) });
    let not_in =
        Condition::Value(Predicate::NotIn { key: "c".into(), values: vec![MetadataValue::RawString("us".into())] });
    let any = Condition::Or(Box::new(eq("c", "ng")), Box::new(eq("d", "x")));
    let both = Condition::And(Box::new(eq("c", "ng")), Box::new(eq("d", "x")));
    for c in [ne.clone(), not_in, any, both] {
        assert_eq!(get_pred(&e, "idx", c.clone()), get_pred(&e, "scan", c.clone()), "{c:?}");
    }
    // An entry without the key matches neither Equals nor NotEquals.
    assert_eq!(get_pred(&e, "idx", ne).iter().map(|x| x.key[0]).collect::<Vec<_>>(), vec![2.0]);

    let mut deep = eq("c", "ng");
    for _ in 0..70 {
        deep = Condition::And(Box::new(deep), Box::new(eq("c", "ng")));
    }
    let q = Query::GetPred { store: s("idx"), condition: deep.clone() };
    assert_eq!(e.query(&q).expect_err("too deep").code(), ErrorCode::InvalidArgument);
    refused(&e, Command::DelPred { store: s("idx"), condition: deep }, ErrorCode::InvalidArgument);
    let empty_key = Condition::Value(Predicate::Equals { key: String::new(), value: MetadataValue::Audio(vec![]) });
    refused(&e, Command::DelPred { store: s("idx"), condition: empty_key }, ErrorCode::InvalidArgument);
}

#[test]
fn deletes_count_what_they_removed() {
    let e = Engine::default();
    create(&e, "a", 1, &["c"]);
    set(&e, "a", (0..10).map(|i| entry(&[i as f32], &[("c", if i % 2 == 0 { "even" } else { "odd" })])).collect())
        .expect("set");
    assert_eq!(
        e.apply(&Command::DelKey { store: s("a"), keys: vec![vec![0.0], vec![0.0], vec![42.0]] }),
        Ok(Response::Count(1))
    );
    refused(&e, Command::DelKey { store: s("a"), keys: vec![vec![0.0, 1.0]] }, ErrorCode::InvalidArgument);
    assert_eq!(e.apply(&Command::DelPred { store: s("a"), condition: eq("c", "odd") }), Ok(Response::Count(5)));
    assert_eq!(e.apply(&Command::ClearStore { store: s("a") }), Ok(Response::Count(4)));
    match e.query(&Query::GetStore { store: s("a") }).expect("info") {
        Response::Store(i) => {
            assert_eq!((i.len, i.predicate_indexes.clone()), (0, vec!["c".to_string()]), "clear keeps indexes");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn index_creation_and_drops() {
    let e = Engine::default();
    create(&e, "a", 2, &["c"]);
    let pred =
        |p: &[&str]| Command::CreatePredIndex { store: s("a"), predicates: p.iter().map(|x| x.to_string()).collect() };
    assert_eq!(e.apply(&pred(&["c", "d"])), Ok(Response::Count(1)), "only new ones count");
    assert_eq!(e.apply(&pred(&["c", "d"])), Ok(Response::Count(0)), "idempotent");
    let drop = |p: &[&str], err| Command::DropPredIndex {
        store: s("a"),
        predicates: p.iter().map(|x| x.to_string()).collect(),
        error_if_not_exists: err,
    };
    refused(&e, drop(&["c", "missing"], true), ErrorCode::NotFound);
    assert_eq!(e.apply(&drop(&["c", "missing"], false)), Ok(Response::Count(1)));

    let nl = Command::CreateNonLinearIndex {
        store: s("a"),
        indexes: vec![NonLinearIndex::KdTree, NonLinearIndex::Hnsw(HnswConfig::default())],
    };
    assert_eq!(e.apply(&nl), Ok(Response::Count(2)));
    assert_eq!(e.apply(&nl), Ok(Response::Count(0)));
    let drop_nl =
        |k: Vec<NonLinearKind>, err| Command::DropNonLinearIndex { store: s("a"), kinds: k, error_if_not_exists: err };
    assert_eq!(e.apply(&drop_nl(vec![NonLinearKind::KdTree], true)), Ok(Response::Count(1)));
    refused(&e, drop_nl(vec![NonLinearKind::Hnsw, NonLinearKind::KdTree], true), ErrorCode::NotFound);
    assert_eq!(e.apply(&drop_nl(vec![NonLinearKind::Hnsw, NonLinearKind::KdTree], false)), Ok(Response::Count(1)));
    refused(&e, Command::DropStore { store: s("nope"), error_if_not_exists: true }, ErrorCode::NotFound);
    assert_eq!(e.apply(&Command::DropStore { store: s("nope"), error_if_not_exists: false }), Ok(Response::Count(0)));
    assert_eq!(e.apply(&Command::DropStore { store: s("a"), error_if_not_exists: true }), Ok(Response::Count(1)));
}

#[test]
fn schemas_and_listing() {
    let e = Engine::default();
    for name in ["b", "c", "a"] {
        create(&e, name, 1, &[]);
    }
    let t = |n: &str| StoreRef { schema: Some("t".into()), name: n.into() };
    for n in ["x", "y"] {
        e.apply(&Command::CreateStore {
            store: t(n),
            dimension: 1,
            predicates: vec![],
            non_linear: vec![],
            error_if_exists: true,
        })
        .expect("create");
    }
    match e.query(&Query::ListStores { schema: Some(String::new()) }).expect("list") {
        Response::Stores(v) => assert_eq!(v.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), vec!["a", "b", "c"]),
        other => panic!("{other:?}"),
    }
    refused(&e, Command::DropSchema { schema: "public".into() }, ErrorCode::InvalidArgument);
    refused(&e, Command::DropSchema { schema: String::new() }, ErrorCode::InvalidArgument);
    assert_eq!(e.apply(&Command::DropSchema { schema: "t".into() }), Ok(Response::Count(2)));
    assert_eq!(e.query(&Query::GetStore { store: t("x") }).expect_err("gone").code(), ErrorCode::NotFound);
}

#[test]
fn list_store_entries_pages_in_key_order() {
    let e = Engine::default();
    create(&e, "a", 1, &[]);
    set(&e, "a", (0..25).rev().map(|i| entry(&[i as f32], &[])).collect()).expect("set");
    let mut cursor = None;
    let mut seen = Vec::new();
    loop {
        let q = Query::ListStoreEntries { store: s("a"), cursor: cursor.clone(), limit: 10, condition: None };
        let Response::Page { entries, next_cursor } = e.query(&q).expect("page") else { panic!("not a page") };
        seen.extend(entries.iter().map(|x| x.key[0]));
        match next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut want: Vec<f32> = (0..25).map(|i| i as f32).collect();
    want.sort_by_key(|x| x.to_bits());
    assert_eq!(seen, want);
    let bad = Query::ListStoreEntries { store: s("a"), cursor: Some("zz".into()), limit: 5, condition: None };
    assert_eq!(e.query(&bad).expect_err("cursor").code(), ErrorCode::InvalidArgument);
    let zero = Query::ListStoreEntries { store: s("a"), cursor: None, limit: 0, condition: None };
    assert_eq!(e.query(&zero).expect_err("limit").code(), ErrorCode::InvalidArgument);
}

#[test]
fn get_sim_n_rules() {
    let e = Engine::default();
    create(&e, "a", 2, &["c"]);
    set(&e, "a", vec![entry(&[1.0, 0.0], &[("c", "x")]), entry(&[0.0, 1.0], &[]), entry(&[1.0, 1.0], &[("c", "x")])])
        .expect("set");
    let q = |n: usize, algorithm, condition| Query::GetSimN {
        store: s("a"),
        search: vec![1.0, 0.0],
        closest_n: n,
        algorithm,
        condition,
    };
    let keys = |r: Response| match r {
        Response::Similar(v) => v.into_iter().map(|(e, _)| e.key).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    let lin = |m| Algorithm::Linear(m);
    assert_eq!(e.query(&q(0, lin(Metric::Cosine), None)).expect_err("zero").code(), ErrorCode::InvalidArgument);
    assert_eq!(keys(e.query(&q(99, lin(Metric::Euclidean), None)).expect("all")).len(), 3, "more than the store holds");
    assert_eq!(keys(e.query(&q(1, lin(Metric::Cosine), None)).expect("cos")), vec![vec![1.0, 0.0]]);
    assert_eq!(keys(e.query(&q(1, lin(Metric::DotProduct), None)).expect("dot"))[0], vec![1.0, 0.0], "tie by key bits");
    assert_eq!(
        keys(e.query(&q(3, lin(Metric::Euclidean), Some(eq("c", "x")))).expect("filtered")),
        vec![vec![1.0, 0.0], vec![1.0, 1.0]]
    );
    assert_eq!(e.query(&q(1, Algorithm::KdTree, None)).expect_err("no index").code(), ErrorCode::NotFound);
    assert_eq!(
        e.query(&q(1, Algorithm::Hnsw { ef_search: None }, None)).expect_err("no index").code(),
        ErrorCode::NotFound
    );
    let zero = Query::GetSimN {
        store: s("a"),
        search: vec![0.0, 0.0],
        closest_n: 1,
        algorithm: lin(Metric::Cosine),
        condition: None,
    };
    assert_eq!(e.query(&zero).expect_err("zero vector").code(), ErrorCode::InvalidArgument);
    let wrong = Query::GetSimN {
        store: s("a"),
        search: vec![0.0],
        closest_n: 1,
        algorithm: lin(Metric::Cosine),
        condition: None,
    };
    assert_eq!(e.query(&wrong).expect_err("dimension").code(), ErrorCode::InvalidArgument);
}

#[test]
fn memory_cap_refuses_whole_writes() {
    let e = Engine::new(Limits { max_memory_bytes: Some(2_000), ..Limits::default() });
    create(&e, "a", 4, &[]);
    set(&e, "a", (0..10).map(|i| entry(&[i as f32; 4], &[])).collect()).expect("fits");
    let used = e.used_bytes();
    let err = refused(
        &e,
        Command::Set { store: s("a"), entries: (0..30).map(|i| entry(&[100.0 + i as f32; 4], &[])).collect() },
        ErrorCode::ResourceExhausted,
    );
    assert!(err.to_string().contains("2000"), "{err}");
    assert_eq!(e.used_bytes(), used);
    // Overwrites that shrink entries fit; dropping the store frees everything.
    set(&e, "a", (0..10).map(|i| entry(&[i as f32; 4], &[])).collect()).expect("same size overwrite");
    e.apply(&Command::DropStore { store: s("a"), error_if_not_exists: true }).expect("drop");
    assert_eq!(e.used_bytes(), 0);
}

#[test]
fn a_batch_applies_each_command_as_if_it_stood_alone() {
    let commands = vec![
        Command::CreateStore {
            store: s("b"),
            dimension: 2,
            predicates: vec!["tag".into()],
            non_linear: vec![],
            error_if_exists: true,
        },
        Command::Set { store: s("b"), entries: vec![entry(&[1.0, 2.0], &[("tag", "x")])] },
        // Refused: the store does not exist. The commands after it still apply.
        Command::Set { store: s("missing"), entries: vec![entry(&[1.0, 2.0], &[])] },
        Command::CreateStore {
            store: s("b"),
            dimension: 2,
            predicates: vec![],
            non_linear: vec![],
            error_if_exists: true,
        },
        // Refused whole (a wrong dimension): its first entry is not applied either.
        Command::Set { store: s("b"), entries: vec![entry(&[5.0, 5.0], &[]), entry(&[1.0], &[])] },
        // A key repeated within one Set, and a key the store already holds.
        Command::Set {
            store: s("b"),
            entries: vec![
                entry(&[3.0, 4.0], &[("tag", "y")]),
                entry(&[3.0, 4.0], &[("tag", "z")]),
                entry(&[1.0, 2.0], &[("tag", "y")]),
            ],
        },
        Command::DelKey { store: s("b"), keys: vec![vec![9.0, 9.0]] },
    ];

    let alone = Engine::default();
    let expected: Vec<Result<Response, EngineError>> = commands.iter().map(|c| alone.apply(c)).collect();
    assert!(expected[2].is_err() && expected[3].is_err() && expected[4].is_err(), "{expected:?}");
    assert_eq!(expected[5], Ok(Response::Set { inserted: 1, updated: 2 }));

    let batched = Engine::default();
    let cmd = Command::Batch { commands };
    assert!(batched.validate(&cmd).is_ok());
    assert_eq!(batched.apply(&cmd), Ok(Response::Batch(expected)));
    assert_eq!(batched.digest(), alone.digest(), "a batch leaves the state its commands leave one by one");
    assert_eq!(get_pred(&batched, "b", eq("tag", "y")).len(), 1);
    assert_eq!(get_pred(&batched, "b", eq("tag", "z")).len(), 1);

    // A batch that holds a batch is refused whole: nothing in it applies.
    let nested = Command::Batch {
        commands: vec![
            Command::ClearStore { store: s("b") },
            Command::Batch { commands: vec![Command::ClearStore { store: s("b") }] },
        ],
    };
    let err = refused(&batched, nested, ErrorCode::InvalidArgument);
    assert!(err.to_string().contains("cannot hold a batch"), "{err}");
}
