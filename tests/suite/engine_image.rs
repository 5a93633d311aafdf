//! The engine's state survives an image round trip through rkyv bytes exactly: same digest,
//! same answers, and further commands behave the same on the restored engine.

use ahnlich_raft::engine::{
    Algorithm, ArchivedEngineImage, Command, Condition, Engine, Entry, HnswConfig, Limits, Metadata, MetadataValue,
    Metric, NonLinearIndex, Predicate, Query, StoreRef,
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

fn restore(e: &Engine) -> Engine {
    let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&e.image()).expect("archive");
    let archived = rkyv::access::<ArchivedEngineImage, rkyv::rancor::Error>(&bytes).expect("valid archive");
    Engine::restore(archived, Limits::default()).expect("restore")
}

#[test]
fn state_survives_an_image_round_trip() {
    for seed in 0..40 {
        let mut rng = SimRng::new(seed);
        let original = Engine::default();
        for _ in 0..200 {
            let _ = original.apply(&random_command(&mut rng));
        }
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
