//! The log encoding of engine commands: every variant round-trips bit for bit, and bytes that
//! are not a command decode to an error, never a panic.

use ahnlich_raft::engine::{
    Command, Condition, Entry, HnswConfig, Metadata, MetadataValue, Metric, NonLinearIndex, NonLinearKind, Predicate,
    StoreRef,
};
use ahnlich_raft::raft::codec::CommandCodec;
use ahnlich_raft::wal::sim_fs::SimRng;

fn key(rng: &mut SimRng, dim: usize) -> Vec<f32> {
    (0..dim)
        .map(|_| match rng.below(5) {
            0 => -0.0,
            1 => f32::from_bits(rng.next_u64() as u32),
            _ => rng.below(100) as f32 / 7.0,
        })
        .collect()
}

fn value(rng: &mut SimRng) -> MetadataValue {
    match rng.below(3) {
        0 => MetadataValue::RawString(format!("s{}", rng.below(10))),
        1 => MetadataValue::Image(vec![rng.below(256) as u8; rng.below(4) as usize]),
        _ => MetadataValue::Audio(vec![]),
    }
}

fn metadata(rng: &mut SimRng) -> Metadata {
    (0..rng.below(4)).map(|i| (format!("k{i}"), value(rng))).collect()
}

fn condition(rng: &mut SimRng, depth: usize) -> Condition {
    if depth == 0 || rng.coin() {
        let key = format!("k{}", rng.below(3));
        return Condition::Value(match rng.below(4) {
            0 => Predicate::Equals { key, value: value(rng) },
            1 => Predicate::NotEquals { key, value: value(rng) },
            2 => Predicate::In { key, values: (0..rng.below(3)).map(|_| value(rng)).collect() },
            _ => Predicate::NotIn { key, values: vec![value(rng)] },
        });
    }
    let (a, b) = (Box::new(condition(rng, depth - 1)), Box::new(condition(rng, depth - 1)));
    if rng.coin() { Condition::And(a, b) } else { Condition::Or(a, b) }
}

fn command(rng: &mut SimRng, variant: u64) -> Command {
    let store = StoreRef { schema: rng.coin().then(|| "t".to_string()), name: format!("s{}", rng.below(3)) };
    let nl = vec![
        NonLinearIndex::KdTree,
        NonLinearIndex::Hnsw(HnswConfig { m: 8, ef_construction: 40, ef_search: 20, metric: Metric::DotProduct }),
    ];
    match variant {
        0 => Command::CreateStore {
            store,
            dimension: 3,
            predicates: vec!["a".into()],
            non_linear: nl,
            error_if_exists: true,
        },
        1 => Command::CreatePredIndex { store, predicates: vec!["a".into(), "b".into()] },
        2 => Command::CreateNonLinearIndex { store, indexes: nl },
        3 => {
            Command::Set { store, entries: (0..5).map(|_| Entry { key: key(rng, 3), value: metadata(rng) }).collect() }
        }
        4 => Command::Upsert {
            store,
            condition: condition(rng, 4),
            new_key: rng.coin().then(|| key(rng, 3)),
            new_value: rng.coin().then(|| metadata(rng)),
            merge_metadata: rng.coin(),
        },
        5 => Command::DropPredIndex { store, predicates: vec!["a".into()], error_if_not_exists: rng.coin() },
        6 => Command::DropNonLinearIndex {
            store,
            kinds: vec![NonLinearKind::Hnsw, NonLinearKind::KdTree],
            error_if_not_exists: rng.coin(),
        },
        7 => Command::DelKey { store, keys: (0..3).map(|_| key(rng, 3)).collect() },
        8 => Command::DelPred { store, condition: condition(rng, 5) },
        9 => Command::DropStore { store, error_if_not_exists: rng.coin() },
        10 => Command::DropSchema { schema: "t".into() },
        11 => Command::ClearStore { store },
        _ => Command::Batch { commands: (0..rng.below(6)).map(|i| command(rng, (variant + i) % 12)).collect() },
    }
}

#[test]
fn every_command_round_trips_bit_for_bit() {
    let mut rng = SimRng::new(5);
    for round in 0..650 {
        let cmd = command(&mut rng, round % 13);
        let bytes = cmd.encode_command();
        assert_eq!(ahnlich_raft::raft::command::encoded_len(&cmd), bytes.len(), "{cmd:?}");
        let back = Command::decode_command(&bytes).unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        // Debug prints floats in a way that tells -0.0 from 0.0; NaN payloads are checked by
        // re-encoding, which must give the very same bytes.
        assert_eq!(back.encode_command(), bytes, "{cmd:?}");
        assert_eq!(format!("{back:?}"), format!("{cmd:?}"));
    }
}

#[test]
fn bytes_that_are_not_a_command_are_errors() {
    let mut rng = SimRng::new(9);
    let valid = command(&mut rng, 4).encode_command();
    assert!(Command::decode_command(&[]).is_err(), "an empty message has no kind");
    for cut in 0..valid.len() {
        let _ = Command::decode_command(&valid[..cut]);
    }
    for i in 0..valid.len() {
        let mut bad = valid.clone();
        bad[i] ^= 0xa5;
        let _ = Command::decode_command(&bad);
    }
    // An Equals predicate must carry exactly one value.
    use ahnlich_raft::proto::command as pb;
    use prost::Message;
    let two = pb::Command {
        kind: Some(pb::command::Kind::DelPred(pb::DelPred {
            store: Some(pb::StoreRef { schema: None, name: "s".into() }),
            condition: Some(pb::Condition {
                kind: Some(pb::condition::Kind::Value(pb::Predicate {
                    key: "k".into(),
                    op: pb::PredicateOp::Equals as i32,
                    values: vec![],
                })),
            }),
        })),
    };
    let err = Command::decode_command(&two.encode_to_vec()).expect_err("no value");
    assert!(err.contains("exactly one value"), "{err}");
    let unknown_op = pb::Predicate { key: "k".into(), op: 99, values: vec![] };
    let cmd = pb::Command {
        kind: Some(pb::command::Kind::DelPred(pb::DelPred {
            store: Some(pb::StoreRef { schema: None, name: "s".into() }),
            condition: Some(pb::Condition { kind: Some(pb::condition::Kind::Value(unknown_op)) }),
        })),
    };
    assert!(Command::decode_command(&cmd.encode_to_vec()).expect_err("op").contains("unknown predicate operator"));
}

#[test]
fn a_batch_inside_a_batch_is_refused() {
    use ahnlich_raft::proto::command as pb;
    use prost::Message;
    let clear = pb::Command {
        kind: Some(pb::command::Kind::ClearStore(pb::ClearStore {
            store: Some(pb::StoreRef { schema: None, name: "s".into() }),
        })),
    };
    let batch = |commands| pb::Command { kind: Some(pb::command::Kind::Batch(pb::Batch { commands })) };
    let flat = batch(vec![clear.clone(), clear.clone()]);
    assert!(
        matches!(Command::decode_command(&flat.encode_to_vec()), Ok(Command::Batch { commands }) if commands.len() == 2)
    );
    let nested = batch(vec![clear.clone(), flat]);
    let err = Command::decode_command(&nested.encode_to_vec()).expect_err("nested");
    assert!(err.contains("a batch holds a batch"), "{err}");
    let empty_kind = batch(vec![pb::Command { kind: None }]);
    assert!(Command::decode_command(&empty_kind.encode_to_vec()).expect_err("no kind").contains("no kind"));
}
