//! The engine's data model, in its own Rust types (no generated proto types here).

use std::collections::BTreeMap;

/// The schema an absent schema name means.
pub const DEFAULT_SCHEMA: &str = "public";

/// A metadata value: text or opaque bytes. Ordered, so indexes and results are deterministic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MetadataValue {
    /// A text value.
    RawString(String),
    /// Image bytes.
    Image(Vec<u8>),
    /// Audio bytes.
    Audio(Vec<u8>),
}

impl MetadataValue {
    /// Bytes this value accounts for against the memory cap.
    pub fn accounted_bytes(&self) -> usize {
        match self {
            MetadataValue::RawString(s) => s.len(),
            MetadataValue::Image(b) | MetadataValue::Audio(b) => b.len(),
        }
    }
}

/// An entry's value: metadata keys to values, in key order.
pub type Metadata = BTreeMap<String, MetadataValue>;

/// A stored entry: its key vector and its metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The key vector, exactly the store's dimension long.
    pub key: Vec<f32>,
    /// The metadata.
    pub value: Metadata,
}

/// Names a store: its schema (absent = [`DEFAULT_SCHEMA`]) and its name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoreRef {
    /// The schema; `None` means [`DEFAULT_SCHEMA`].
    pub schema: Option<String>,
    /// The store's name.
    pub name: String,
}

impl StoreRef {
    /// A store in the default schema.
    pub fn public(name: impl Into<String>) -> Self {
        Self { schema: None, name: name.into() }
    }

    /// The schema this reference resolves to.
    pub fn schema(&self) -> &str {
        self.schema.as_deref().unwrap_or(DEFAULT_SCHEMA)
    }
}

impl std::fmt::Display for StoreRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema(), self.name)
    }
}

/// One comparison on one metadata key. An entry without the key matches none of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Predicate {
    /// The entry has `key` equal to `value`.
    Equals {
        /// Metadata key.
        key: String,
        /// Value compared with.
        value: MetadataValue,
    },
    /// The entry has `key` with a value other than `value`.
    NotEquals {
        /// Metadata key.
        key: String,
        /// Value compared with.
        value: MetadataValue,
    },
    /// The entry has `key` with one of `values`.
    In {
        /// Metadata key.
        key: String,
        /// Values compared with.
        values: Vec<MetadataValue>,
    },
    /// The entry has `key` with none of `values`.
    NotIn {
        /// Metadata key.
        key: String,
        /// Values compared with.
        values: Vec<MetadataValue>,
    },
}

impl Predicate {
    /// The metadata key the predicate reads.
    pub fn key(&self) -> &str {
        match self {
            Predicate::Equals { key, .. }
            | Predicate::NotEquals { key, .. }
            | Predicate::In { key, .. }
            | Predicate::NotIn { key, .. } => key,
        }
    }

    /// Whether an entry whose `key` holds `value` satisfies the predicate.
    pub fn accepts(&self, value: &MetadataValue) -> bool {
        match self {
            Predicate::Equals { value: v, .. } => value == v,
            Predicate::NotEquals { value: v, .. } => value != v,
            Predicate::In { values, .. } => values.contains(value),
            Predicate::NotIn { values, .. } => !values.contains(value),
        }
    }
}

/// Predicates combined with And / Or.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// A single predicate.
    Value(Predicate),
    /// Both must hold.
    And(Box<Condition>, Box<Condition>),
    /// Either must hold.
    Or(Box<Condition>, Box<Condition>),
}

impl Condition {
    /// Whether `metadata` satisfies the condition.
    pub fn accepts(&self, metadata: &Metadata) -> bool {
        match self {
            Condition::Value(p) => metadata.get(p.key()).is_some_and(|v| p.accepts(v)),
            Condition::And(a, b) => a.accepts(metadata) && b.accepts(metadata),
            Condition::Or(a, b) => a.accepts(metadata) || b.accepts(metadata),
        }
    }

    /// Nesting depth (a single predicate is 1).
    pub fn depth(&self) -> usize {
        match self {
            Condition::Value(_) => 1,
            Condition::And(a, b) | Condition::Or(a, b) => 1 + a.depth().max(b.depth()),
        }
    }
}

/// A linear similarity metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// Cosine similarity: higher is closer.
    Cosine,
    /// Euclidean distance: lower is closer.
    Euclidean,
    /// Dot product: higher is closer.
    DotProduct,
}

impl Metric {
    /// Whether a higher score means closer.
    pub fn higher_is_closer(self) -> bool {
        !matches!(self, Metric::Euclidean)
    }
}

/// The parameters of an HNSW index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HnswConfig {
    /// Links per node per layer (layer 0 keeps twice as many).
    pub m: usize,
    /// Candidate list size while building.
    pub ef_construction: usize,
    /// Default candidate list size while searching (a request may override it).
    pub ef_search: usize,
    /// The distance the graph is built and searched with.
    pub metric: Metric,
}

impl Default for HnswConfig {
    fn default() -> Self {
        Self { m: 16, ef_construction: 100, ef_search: 64, metric: Metric::Euclidean }
    }
}

/// A non-linear index a store may keep (at most one of each kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NonLinearIndex {
    /// An exact k-d tree over Euclidean distance.
    KdTree,
    /// An approximate HNSW graph.
    Hnsw(HnswConfig),
}

/// The kind of a non-linear index, without parameters (what dropping one names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NonLinearKind {
    /// The k-d tree.
    KdTree,
    /// The HNSW graph.
    Hnsw,
}

impl NonLinearIndex {
    /// Its kind.
    pub fn kind(&self) -> NonLinearKind {
        match self {
            NonLinearIndex::KdTree => NonLinearKind::KdTree,
            NonLinearIndex::Hnsw(_) => NonLinearKind::Hnsw,
        }
    }
}

/// How GetSimN ranks candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// A linear scan with a metric.
    Linear(Metric),
    /// The store's k-d tree (Euclidean, exact).
    KdTree,
    /// The store's HNSW graph (approximate).
    Hnsw {
        /// Candidate list size; the index's default when `None`.
        ef_search: Option<usize>,
    },
}
