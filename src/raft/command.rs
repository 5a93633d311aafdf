//! The engine's [`Command`] in its stable log encoding (`proto/ahnlich_raft/command.proto`).
//! Decoding is total: anything that is not a well-formed command of this version is an error
//! naming what is wrong, never a panic and never a guess.

use bytes::Bytes;
use prost::Message;

use super::codec::{self, CommandCodec};
use super::set_decoding;
use super::set_encoding::{BatchEncoding, Member, SetEncoding};
use crate::engine::{
    Command, Condition, Entry, HnswConfig, Metadata, MetadataValue, Metric, NonLinearIndex, NonLinearKind, Predicate,
    StoreRef,
};
use crate::proto::command as pb;

impl CommandCodec for Command {
    fn encode_command(&self) -> Vec<u8> {
        match Direct::of(self) {
            Some(encoding) => {
                let mut buf = Vec::with_capacity(encoding.len());
                encoding.write(&mut buf);
                buf
            }
            None => message(self).encode_to_vec(),
        }
    }

    fn decode_command(bytes: &[u8]) -> Result<Self, String> {
        set_decoding::read_direct(bytes).map_or_else(|| decode_with_prost(bytes), Ok)
    }
}

/// The command `bytes` encode, read through prost's generated types: any form protobuf allows,
/// and every error named.
pub(super) fn decode_with_prost(bytes: &[u8]) -> Result<Command, String> {
    let msg = pb::Command::decode(bytes).map_err(|e| format!("not a command message: {e}"))?;
    decode(msg.kind.ok_or("command has no kind (written by a newer version?)")?)
}

/// The encoding of the commands that carry the written bytes (a Set, and a batch of concurrent
/// writes), written straight from the engine's types; the same bytes prost writes for
/// [`message`] of them.
enum Direct<'a> {
    Set(SetEncoding<'a>),
    Batch(BatchEncoding<'a>),
}

impl<'a> Direct<'a> {
    /// `cmd`'s direct encoding, if it has one.
    fn of(cmd: &'a Command) -> Option<Self> {
        match cmd {
            Command::Set { store, entries } => Some(Direct::Set(SetEncoding::new(store, entries))),
            Command::Batch { commands } => Some(Direct::Batch(BatchEncoding::new(
                commands
                    .iter()
                    .map(|c| match c {
                        Command::Set { store, entries } => Member::Set(SetEncoding::new(store, entries)),
                        other => Member::Encoded(message(other).encode_to_vec()),
                    })
                    .collect(),
            ))),
            _ => None,
        }
    }

    fn len(&self) -> usize {
        match self {
            Direct::Set(set) => set.len(),
            Direct::Batch(batch) => batch.len(),
        }
    }

    fn write(&self, buf: &mut impl bytes::BufMut) {
        match self {
            Direct::Set(set) => set.write(buf),
            Direct::Batch(batch) => batch.write(buf),
        }
    }
}

/// The length of `cmd`'s encoding ([`CommandCodec::encode_command`]), computed for a Set or a
/// batch (the writes that matter for speed) without encoding it; other commands are encoded to
/// be measured.
pub fn encoded_len(cmd: &Command) -> usize {
    match Direct::of(cmd) {
        Some(encoding) => encoding.len(),
        None => cmd.encode_command().len(),
    }
}

/// The entry payload of `cmd` ([`codec::normal_payload`] of its encoding), written in one pass
/// into a buffer of its final size; a Set or a batch straight from the engine's types.
pub fn payload_of(cmd: &Command) -> Bytes {
    match Direct::of(cmd) {
        Some(encoding) => codec::normal_payload_from(encoding.len(), |buf| encoding.write(buf)),
        None => codec::normal_payload_of(&message(cmd)),
    }
}

/// `cmd` as the message [`CommandCodec::encode_command`] encodes.
pub(super) fn message(cmd: &Command) -> pb::Command {
    pb::Command { kind: Some(encode(cmd)) }
}

fn store(r: &StoreRef) -> Option<pb::StoreRef> {
    Some(pb::StoreRef { schema: r.schema.clone(), name: r.name.clone() })
}

fn key(k: &[f32]) -> pb::Key {
    pb::Key { components: k.to_vec() }
}

fn value(v: &MetadataValue) -> pb::MetadataValue {
    use pb::metadata_value::Value;
    let value = match v {
        MetadataValue::RawString(s) => Value::RawString(s.clone()),
        MetadataValue::Image(b) => Value::Image(b.clone()),
        MetadataValue::Audio(b) => Value::Audio(b.clone()),
    };
    pb::MetadataValue { value: Some(value) }
}

fn metadata(m: &Metadata) -> pb::Metadata {
    pb::Metadata {
        entries: m.iter().map(|(k, v)| pb::MetadataEntry { key: k.clone(), value: Some(value(v)) }).collect(),
    }
}

fn condition(c: &Condition) -> pb::Condition {
    use pb::condition::Kind;
    let pair = |a: &Condition, b: &Condition| pb::ConditionPair {
        left: Some(Box::new(condition(a))),
        right: Some(Box::new(condition(b))),
    };
    let kind = match c {
        Condition::Value(p) => {
            let (op, values) = match p {
                Predicate::Equals { value: v, .. } => (pb::PredicateOp::Equals, vec![value(v)]),
                Predicate::NotEquals { value: v, .. } => (pb::PredicateOp::NotEquals, vec![value(v)]),
                Predicate::In { values, .. } => (pb::PredicateOp::In, values.iter().map(value).collect()),
                Predicate::NotIn { values, .. } => (pb::PredicateOp::NotIn, values.iter().map(value).collect()),
            };
            Kind::Value(pb::Predicate { key: p.key().to_owned(), op: op as i32, values })
        }
        Condition::And(a, b) => Kind::And(Box::new(pair(a, b))),
        Condition::Or(a, b) => Kind::Or(Box::new(pair(a, b))),
    };
    pb::Condition { kind: Some(kind) }
}

fn metric(m: Metric) -> pb::Metric {
    match m {
        Metric::Cosine => pb::Metric::Cosine,
        Metric::Euclidean => pb::Metric::Euclidean,
        Metric::DotProduct => pb::Metric::DotProduct,
    }
}

fn non_linear(i: &NonLinearIndex) -> pb::NonLinearIndex {
    use pb::non_linear_index::Kind;
    let kind = match i {
        NonLinearIndex::KdTree => Kind::KdTree(pb::KdTree {}),
        NonLinearIndex::Hnsw(c) => Kind::Hnsw(pb::HnswConfig {
            m: c.m as u32,
            ef_construction: c.ef_construction as u32,
            ef_search: c.ef_search as u32,
            metric: metric(c.metric) as i32,
        }),
    };
    pb::NonLinearIndex { kind: Some(kind) }
}

fn kind(k: NonLinearKind) -> i32 {
    match k {
        NonLinearKind::KdTree => pb::NonLinearKind::KdTree as i32,
        NonLinearKind::Hnsw => pb::NonLinearKind::Hnsw as i32,
    }
}

fn encode(cmd: &Command) -> pb::command::Kind {
    use pb::command::Kind;
    match cmd {
        Command::CreateStore { store: s, dimension, predicates, non_linear: nl, error_if_exists } => {
            Kind::CreateStore(pb::CreateStore {
                store: store(s),
                dimension: *dimension as u64,
                predicates: predicates.clone(),
                non_linear: nl.iter().map(non_linear).collect(),
                error_if_exists: *error_if_exists,
            })
        }
        Command::CreatePredIndex { store: s, predicates } => {
            Kind::CreatePredIndex(pb::CreatePredIndex { store: store(s), predicates: predicates.clone() })
        }
        Command::CreateNonLinearIndex { store: s, indexes } => Kind::CreateNonLinearIndex(pb::CreateNonLinearIndex {
            store: store(s),
            indexes: indexes.iter().map(non_linear).collect(),
        }),
        Command::Set { store: s, entries } => Kind::Set(pb::Set {
            store: store(s),
            entries: entries
                .iter()
                .map(|e| pb::Entry { key: Some(key(&e.key)), value: Some(metadata(&e.value)) })
                .collect(),
        }),
        Command::Upsert { store: s, condition: c, new_key, new_value, merge_metadata } => Kind::Upsert(pb::Upsert {
            store: store(s),
            condition: Some(condition(c)),
            new_key: new_key.as_deref().map(key),
            new_value: new_value.as_ref().map(metadata),
            merge_metadata: *merge_metadata,
        }),
        Command::DropPredIndex { store: s, predicates, error_if_not_exists } => {
            Kind::DropPredIndex(pb::DropPredIndex {
                store: store(s),
                predicates: predicates.clone(),
                error_if_not_exists: *error_if_not_exists,
            })
        }
        Command::DropNonLinearIndex { store: s, kinds, error_if_not_exists } => {
            Kind::DropNonLinearIndex(pb::DropNonLinearIndex {
                store: store(s),
                kinds: kinds.iter().map(|k| kind(*k)).collect(),
                error_if_not_exists: *error_if_not_exists,
            })
        }
        Command::DelKey { store: s, keys } => {
            Kind::DelKey(pb::DelKey { store: store(s), keys: keys.iter().map(|k| key(k)).collect() })
        }
        Command::DelPred { store: s, condition: c } => {
            Kind::DelPred(pb::DelPred { store: store(s), condition: Some(condition(c)) })
        }
        Command::DropStore { store: s, error_if_not_exists } => {
            Kind::DropStore(pb::DropStore { store: store(s), error_if_not_exists: *error_if_not_exists })
        }
        Command::DropSchema { schema } => Kind::DropSchema(pb::DropSchema { schema: schema.clone() }),
        Command::ClearStore { store: s } => Kind::ClearStore(pb::ClearStore { store: store(s) }),
        Command::Batch { commands } => Kind::Batch(pb::Batch {
            commands: commands.iter().map(|c| pb::Command { kind: Some(encode(c)) }).collect(),
        }),
    }
}

fn need<T>(field: Option<T>, what: &str) -> Result<T, String> {
    field.ok_or_else(|| format!("{what} is missing"))
}

fn d_store(r: Option<pb::StoreRef>) -> Result<StoreRef, String> {
    let r = need(r, "store")?;
    Ok(StoreRef { schema: r.schema, name: r.name })
}

fn d_value(v: pb::MetadataValue) -> Result<MetadataValue, String> {
    use pb::metadata_value::Value;
    Ok(match need(v.value, "metadata value")? {
        Value::RawString(s) => MetadataValue::RawString(s),
        Value::Image(b) => MetadataValue::Image(b),
        Value::Audio(b) => MetadataValue::Audio(b),
    })
}

fn d_metadata(m: pb::Metadata) -> Result<Metadata, String> {
    m.entries.into_iter().map(|e| Ok((e.key, d_value(need(e.value, "metadata value")?)?))).collect()
}

fn d_condition(c: pb::Condition) -> Result<Condition, String> {
    use pb::condition::Kind;
    let pair = |p: pb::ConditionPair| -> Result<(Box<Condition>, Box<Condition>), String> {
        Ok((
            Box::new(d_condition(*need(p.left, "condition operand")?)?),
            Box::new(d_condition(*need(p.right, "condition operand")?)?),
        ))
    };
    Ok(match need(c.kind, "condition")? {
        Kind::Value(p) => {
            let mut values = p.values.into_iter().map(d_value).collect::<Result<Vec<_>, _>>()?;
            let single = |values: &mut Vec<MetadataValue>| match values.len() {
                1 => Ok(values.remove(0)),
                n => Err(format!("predicate on {:?} needs exactly one value, has {n}", p.key)),
            };
            let op = pb::PredicateOp::try_from(p.op).map_err(|_| format!("unknown predicate operator {}", p.op))?;
            Condition::Value(match op {
                pb::PredicateOp::Equals => Predicate::Equals { value: single(&mut values)?, key: p.key },
                pb::PredicateOp::NotEquals => Predicate::NotEquals { value: single(&mut values)?, key: p.key },
                pb::PredicateOp::In => Predicate::In { key: p.key, values },
                pb::PredicateOp::NotIn => Predicate::NotIn { key: p.key, values },
            })
        }
        Kind::And(p) => {
            let (a, b) = pair(*p)?;
            Condition::And(a, b)
        }
        Kind::Or(p) => {
            let (a, b) = pair(*p)?;
            Condition::Or(a, b)
        }
    })
}

fn d_non_linear(i: pb::NonLinearIndex) -> Result<NonLinearIndex, String> {
    use pb::non_linear_index::Kind;
    Ok(match need(i.kind, "non-linear index")? {
        Kind::KdTree(_) => NonLinearIndex::KdTree,
        Kind::Hnsw(c) => {
            let metric = match pb::Metric::try_from(c.metric).map_err(|_| format!("unknown metric {}", c.metric))? {
                pb::Metric::Cosine => Metric::Cosine,
                pb::Metric::Euclidean => Metric::Euclidean,
                pb::Metric::DotProduct => Metric::DotProduct,
            };
            NonLinearIndex::Hnsw(HnswConfig {
                m: c.m as usize,
                ef_construction: c.ef_construction as usize,
                ef_search: c.ef_search as usize,
                metric,
            })
        }
    })
}

fn d_kind(k: i32) -> Result<NonLinearKind, String> {
    match pb::NonLinearKind::try_from(k).map_err(|_| format!("unknown non-linear index kind {k}"))? {
        pb::NonLinearKind::KdTree => Ok(NonLinearKind::KdTree),
        pb::NonLinearKind::Hnsw => Ok(NonLinearKind::Hnsw),
    }
}

fn decode(kind: pb::command::Kind) -> Result<Command, String> {
    use pb::command::Kind;
    Ok(match kind {
        Kind::CreateStore(c) => Command::CreateStore {
            store: d_store(c.store)?,
            dimension: usize::try_from(c.dimension).map_err(|_| format!("dimension {} is too large", c.dimension))?,
            predicates: c.predicates,
            non_linear: c.non_linear.into_iter().map(d_non_linear).collect::<Result<_, _>>()?,
            error_if_exists: c.error_if_exists,
        },
        Kind::CreatePredIndex(c) => Command::CreatePredIndex { store: d_store(c.store)?, predicates: c.predicates },
        Kind::CreateNonLinearIndex(c) => Command::CreateNonLinearIndex {
            store: d_store(c.store)?,
            indexes: c.indexes.into_iter().map(d_non_linear).collect::<Result<_, _>>()?,
        },
        Kind::Set(c) => Command::Set {
            store: d_store(c.store)?,
            entries: c
                .entries
                .into_iter()
                .map(|e| {
                    Ok(Entry {
                        key: need(e.key, "entry key")?.components,
                        value: e.value.map(d_metadata).transpose()?.unwrap_or_default(),
                    })
                })
                .collect::<Result<_, String>>()?,
        },
        Kind::Upsert(c) => Command::Upsert {
            store: d_store(c.store)?,
            condition: d_condition(need(c.condition, "upsert condition")?)?,
            new_key: c.new_key.map(|k| k.components),
            new_value: c.new_value.map(d_metadata).transpose()?,
            merge_metadata: c.merge_metadata,
        },
        Kind::DropPredIndex(c) => Command::DropPredIndex {
            store: d_store(c.store)?,
            predicates: c.predicates,
            error_if_not_exists: c.error_if_not_exists,
        },
        Kind::DropNonLinearIndex(c) => Command::DropNonLinearIndex {
            store: d_store(c.store)?,
            kinds: c.kinds.into_iter().map(d_kind).collect::<Result<_, _>>()?,
            error_if_not_exists: c.error_if_not_exists,
        },
        Kind::DelKey(c) => {
            Command::DelKey { store: d_store(c.store)?, keys: c.keys.into_iter().map(|k| k.components).collect() }
        }
        Kind::DelPred(c) => Command::DelPred {
            store: d_store(c.store)?,
            condition: d_condition(need(c.condition, "delete condition")?)?,
        },
        Kind::DropStore(c) => {
            Command::DropStore { store: d_store(c.store)?, error_if_not_exists: c.error_if_not_exists }
        }
        Kind::DropSchema(c) => Command::DropSchema { schema: c.schema },
        Kind::ClearStore(c) => Command::ClearStore { store: d_store(c.store)? },
        Kind::Batch(b) => Command::Batch {
            commands: b
                .commands
                .into_iter()
                .map(|c| match c.kind.ok_or("batched command has no kind")? {
                    Kind::Batch(_) => Err("a batch holds a batch".to_string()),
                    kind => decode(kind),
                })
                .collect::<Result<_, _>>()?,
        },
    })
}
