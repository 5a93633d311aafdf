//! Errors of the engine: each names what is wrong and maps to one gRPC status code.

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
    #[error("store {0} not found")]
    StoreNotFound(StoreRef),
    /// The store exists and the request said to fail if so.
    #[error("store {0} already exists")]
    StoreAlreadyExists(StoreRef),
    /// A vector has the wrong number of components.
    #[error("store {store} has dimension {expected}, but a key has {given} components")]
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
    #[error("predicate index {key:?} not found in store {store}")]
    PredicateNotFound {
        /// The store.
        store: StoreRef,
        /// The metadata key.
        key: String,
    },
    /// A non-linear index is missing.
    #[error("non-linear index {kind:?} not found in store {store}")]
    NonLinearIndexNotFound {
        /// The store.
        store: StoreRef,
        /// Which index.
        kind: NonLinearKind,
    },
    /// An Upsert condition matched other than exactly one entry.
    #[error("upsert condition must match exactly one entry in {store}, matched {count}")]
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
