//! The engine's state survives an image round trip through rkyv bytes exactly: same digest,
//! same answers, and further commands behave the same on the restored engine.

use std::sync::Arc;

use ahnlich_raft::engine::{
    Algorithm, ArchiveImage, ArchivedEngineImage, Backing, Command, Condition, Engine, Entry, HnswConfig, Limits,
    Metadata, MetadataValue, Metric, NonLinearIndex, Predicate, Query, StoreRef,
};
use ahnlich_raft::wal::sim_fs::SimRng;

fn random_command(rng: &mut SimRng) -> Command {
    let store = StoreRef::public(["s0", "s1"][rng.below(2) as usize]);
    let key = |rng: &mut SimRng| (0..4).map(|_| rng.below(9) as f32 - 4.0).collect::<Vec<f32>>();
    let value = |rng: &mut SimRng| -> Metadata {
        Metadata::from([("c".to_string(), MetadataValue::RawString(rng.below(3).to_string()))])
    };
    let cond = |rng: &mut SimRng| {
        Condition::Value(Predicate::Equals {
            key: "c".into(),
            value: MetadataValue::RawString(rng.below(3).to_string()),
        })
    };
    match rng.below(8) {
        0 => Command::CreateStore {
            store,
            dimension: 4,
            predicates: vec!["c".into()],
            non_linear: vec![
                NonLinearIndex::Hnsw(HnswConfig { m: 4, ef_construction: 16, ef_search: 16, metric: Metric::Cosine }),
                NonLinearIndex::KdTree,
            ],
            error_if_exists: false,
        },
        1..=4 => Command::Set {
            store,
            entries: (0..rng.below(20)).map(|_| Entry { key: key(rng), value: value(rng) }).collect(),
        },
        5 => Command::DelKey { store, keys: (0..rng.below(8)).map(|_| key(rng)).collect() },
        6 => Command::DelPred { store, condition: cond(rng) },
        _ => Command::Upsert {
            store,
            condition: cond(rng),
            new_key: None,
            new_value: Some(value(rng)),
            merge_metadata: true,
        },
    }
}

/// An engine after 200 random commands from `seed`, and the generator to go on with.
fn random_history(seed: u64) -> (Engine, SimRng) {
    let mut rng = SimRng::new(seed);
    let e = Engine::default();
    for _ in 0..200 {
        let _ = e.apply(&random_command(&mut rng));
    }
    (e, rng)
}

fn restore(e: &Engine) -> Engine {
    let bytes = copied_image_bytes(e);
    let archived = rkyv::access::<ArchivedEngineImage, rkyv::rancor::Error>(&bytes).expect("valid archive");
    Engine::restore(archived, Limits::default()).expect("restore")
}

#[test]
fn state_survives_an_image_round_trip() {
    for seed in 0..40 {
        let (original, mut rng) = random_history(seed);
        let restored = restore(&original);
        assert_eq!(restored.digest(), original.digest(), "seed {seed}");
        assert_eq!(restored.used_bytes(), original.used_bytes());
        for _ in 0..100 {
            let cmd = random_command(&mut rng);
            assert_eq!(original.apply(&cmd), restored.apply(&cmd), "seed {seed}: {cmd:?}");
            for algorithm in
                [Algorithm::Hnsw { ef_search: None }, Algorithm::KdTree, Algorithm::Linear(Metric::DotProduct)]
            {
                let q = Query::GetSimN {
                    store: StoreRef::public("s0"),
                    search: vec![1.0, -2.0, 0.5, 3.0],
                    closest_n: 4,
                    algorithm,
                    condition: None,
                };
                assert_eq!(original.query(&q), restored.query(&q), "seed {seed}");
            }
        }
        assert_eq!(restored.digest(), original.digest(), "seed {seed}: diverged after more commands");
    }
}

/// An archive held in memory as a snapshot's mapped file is, for restoring in place.
struct InMemory(rkyv::util::AlignedVec);

impl Backing for InMemory {
    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// What a snapshot writes: the capture's image with its vectors, norms and metadata archived
/// from the capture's own chunks.
fn snapshot_bytes(e: &Engine) -> Vec<u8> {
    let mut out = Vec::new();
    e.capture().image_parts().archive_to(&mut out).expect("archive the parts");
    out
}

fn copied_image_bytes(e: &Engine) -> Vec<u8> {
    rkyv::to_bytes::<rkyv::rancor::Error>(&e.image()).expect("archive").to_vec()
}

#[test]
fn a_snapshot_archives_the_captured_chunks_as_the_bytes_of_the_copied_image() {
    for seed in 0..20 {
        let (e, _) = random_history(seed);
        assert_eq!(snapshot_bytes(&e), copied_image_bytes(&e), "seed {seed}");
    }

    // Several chunks of vectors (4,096 rows of 64 floats each) and of metadata (1 MiB each),
    // slots freed and reused, a second store and an empty one.
    let e = Engine::default();
    let mut rng = SimRng::new(99);
    for (name, dimension) in [("big", 64), ("small", 3), ("empty", 8)] {
        let store = StoreRef::public(name);
        let create = Command::CreateStore {
            store,
            dimension,
            predicates: vec!["c".into()],
            non_linear: vec![],
            error_if_exists: true,
        };
        e.apply(&create).expect("create");
    }
    let entry = |rng: &mut SimRng, dimension: usize, i: u64| Entry {
        key: (0..dimension).map(|_| rng.below(1 << 16) as f32).collect(),
        value: Metadata::from([
            ("c".to_string(), MetadataValue::RawString((i % 7).to_string())),
            ("text".to_string(), MetadataValue::RawString(format!("{i:0>200}"))),
        ]),
    };
    set_on(&e, "big", (0..12_000).map(|i| entry(&mut rng, 64, i)).collect());
    set_on(&e, "small", (0..50).map(|i| entry(&mut rng, 3, i)).collect());
    let condition =
        Condition::Value(Predicate::Equals { key: "c".into(), value: MetadataValue::RawString("3".into()) });
    e.apply(&Command::DelPred { store: StoreRef::public("big"), condition }).expect("delete");
    set_on(&e, "big", (20_000..20_500).map(|i| entry(&mut rng, 64, i)).collect());
    let bytes = copied_image_bytes(&e);
    assert!(bytes.len() > 5 << 20, "the state spans several chunks: {} bytes", bytes.len());
    assert_eq!(snapshot_bytes(&e), bytes);

    // A node's state after it restores a snapshot: vectors and norms still in the mapped file,
    // but for the chunks written since.
    let mut aligned = rkyv::util::AlignedVec::<16>::new();
    aligned.extend_from_slice(&bytes);
    let backing = Arc::new(InMemory(aligned));
    let archived = rkyv::access::<ArchivedEngineImage, rkyv::rancor::Error>(backing.bytes()).expect("valid");
    let restored = Engine::restore_backed(archived, backing.clone(), Limits::default()).expect("restore in place");
    assert_eq!(snapshot_bytes(&restored), bytes, "every chunk still in the file");
    set_on(&restored, "big", (30_000..30_010).map(|i| entry(&mut rng, 64, i)).collect());
    let written = copied_image_bytes(&restored);
    assert_ne!(written, bytes);
    assert_eq!(snapshot_bytes(&restored), written, "some chunks copied out of the file, most not");
}

fn set_on(e: &Engine, store: &str, entries: Vec<Entry>) {
    e.apply(&Command::Set { store: StoreRef::public(store), entries }).expect("set");
}
