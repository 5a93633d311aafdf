//! Errors of the engine: each names what is wrong and maps to one gRPC status code.
//!
//! Where upstream Ahnlich has the same error, the text is upstream's word for word (clients
//! match on it); the README's "Errors" table lists every one.

use super::types::{NonLinearKind, StoreRef};

/// The status class an error maps to on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// Bad arguments.
    InvalidArgument,
    /// A store, predicate index or non-linear index is missing.
    NotFound,
    /// A store already exists.
    AlreadyExists,
    /// A memory or size cap would be exceeded.
    ResourceExhausted,
}

/// Why an operation was refused. The same input gives the same error on every replica.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// A name is empty or otherwise unusable.
    #[error("invalid name: {0}")]
    InvalidName(String),
    /// The store does not exist.
    #[error("Store {} not found", UpstreamName(.0))]
    StoreNotFound(StoreRef),
    /// The store exists and the request said to fail if so.
    #[error("Store {} already exists", UpstreamName(.0))]
    StoreAlreadyExists(StoreRef),
    /// A vector has the wrong number of components.
    #[error("Store dimension is [{expected}], input dimension of [{given}] was specified")]
    DimensionMismatch {
        /// The store.
        store: StoreRef,
        /// Its dimension.
        expected: usize,
        /// The key's length.
        given: usize,
    },
    /// A vector has a NaN or infinite component.
    #[error("key component {index} is {value}: keys must be finite numbers")]
    NonFiniteComponent {
        /// Which component.
        index: usize,
        /// Its value, printed.
        value: String,
    },
    /// Any other bad argument, described.
    #[error("{0}")]
    InvalidArgument(String),
    /// A predicate index to drop does not exist.
    #[error("Predicate {key} not found in store, attempt CREATEPREDINDEX with predicate")]
    PredicateNotFound {
        /// The store.
        store: StoreRef,
        /// The metadata key.
        key: String,
    },
    /// A non-linear index is missing.
    #[error("Non linear algorithm {kind:?} not found in store, create store with support")]
    NonLinearIndexNotFound {
        /// The store.
        store: StoreRef,
        /// Which index.
        kind: NonLinearKind,
    },
    /// An Upsert condition matched other than exactly one entry.
    #[error("Predicate condition found {count} entries, expected exactly 1 for UPSERT")]
    UpsertMatchCount {
        /// The store.
        store: StoreRef,
        /// How many matched.
        count: usize,
    },
    /// The answer would be larger than a message may be.
    #[error("the answer would take about {bytes} bytes, more than the {limit}-byte message limit; {how}")]
    AnswerTooLarge {
        /// About how large the answer would be.
        bytes: usize,
        /// The limit.
        limit: usize,
        /// How to ask for less.
        how: &'static str,
    },
    /// The write would take the engine past its memory cap.
    #[error("memory cap of {cap} bytes would be exceeded: {used} in use, the write needs {needed} more")]
    MemoryCap {
        /// The cap.
        cap: usize,
        /// Bytes in use.
        used: usize,
        /// Bytes the write adds.
        needed: usize,
    },
}

/// A store as upstream prints it: its name type's `Debug` form, `StoreName { value: "x" }`.
/// Upstream has no schemas; a store outside the default one says which schema it is in.
struct UpstreamName<'a>(&'a StoreRef);

impl std::fmt::Display for UpstreamName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreName {{ value: {:?} }}", self.0.name)?;
        match &self.0.schema {
            Some(schema) if schema != super::types::DEFAULT_SCHEMA => write!(f, " in schema {schema:?}"),
            _ => Ok(()),
        }
    }
}

impl EngineError {
    /// The status class of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            EngineError::StoreNotFound(_)
            | EngineError::PredicateNotFound { .. }
            | EngineError::NonLinearIndexNotFound { .. } => ErrorCode::NotFound,
            EngineError::StoreAlreadyExists(_) => ErrorCode::AlreadyExists,
            EngineError::MemoryCap { .. } | EngineError::AnswerTooLarge { .. } => ErrorCode::ResourceExhausted,
            _ => ErrorCode::InvalidArgument,
        }
    }
}
