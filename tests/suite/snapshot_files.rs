//! Snapshot files: written atomically, never loaded when damaged, the predecessor kept as a
//! fallback, and images that pass structural checks but break an invariant refused.

use std::path::Path;

use ahnlich_raft::engine::{
    ArchivedEngineImage, Command, Engine, EngineImage, Entry, HnswConfig, Limits, Metadata, MetadataValue,
    NonLinearIndex, StoreRef,
};
use ahnlich_raft::snapshot::{MappedSnapshot, SnapshotError, SnapshotId, SnapshotStore};
use tempfile::TempDir;

fn engine(n: usize, seed: u32) -> Engine {
    let e = Engine::default();
    let store = StoreRef::public("s");
    e.apply(&Command::CreateStore {
        store: store.clone(),
        dimension: 4,
        predicates: vec!["c".into()],
        non_linear: vec![NonLinearIndex::KdTree, NonLinearIndex::Hnsw(HnswConfig::default())],
        error_if_exists: true,
    })
    .expect("create");
    let entries = (0..n)
        .map(|i| Entry {
            key: vec![i as f32, seed as f32, (i % 7) as f32, 1.0],
            value: Metadata::from([("c".to_string(), MetadataValue::RawString((i % 3).to_string()))]),
        })
        .collect();
    e.apply(&Command::Set { store, entries }).expect("set");
    e
}

fn id(index: u64) -> SnapshotId {
    SnapshotId { index, term: 1 }
}

fn restored(snap: &MappedSnapshot) -> Engine {
    Engine::restore(snap.image().expect("image"), Limits::default()).expect("restore")
}

#[test]
fn round_trip_keeps_state_and_meta() {
    let dir = TempDir::new().expect("tempdir");
    let store = SnapshotStore::open(dir.path()).expect("open");
    let e = engine(500, 1);
    store.write(id(42), b"raft meta bytes", &e.image()).expect("write");
    let (snap, skipped) = store.load_newest().expect("load").expect("a snapshot");
    assert!(skipped.is_empty());
    assert_eq!((snap.id(), snap.meta()), (id(42), &b"raft meta bytes"[..]));
    assert_eq!(restored(&snap).digest(), e.digest());
    assert!(store.write(id(43), &vec![0u8; 5000], &e.image()).is_err(), "oversized meta is refused");
}

#[test]
fn every_truncation_and_sampled_corruption_is_refused() {
    let dir = TempDir::new().expect("tempdir");
    let store = SnapshotStore::open(dir.path()).expect("open");
    let path = store.write(id(7), b"m", &engine(40, 2).image()).expect("write");
    let good = std::fs::read(&path).expect("read");
    let probe = dir.path().join("probe.bin");
    let refuses = |bytes: &[u8]| {
        std::fs::write(&probe, bytes).expect("write probe");
        matches!(MappedSnapshot::open(&probe, id(7)), Err(SnapshotError::Damaged { .. }))
    };
    for cut in 0..good.len() {
        assert!(refuses(&good[..cut]), "a file cut at {cut} of {} was accepted", good.len());
    }
    let mut extended = good.clone();
    extended.push(0);
    assert!(refuses(&extended), "a longer file was accepted");
    let mut state = 0x9e37_79b9_u64;
    for _ in 0..3000 {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let at = (state >> 33) as usize % good.len();
        let mut bad = good.clone();
        bad[at] ^= 1 << ((state >> 29) & 7);
        assert!(refuses(&bad), "a flipped bit at byte {at} was accepted");
    }
    std::fs::write(&probe, &good).expect("write probe");
    assert!(MappedSnapshot::open(&probe, id(7)).is_ok(), "the intact file opens");
}

#[test]
fn a_damaged_newest_snapshot_falls_back_to_its_predecessor() {
    let dir = TempDir::new().expect("tempdir");
    let store = SnapshotStore::open(dir.path()).expect("open");
    let older = engine(30, 3);
    store.write(id(10), b"old", &older.image()).expect("write");
    let newest = store.write(id(20), b"new", &engine(60, 3).image()).expect("write");
    let mut bytes = std::fs::read(&newest).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&newest, &bytes).expect("damage");
    let (snap, skipped) = store.load_newest().expect("load").expect("a snapshot");
    assert_eq!(snap.id(), id(10));
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].1.to_string().contains(&newest.display().to_string()), "the error names the file");
    assert_eq!(restored(&snap).digest(), older.digest());

    let mut older_bytes = std::fs::read(snap.path()).expect("read");
    older_bytes.truncate(100);
    std::fs::write(snap.path(), &older_bytes).expect("damage");
    assert!(store.load_newest().is_err(), "no valid snapshot left is an error, not a silent empty state");
}

#[test]
fn only_the_newest_two_are_kept_and_temporaries_are_removed() {
    let dir = TempDir::new().expect("tempdir");
    let store = SnapshotStore::open(dir.path()).expect("open");
    let e = engine(10, 4);
    for i in 1..=5 {
        store.write(id(i * 10), b"", &e.image()).expect("write");
    }
    let ids: Vec<u64> = store.list().expect("list").into_iter().map(|(id, _)| id.index).collect();
    assert_eq!(ids, vec![50, 40]);
    let stray = dir.path().join("00000000000000000060-00000000000000000001.snap.tmp");
    std::fs::write(&stray, b"half written").expect("stray");
    drop(SnapshotStore::open(dir.path()).expect("reopen"));
    assert!(!Path::new(&stray).exists(), "a leftover temporary is removed on open");
}

/// Damages an image in one way.
type Breaker = Box<dyn Fn(&mut EngineImage)>;

#[test]
fn images_that_break_an_invariant_are_refused_without_panicking() {
    let base = engine(50, 5).image();
    let breakers: Vec<(&str, Breaker)> = vec![
        ("arena shorter than its slots", Box::new(|i| i.stores[0].arena.truncate(3))),
        ("free slot out of range", Box::new(|i| i.stores[0].free.push(1_000_000))),
        ("free slot holding an entry", Box::new(|i| i.stores[0].free.push(0))),
        ("metadata span outside the arena", Box::new(|i| i.stores[0].meta_offsets[0] = u64::MAX - 1)),
        ("live count wrong", Box::new(|i| i.stores[0].live += 1)),
        ("predicate slot out of range", Box::new(|i| i.stores[0].predicates[0].slots[0] = 9_999)),
        (
            "predicate slots out of order",
            Box::new(|i| {
                let p = &mut i.stores[0].predicates[0];
                let mut start = 0;
                let (first, _) = p
                    .ends
                    .iter()
                    .map(|&end| {
                        let range = (start, end as usize);
                        start = end as usize;
                        range
                    })
                    .find(|(a, b)| b - a >= 2)
                    .expect("a value held by two entries");
                p.slots.swap(first, first + 1);
            }),
        ),
        (
            "metadata garbage above its bytes",
            Box::new(|i| i.stores[0].meta_garbage = i.stores[0].meta_bytes.len() as u64 + 1),
        ),
        ("k-d child before its parent", Box::new(|i| i.stores[0].kdtree.as_mut().expect("kd").lefts[1] = 0)),
        ("HNSW link to a missing node", Box::new(|i| i.stores[0].hnsw.as_mut().expect("hnsw").links[0] = 77_777)),
        ("HNSW unknown metric", Box::new(|i| i.stores[0].hnsw.as_mut().expect("hnsw").metric = 9)),
        (
            "duplicate key",
            Box::new(|i| {
                let s = &mut i.stores[0];
                let d = s.dimension as usize;
                let first: Vec<f32> = s.arena[..d].to_vec();
                s.arena[d..2 * d].copy_from_slice(&first);
            }),
        ),
        (
            "store twice",
            Box::new(|i| {
                let again = engine(1, 6).image().stores.remove(0);
                i.stores.push(again);
            }),
        ),
    ];
    for (what, breaker) in breakers {
        let mut image = engine(50, 5).image();
        breaker(&mut image);
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&image).expect("archive");
        let archived = rkyv::access::<ArchivedEngineImage, rkyv::rancor::Error>(&bytes).expect("structurally valid");
        assert!(Engine::restore(archived, Limits::default()).is_err(), "{what} was accepted");
    }
    let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&base).expect("archive");
    let archived = rkyv::access::<ArchivedEngineImage, rkyv::rancor::Error>(&bytes).expect("valid");
    assert!(Engine::restore(archived, Limits::default()).is_ok(), "the unbroken image restores");
}

#[test]
fn an_older_snapshot_is_kept_only_while_the_log_still_reaches_back_to_it() {
    let dir = TempDir::new().expect("tempdir");
    let store = SnapshotStore::open(dir.path()).expect("open");
    let image = engine(10, 1).image();
    store.write(id(100), b"m", &image).expect("write");
    store.write(id(200), b"m", &image).expect("write");
    let indexes = |s: &SnapshotStore| s.list().expect("list").iter().map(|(i, _)| i.index).collect::<Vec<_>>();
    assert_eq!(store.prune_uncovered(100).expect("prune"), 0, "the log still holds 101..: a usable fallback");
    assert_eq!(indexes(&store), vec![200, 100]);
    assert_eq!(store.prune_uncovered(150).expect("prune"), 1);
    assert_eq!(indexes(&store), vec![200]);
    assert_eq!(store.prune_uncovered(500).expect("prune"), 0, "the newest always stays");
    assert_eq!(indexes(&store), vec![200]);
}
