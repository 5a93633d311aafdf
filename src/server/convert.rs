//! Between Ahnlich's wire types and the engine's. Requests are checked as they are converted:
//! a missing or unknown part is InvalidArgument with a message naming it, never a panic.

use tonic::Status;

use crate::engine::{
    Algorithm, Command, Condition, EngineError, Entry, ErrorCode, HnswConfig, Metadata, MetadataValue, Metric,
    NonLinearIndex, NonLinearKind, Predicate, StoreInfo, StoreRef,
};
use crate::proto::ahnlich::algorithm::{algorithms as alg, nonlinear as nl};
use crate::proto::ahnlich::{db, keyval, metadata, predicates as pred};

fn bad(what: impl Into<String>) -> Status {
    Status::invalid_argument(what.into())
}

/// The command a CreateStore request asks for.
pub fn create_store(r: db::query::CreateStore) -> Result<Command, Status> {
    Ok(Command::CreateStore {
        store: store_ref(r.schema, r.store),
        dimension: r.dimension as usize,
        predicates: r.create_predicates,
        non_linear: r.non_linear_indices.into_iter().map(non_linear).collect::<Result<_, _>>()?,
        error_if_exists: r.error_if_exists,
    })
}

/// The command a Set request asks for.
pub fn set(r: db::query::Set) -> Result<Command, Status> {
    Ok(Command::Set { store: store_ref(r.schema, r.store), entries: entries(r.inputs)? })
}

/// A store reference from a request's schema and store name.
pub fn store_ref(schema: Option<String>, store: String) -> StoreRef {
    StoreRef { schema, name: store }
}

/// A key vector; absent is an error naming `what`.
pub fn key(k: Option<keyval::StoreKey>, what: &str) -> Result<Vec<f32>, Status> {
    k.map(|k| k.key).ok_or_else(|| bad(format!("{what} is missing")))
}

/// Every key of a list.
pub fn keys(ks: Vec<keyval::StoreKey>) -> Vec<Vec<f32>> {
    ks.into_iter().map(|k| k.key).collect()
}

fn value(v: metadata::MetadataValue) -> Result<MetadataValue, Status> {
    use metadata::metadata_value::Value;
    Ok(match v.value.ok_or_else(|| bad("a metadata value has no variant set"))? {
        Value::RawString(s) => MetadataValue::RawString(s),
        Value::Image(b) => MetadataValue::Image(b),
        Value::Audio(b) => MetadataValue::Audio(b),
    })
}

/// Metadata of an entry (absent means none).
pub fn metadata(v: Option<keyval::StoreValue>) -> Result<Metadata, Status> {
    let mut metadata = Metadata::new();
    // Inserted one by one: the pairs come in key order, and a few inserts into a small map cost
    // less than collecting, sorting and bulk-building one.
    for (key, v) in v.map(|v| v.value).unwrap_or_default() {
        metadata.insert(key, value(v)?);
    }
    Ok(metadata)
}

/// Entries of a Set.
pub fn entries(inputs: Vec<keyval::DbStoreEntry>) -> Result<Vec<Entry>, Status> {
    inputs.into_iter().map(|e| Ok(Entry { key: key(e.key, "an entry's key")?, value: metadata(e.value)? })).collect()
}

fn predicate(p: pred::Predicate) -> Result<Predicate, Status> {
    use pred::predicate::Kind;
    let one = |v: Option<metadata::MetadataValue>, key: &str| {
        value(v.ok_or_else(|| bad(format!("the predicate on {key:?} has no value")))?)
    };
    Ok(match p.kind.ok_or_else(|| bad("a predicate has no kind set"))? {
        Kind::Equals(p) => Predicate::Equals { value: one(p.value, &p.key)?, key: p.key },
        Kind::NotEquals(p) => Predicate::NotEquals { value: one(p.value, &p.key)?, key: p.key },
        Kind::In(p) => Predicate::In { values: p.values.into_iter().map(value).collect::<Result<_, _>>()?, key: p.key },
        Kind::NotIn(p) => {
            Predicate::NotIn { values: p.values.into_iter().map(value).collect::<Result<_, _>>()?, key: p.key }
        }
    })
}

/// A predicate condition; absent is an error naming `what`.
pub fn condition(c: Option<pred::PredicateCondition>, what: &str) -> Result<Condition, Status> {
    use pred::predicate_condition::Kind;
    let c = c.ok_or_else(|| bad(format!("{what} is missing")))?;
    Ok(match c.kind.ok_or_else(|| bad(format!("{what} has no kind set")))? {
        Kind::Value(p) => Condition::Value(predicate(p)?),
        Kind::And(a) => Condition::And(
            Box::new(condition(a.left.map(|b| *b), "the left side of And")?),
            Box::new(condition(a.right.map(|b| *b), "the right side of And")?),
        ),
        Kind::Or(o) => Condition::Or(
            Box::new(condition(o.left.map(|b| *b), "the left side of Or")?),
            Box::new(condition(o.right.map(|b| *b), "the right side of Or")?),
        ),
    })
}

fn metric(d: i32) -> Result<Metric, Status> {
    match alg::DistanceMetric::try_from(d).map_err(|_| bad(format!("unknown distance metric {d}")))? {
        alg::DistanceMetric::Euclidean => Ok(Metric::Euclidean),
        alg::DistanceMetric::DotProduct => Ok(Metric::DotProduct),
        alg::DistanceMetric::Cosine => Ok(Metric::Cosine),
    }
}

/// A non-linear index to build. Unset HNSW parameters take the engine's defaults.
pub fn non_linear(i: nl::NonLinearIndex) -> Result<NonLinearIndex, Status> {
    use nl::non_linear_index::Index;
    Ok(match i.index.ok_or_else(|| bad("a non-linear index has no kind set"))? {
        Index::Kdtree(_) => NonLinearIndex::KdTree,
        Index::Hnsw(c) => {
            let d = HnswConfig::default();
            NonLinearIndex::Hnsw(HnswConfig {
                m: c.maximum_connections.map_or(d.m, |m| m as usize),
                ef_construction: c.ef_construction.map_or(d.ef_construction, |e| e as usize),
                ef_search: d.ef_search,
                metric: c.distance.map_or(Ok(d.metric), metric)?,
            })
        }
    })
}

/// A non-linear index kind to drop.
pub fn non_linear_kind(k: i32) -> Result<NonLinearKind, Status> {
    match nl::NonLinearAlgorithm::try_from(k).map_err(|_| bad(format!("unknown non-linear algorithm {k}")))? {
        nl::NonLinearAlgorithm::KdTreeAlgorithm => Ok(NonLinearKind::KdTree),
        nl::NonLinearAlgorithm::HnswAlgorithm => Ok(NonLinearKind::Hnsw),
    }
}

/// The GetSimN algorithm.
pub fn algorithm(a: i32, ef_search: Option<u32>) -> Result<Algorithm, Status> {
    Ok(match alg::Algorithm::try_from(a).map_err(|_| bad(format!("unknown algorithm {a}")))? {
        alg::Algorithm::EuclideanDistance => Algorithm::Linear(Metric::Euclidean),
        alg::Algorithm::DotProductSimilarity => Algorithm::Linear(Metric::DotProduct),
        alg::Algorithm::CosineSimilarity => Algorithm::Linear(Metric::Cosine),
        alg::Algorithm::KdTree => Algorithm::KdTree,
        alg::Algorithm::Hnsw => Algorithm::Hnsw { ef_search: ef_search.map(|e| e as usize) },
    })
}

fn value_out(v: MetadataValue) -> metadata::MetadataValue {
    use metadata::metadata_value::Value;
    metadata::MetadataValue {
        value: Some(match v {
            MetadataValue::RawString(s) => Value::RawString(s),
            MetadataValue::Image(b) => Value::Image(b),
            MetadataValue::Audio(b) => Value::Audio(b),
        }),
    }
}

/// An entry as the API returns it.
pub fn entry_out(e: Entry) -> keyval::DbStoreEntry {
    keyval::DbStoreEntry {
        key: Some(keyval::StoreKey { key: e.key }),
        value: Some(keyval::StoreValue { value: e.value.into_iter().map(|(k, v)| (k, value_out(v))).collect() }),
    }
}

fn non_linear_out(i: NonLinearIndex) -> nl::NonLinearIndex {
    use nl::non_linear_index::Index;
    let index = match i {
        NonLinearIndex::KdTree => Index::Kdtree(nl::KdTreeConfig {}),
        NonLinearIndex::Hnsw(c) => Index::Hnsw(nl::HnswConfig {
            distance: Some(match c.metric {
                Metric::Euclidean => alg::DistanceMetric::Euclidean,
                Metric::DotProduct => alg::DistanceMetric::DotProduct,
                Metric::Cosine => alg::DistanceMetric::Cosine,
            } as i32),
            ef_construction: Some(c.ef_construction as u32),
            maximum_connections: Some(c.m as u32),
            maximum_connections_zero: Some(2 * c.m as u32),
            extend_candidates: Some(false),
            keep_pruned_connections: Some(false),
        }),
    };
    nl::NonLinearIndex { index: Some(index) }
}

/// A store's description as the API returns it.
pub fn store_info_out(i: StoreInfo) -> db::server::StoreInfo {
    db::server::StoreInfo {
        name: i.name,
        len: i.len as u64,
        size_in_bytes: i.size_in_bytes as u64,
        non_linear_indices: i.non_linear_indexes.into_iter().map(non_linear_out).collect(),
        predicate_indices: i.predicate_indexes,
        dimension: i.dimension as u32,
    }
}

/// The gRPC status of an engine error: its code, and its message naming what is wrong.
pub fn status(e: EngineError) -> Status {
    let message = e.to_string();
    match e.code() {
        ErrorCode::InvalidArgument => Status::invalid_argument(message),
        ErrorCode::NotFound => Status::not_found(message),
        ErrorCode::AlreadyExists => Status::already_exists(message),
        ErrorCode::ResourceExhausted => Status::resource_exhausted(message),
    }
}
