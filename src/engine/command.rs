//! What the engine is asked to do: mutations ([`Command`], replicated through the log) and
//! reads ([`Query`]), and what it answers ([`Response`]).

use super::store::StoreInfo;
use super::types::{Algorithm, Condition, Entry, Metadata, NonLinearIndex, NonLinearKind, StoreRef};

/// A mutation. Applying the same sequence gives the same state and answers on every replica.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Creates a store (and its schema).
    CreateStore {
        /// The store.
        store: StoreRef,
        /// Vector dimension, > 0.
        dimension: usize,
        /// Metadata keys to index.
        predicates: Vec<String>,
        /// Non-linear indexes to build.
        non_linear: Vec<NonLinearIndex>,
        /// Fail with AlreadyExists instead of succeeding when it exists.
        error_if_exists: bool,
    },
    /// Indexes more metadata keys.
    CreatePredIndex {
        /// The store.
        store: StoreRef,
        /// Metadata keys.
        predicates: Vec<String>,
    },
    /// Builds non-linear indexes.
    CreateNonLinearIndex {
        /// The store.
        store: StoreRef,
        /// The indexes.
        indexes: Vec<NonLinearIndex>,
    },
    /// Inserts or overwrites entries, all or none.
    Set {
        /// The store.
        store: StoreRef,
        /// The entries.
        entries: Vec<Entry>,
    },
    /// Changes the one entry matching `condition`.
    Upsert {
        /// The store.
        store: StoreRef,
        /// Must match exactly one entry.
        condition: Condition,
        /// Moves the entry to this key.
        new_key: Option<Vec<f32>>,
        /// Replaces (or merges into) the entry's metadata.
        new_value: Option<Metadata>,
        /// Merge `new_value` into the old metadata instead of replacing it.
        merge_metadata: bool,
    },
    /// Stops indexing metadata keys.
    DropPredIndex {
        /// The store.
        store: StoreRef,
        /// Metadata keys.
        predicates: Vec<String>,
        /// NotFound if one is not indexed.
        error_if_not_exists: bool,
    },
    /// Drops non-linear indexes.
    DropNonLinearIndex {
        /// The store.
        store: StoreRef,
        /// The kinds to drop.
        kinds: Vec<NonLinearKind>,
        /// NotFound if one does not exist.
        error_if_not_exists: bool,
    },
    /// Deletes entries by key.
    DelKey {
        /// The store.
        store: StoreRef,
        /// The keys.
        keys: Vec<Vec<f32>>,
    },
    /// Deletes the entries matching a condition.
    DelPred {
        /// The store.
        store: StoreRef,
        /// The condition.
        condition: Condition,
    },
    /// Drops a store.
    DropStore {
        /// The store.
        store: StoreRef,
        /// NotFound if it does not exist.
        error_if_not_exists: bool,
    },
    /// Drops a schema and all its stores.
    DropSchema {
        /// The schema; not the default one.
        schema: String,
    },
    /// Removes every entry of a store, keeping the store and its indexes.
    ClearStore {
        /// The store.
        store: StoreRef,
    },
    /// Several commands proposed together (concurrent clients' writes share one log entry).
    /// Each is checked and applied on its own, in order, exactly as if it stood alone: one
    /// refused changes nothing and stops none of the others. A batch never holds a batch.
    Batch {
        /// The commands, in the order they apply.
        commands: Vec<Command>,
    },
}

/// A read.
#[derive(Clone, Debug, PartialEq)]
pub enum Query {
    /// Entries by key, in request order; missing keys skipped.
    GetKey {
        /// The store.
        store: StoreRef,
        /// The keys.
        keys: Vec<Vec<f32>>,
    },
    /// Entries matching a condition, in key order.
    GetPred {
        /// The store.
        store: StoreRef,
        /// The condition.
        condition: Condition,
    },
    /// The `closest_n` entries most similar to `search`, closest first.
    GetSimN {
        /// The store.
        store: StoreRef,
        /// The query vector.
        search: Vec<f32>,
        /// How many, > 0; fewer come back if the store holds fewer.
        closest_n: usize,
        /// How to rank.
        algorithm: Algorithm,
        /// Only entries matching it are candidates.
        condition: Option<Condition>,
    },
    /// A store's description.
    GetStore {
        /// The store.
        store: StoreRef,
    },
    /// Every store of a schema, sorted by name.
    ListStores {
        /// The schema; `None` or empty means the default one.
        schema: Option<String>,
    },
    /// A page of entries in key order.
    ListStoreEntries {
        /// The store.
        store: StoreRef,
        /// Where the previous page ended (its `next_cursor`).
        cursor: Option<String>,
        /// Page size, > 0.
        limit: usize,
        /// Only entries matching it.
        condition: Option<Condition>,
    },
}

/// An answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    /// Done, nothing to report.
    Unit,
    /// A [`Command::Batch`]'s results, one per command, in order.
    Batch(Vec<Result<Response, super::EngineError>>),
    /// How many things were created, removed or deleted.
    Count(usize),
    /// How many entries a Set (or Upsert) inserted and updated.
    Set {
        /// New keys.
        inserted: usize,
        /// Overwritten keys.
        updated: usize,
    },
    /// Entries.
    Entries(Vec<Entry>),
    /// Entries with their similarity scores, closest first.
    Similar(Vec<(Entry, f32)>),
    /// One store.
    Store(StoreInfo),
    /// Several stores.
    Stores(Vec<StoreInfo>),
    /// A page of entries, and where the next begins while more remain.
    Page {
        /// The entries.
        entries: Vec<Entry>,
        /// Pass as `cursor` for the next page.
        next_cursor: Option<String>,
    },
}

/// Entries or keys beyond which a Set or DelKey counts as long work.
const LONG_BATCH: usize = 64;

impl Command {
    /// Whether checking or applying this command may take long enough (a scan, an index
    /// build, a large batch, freeing a store) that it belongs off the threads that drive Raft.
    pub fn may_take_long(&self) -> bool {
        match self {
            Command::CreateStore { .. } | Command::DropPredIndex { .. } | Command::DropNonLinearIndex { .. } => false,
            Command::Set { entries, .. } => entries.len() > LONG_BATCH,
            Command::DelKey { keys, .. } => keys.len() > LONG_BATCH,
            Command::Batch { commands } => {
                let small_items: usize = commands
                    .iter()
                    .map(|c| match c {
                        Command::Set { entries, .. } => entries.len(),
                        Command::DelKey { keys, .. } => keys.len(),
                        _ => 1,
                    })
                    .sum();
                small_items > LONG_BATCH || commands.iter().any(Command::may_take_long)
            }
            Command::CreatePredIndex { .. }
            | Command::CreateNonLinearIndex { .. }
            | Command::Upsert { .. }
            | Command::DelPred { .. }
            | Command::DropStore { .. }
            | Command::DropSchema { .. }
            | Command::ClearStore { .. } => true,
        }
    }

    /// The command's name, as the API calls it.
    pub fn name(&self) -> &'static str {
        match self {
            Command::CreateStore { .. } => "CreateStore",
            Command::CreatePredIndex { .. } => "CreatePredIndex",
            Command::CreateNonLinearIndex { .. } => "CreateNonLinearAlgorithmIndex",
            Command::Set { .. } => "Set",
            Command::Upsert { .. } => "Upsert",
            Command::DropPredIndex { .. } => "DropPredIndex",
            Command::DropNonLinearIndex { .. } => "DropNonLinearAlgorithmIndex",
            Command::DelKey { .. } => "DelKey",
            Command::DelPred { .. } => "DelPred",
            Command::DropStore { .. } => "DropStore",
            Command::DropSchema { .. } => "DropSchema",
            Command::ClearStore { .. } => "ClearStore",
            Command::Batch { .. } => "Batch",
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::DropSchema { schema } => write!(f, "DropSchema {schema}"),
            Command::Set { store, entries } => write!(f, "Set {} entries in {store}", entries.len()),
            Command::DelKey { store, keys } => write!(f, "DelKey {} keys in {store}", keys.len()),
            Command::Batch { commands } => write!(f, "Batch of {} commands", commands.len()),
            Command::CreateStore { store, .. }
            | Command::CreatePredIndex { store, .. }
            | Command::CreateNonLinearIndex { store, .. }
            | Command::Upsert { store, .. }
            | Command::DropPredIndex { store, .. }
            | Command::DropNonLinearIndex { store, .. }
            | Command::DelPred { store, .. }
            | Command::DropStore { store, .. }
            | Command::ClearStore { store } => write!(f, "{} {store}", self.name()),
        }
    }
}
