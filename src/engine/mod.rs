//! The Ahnlich engine: every DB operation with Ahnlich's semantics, pure and synchronous (no
//! I/O, no Raft, no generated proto types).
//!
//! - **Determinism.** The same sequence of [`Command`]s gives the same state and the same
//!   answers on every replica: no clock, no unseeded randomness, no hash-order iteration that
//!   reaches a result (maps that order results are `BTreeMap`s; results are sorted by a total
//!   order whose last tie-break is the key's bit pattern).
//! - **Validate, then apply.** [`Engine::validate`] checks a mutation against the current state
//!   without changing anything, so the server can refuse a bad write before proposing it;
//!   [`Engine::apply`] runs the same checks again and then mutates, so a replica applying a
//!   committed command either changes nothing and returns the same error as every other
//!   replica, or applies it whole.
//! - **Concurrency.** Each store sits behind its own read-write lock; the map of stores behind
//!   another, held only to find a store. Reads of one store never wait for writes to another,
//!   and reads of one store run in parallel. Mutations are applied one at a time (as a Raft
//!   state machine applies them anyway).
//! - **Snapshots.** [`Engine::capture`] takes the state as it is now by cloning one `Arc` per
//!   store: nothing waits on it. A store written while a capture still holds it copies only
//!   the parts the write touches (a ~1 MiB chunk of vectors, of norms or of metadata, a shard
//!   of the key lookup or of a predicate index, a block of slots, a chunk of graph nodes; see
//!   `chunked`), never a whole structure; so the capture never sees a later write, and the
//!   first write after it costs about a millisecond at 1M entries.
//! - **Input rules.** Key components must be finite (NaN and ±∞ are InvalidArgument), names
//!   and metadata keys non-empty, dimensions in `1..=Limits::max_dimension`, conditions at most
//!   `Limits::max_condition_depth` deep, `closest_n` positive (fewer results come back when the
//!   store holds fewer; no request sizes an allocation beyond the store), a query's HNSW
//!   `ef_search` within the bounds an index is created with. Cosine similarity of a zero query vector is InvalidArgument; a stored
//!   zero vector scores 0. An entry lacking a predicate's metadata key matches neither
//!   `Equals` nor `NotEquals` (nor `In` / `NotIn`), as upstream Ahnlich does.

mod catalog;
mod chunked;
mod command;
mod error;
mod hnsw;
mod image;
mod image_parts;
mod kdtree;
mod key_hash;
mod key_lookup;
mod meta_arena;
mod rows;
mod similarity;
mod store;
mod types;

use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use self::catalog::{Catalog, SharedStore};
pub use self::command::{Command, Query, Response};
pub use self::error::{EngineError, ErrorCode};
pub use self::image::{ArchivedEngineImage, Capture, EngineImage};
pub use self::image_parts::{ArchiveImage, EngineImageParts};
pub use self::rows::Backing;
use self::store::EntryMeasures;
pub use self::store::{ENTRY_OVERHEAD, SetPlan, Store, StoreInfo};
pub use self::types::{
    Algorithm, Condition, DEFAULT_SCHEMA, Entry, HnswConfig, Metadata, MetadataValue, Metric, NonLinearIndex,
    NonLinearKind, Predicate, StoreRef,
};

/// Bounds on what the engine accepts.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Total bytes all stores may hold (each entry charged its vector, its metadata and
    /// [`ENTRY_OVERHEAD`]); `None`: no cap.
    pub max_memory_bytes: Option<usize>,
    /// Largest vector dimension a store may have.
    pub max_dimension: usize,
    /// Deepest predicate condition accepted.
    pub max_condition_depth: usize,
    /// Longest store, schema or metadata key name, in bytes.
    pub max_name_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_memory_bytes: None, max_dimension: 65_536, max_condition_depth: 64, max_name_len: 1024 }
    }
}

/// The engine: every schema and store.
#[derive(Default)]
pub struct Engine {
    limits: Limits,
    stores: RwLock<Catalog>,
    writes: Mutex<()>,
    used_bytes: Mutex<usize>,
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The `ef` (search breadth) an HNSW index takes, at creation and per query.
const HNSW_EF_RANGE: std::ops::RangeInclusive<usize> = 1..=10_000;

impl Engine {
    /// An empty engine with `limits`.
    pub fn new(limits: Limits) -> Self {
        Self { limits, ..Self::default() }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Bytes charged against the memory cap.
    pub fn used_bytes(&self) -> usize {
        *lock(&self.used_bytes)
    }

    fn store(&self, r: &StoreRef) -> Result<SharedStore, EngineError> {
        self.check_store_ref(r)?;
        read(&self.stores).get(r.schema(), &r.name).cloned().ok_or_else(|| EngineError::StoreNotFound(r.clone()))
    }

    /// Checks `cmd` against the current state; changes nothing.
    pub fn validate(&self, cmd: &Command) -> Result<(), EngineError> {
        self.check(cmd)
    }

    /// Checks `cmd` and, if it passes, applies it whole. A failed check changes nothing.
    /// A [`Command::Batch`] answers [`Response::Batch`], each of its commands taken on its own.
    pub fn apply(&self, cmd: &Command) -> Result<Response, EngineError> {
        let _one_at_a_time = lock(&self.writes);
        self.check_and_mutate(cmd)
    }

    /// Checks and applies one command (callers hold the write lock).
    fn check_and_mutate(&self, cmd: &Command) -> Result<Response, EngineError> {
        // A Set finds its store and looks its keys up once, for its check and its write:
        // nothing writes between them, since callers hold the write lock.
        if let Command::Set { store, entries } = cmd {
            let shared = self.store(store)?;
            let plan = self.check_set(store, &shared, entries)?;
            return Ok(self.write_store(&shared, |s| {
                let (inserted, updated) = s.set_planned(entries, &plan);
                Response::Set { inserted, updated }
            }));
        }
        self.check(cmd)?;
        Ok(self.mutate(cmd))
    }

    /// Checks a Set of `entries` into `shared` (the store `store` names); returns its plan.
    fn check_set(&self, store: &StoreRef, shared: &SharedStore, entries: &[Entry]) -> Result<SetPlan, EngineError> {
        let s = read(shared);
        let mut measured = Vec::with_capacity(entries.len());
        for e in entries {
            let norm = check_key_for_its_norm(store, s.dimension(), &e.key)?;
            let key_and_value_bytes = self.check_metadata_for_its_bytes(&e.value)?;
            measured.push(EntryMeasures { norm, key_and_value_bytes });
        }
        let plan = s.plan_set(entries, measured);
        self.check_memory(plan.bytes_added())?;
        Ok(plan)
    }

    fn check(&self, cmd: &Command) -> Result<(), EngineError> {
        match cmd {
            Command::CreateStore { store, dimension, predicates, non_linear, error_if_exists } => {
                self.check_store_ref(store)?;
                if *dimension == 0 || *dimension > self.limits.max_dimension {
                    return Err(EngineError::InvalidArgument(format!(
                        "dimension {dimension} of store {store} is outside 1..={}",
                        self.limits.max_dimension
                    )));
                }
                predicates.iter().try_for_each(|p| self.check_name(p, "predicate key"))?;
                non_linear.iter().try_for_each(check_non_linear)?;
                if *error_if_exists && read(&self.stores).contains(store.schema(), &store.name) {
                    return Err(EngineError::StoreAlreadyExists(store.clone()));
                }
                Ok(())
            }
            Command::CreatePredIndex { store, predicates } => {
                self.store(store)?;
                predicates.iter().try_for_each(|p| self.check_name(p, "predicate key"))
            }
            Command::CreateNonLinearIndex { store, indexes } => {
                self.store(store)?;
                indexes.iter().try_for_each(check_non_linear)
            }
            Command::Set { store, entries } => self.check_set(store, &self.store(store)?, entries).map(drop),
            Command::Upsert { store, condition, new_key, new_value, merge_metadata } => {
                let s = self.store(store)?;
                let s = read(&s);
                self.check_condition(condition)?;
                if new_key.is_none() && new_value.is_none() {
                    return Err(EngineError::InvalidArgument("upsert needs a new key, a new value, or both".into()));
                }
                if let Some(k) = new_key {
                    check_key(store, s.dimension(), k)?;
                }
                if let Some(v) = new_value {
                    self.check_metadata(v)?;
                }
                let matched = s.matching(condition);
                let Some(&slot) = matched.first().filter(|_| matched.len() == 1) else {
                    return Err(EngineError::UpsertMatchCount { store: store.clone(), count: matched.len() });
                };
                if let Some(k) = new_key
                    && s.find(k).is_some_and(|other| other != slot)
                {
                    return Err(EngineError::InvalidArgument(format!(
                        "upsert's new key already belongs to another entry in {store}"
                    )));
                }
                let old = s.value(slot).unwrap_or_default();
                let value = upserted_value(&old, new_value.as_ref(), *merge_metadata);
                let (before, after) =
                    (store::entry_bytes(s.dimension(), &old), store::entry_bytes(s.dimension(), &value));
                self.check_memory(after.saturating_sub(before))
            }
            Command::DropPredIndex { store, predicates, error_if_not_exists } => {
                let s = self.store(store)?;
                let s = read(&s);
                if *error_if_not_exists && let Some(missing) = predicates.iter().find(|p| !s.has_predicate_index(p)) {
                    return Err(EngineError::PredicateNotFound { store: store.clone(), key: missing.clone() });
                }
                Ok(())
            }
            Command::DropNonLinearIndex { store, kinds, error_if_not_exists } => {
                let s = self.store(store)?;
                let s = read(&s);
                if *error_if_not_exists && let Some(missing) = kinds.iter().find(|k| !s.has_non_linear(**k)) {
                    return Err(EngineError::NonLinearIndexNotFound { store: store.clone(), kind: *missing });
                }
                Ok(())
            }
            Command::DelKey { store, keys } => {
                let s = self.store(store)?;
                let dim = read(&s).dimension();
                keys.iter().try_for_each(|k| check_key(store, dim, k))
            }
            Command::DelPred { store, condition } => {
                self.store(store)?;
                self.check_condition(condition)
            }
            Command::DropStore { store, error_if_not_exists } => match self.store(store) {
                Err(EngineError::StoreNotFound(_)) if !error_if_not_exists => Ok(()),
                other => other.map(|_| ()),
            },
            Command::DropSchema { schema } => {
                self.check_name(schema, "schema name")?;
                if schema == DEFAULT_SCHEMA {
                    return Err(EngineError::InvalidArgument(format!(
                        "the {DEFAULT_SCHEMA:?} schema cannot be dropped"
                    )));
                }
                Ok(())
            }
            Command::ClearStore { store } => self.store(store).map(|_| ()),
            Command::Batch { commands } => {
                if commands.iter().any(|c| matches!(c, Command::Batch { .. })) {
                    return Err(EngineError::InvalidArgument("a batch of commands cannot hold a batch".into()));
                }
                Ok(())
            }
        }
    }

    /// Applies a checked command.
    fn mutate(&self, cmd: &Command) -> Response {
        match cmd {
            Command::CreateStore { store, dimension, predicates, non_linear, .. } => {
                write(&self.stores).insert_if_absent(store.schema(), &store.name, || {
                    Arc::new(RwLock::new(Arc::new(Store::new(*dimension, predicates, non_linear))))
                });
                Response::Unit
            }
            Command::CreatePredIndex { store, predicates } => {
                self.with_store(store, |s| Response::Count(s.create_predicate_indexes(predicates)))
            }
            Command::CreateNonLinearIndex { store, indexes } => {
                self.with_store(store, |s| Response::Count(s.create_non_linear_indexes(indexes)))
            }
            // `check_and_mutate` applies a Set by the plan its check made and never comes here;
            // this arm keeps `mutate` whole.
            Command::Set { store, entries } => self.with_store(store, |s| {
                let (inserted, updated) = s.set(entries);
                Response::Set { inserted, updated }
            }),
            Command::Upsert { store, condition, new_key, new_value, merge_metadata } => self.with_store(store, |s| {
                let Some(&slot) = s.matching(condition).first() else {
                    return Response::Set { inserted: 0, updated: 0 };
                };
                let old = s.entry(slot);
                let value = upserted_value(&old.value, new_value.as_ref(), *merge_metadata);
                match new_key {
                    Some(k) if s.find(k) != Some(slot) => {
                        s.remove(&[slot]);
                        s.set(&[Entry { key: k.clone(), value }]);
                    }
                    _ => s.replace_value(slot, &value),
                }
                Response::Set { inserted: 0, updated: 1 }
            }),
            Command::DropPredIndex { store, predicates, .. } => {
                self.with_store(store, |s| Response::Count(s.drop_predicate_indexes(predicates)))
            }
            Command::DropNonLinearIndex { store, kinds, .. } => {
                self.with_store(store, |s| Response::Count(s.drop_non_linear_indexes(kinds)))
            }
            Command::DelKey { store, keys } => self.with_store(store, |s| {
                let slots: Vec<u32> = keys.iter().filter_map(|k| s.find(k)).collect();
                Response::Count(s.remove(&slots))
            }),
            Command::DelPred { store, condition } => self.with_store(store, |s| {
                let slots: Vec<u32> = s.matching(condition).into_iter().collect();
                Response::Count(s.remove(&slots))
            }),
            Command::DropStore { store, .. } => {
                let removed = write(&self.stores).remove(store.schema(), &store.name);
                if let Some(s) = &removed {
                    *lock(&self.used_bytes) -= read(s).bytes();
                }
                Response::Count(usize::from(removed.is_some()))
            }
            Command::DropSchema { schema } => {
                let removed = write(&self.stores).remove_schema(schema);
                for s in &removed {
                    *lock(&self.used_bytes) -= read(s).bytes();
                }
                Response::Count(removed.len())
            }
            Command::ClearStore { store } => self.with_store(store, |s| Response::Count(s.clear())),
            // Each on its own; `check` refused a batch that holds a batch.
            Command::Batch { commands } => Response::Batch(commands.iter().map(|c| self.check_and_mutate(c)).collect()),
        }
    }

    /// Runs `f` on a store under its write lock, keeping the memory account in step.
    fn with_store(&self, r: &StoreRef, f: impl FnOnce(&mut Store) -> Response) -> Response {
        let Some(store) = read(&self.stores).get(r.schema(), &r.name).cloned() else {
            return Response::Count(0);
        };
        self.write_store(&store, f)
    }

    /// Runs `f` on `store` under its write lock, keeping the memory account in step.
    fn write_store(&self, store: &SharedStore, f: impl FnOnce(&mut Store) -> Response) -> Response {
        let mut guard = write(store);
        let s = Arc::make_mut(&mut guard);
        let before = s.bytes();
        let response = f(s);
        let after = s.bytes();
        let mut used = lock(&self.used_bytes);
        *used = *used - before + after;
        response
    }

    /// Every store of every schema with its number of entries, by schema and name.
    pub fn entry_counts(&self) -> Vec<(StoreRef, usize)> {
        let stores = read(&self.stores);
        stores
            .iter()
            .map(|(schema, name, s)| {
                (StoreRef { schema: Some(schema.to_owned()), name: name.to_owned() }, read(s).len())
            })
            .collect()
    }

    /// Answers a read, however large the answer.
    pub fn query(&self, q: &Query) -> Result<Response, EngineError> {
        self.query_within(q, usize::MAX)
    }

    /// Answers a read whose answer takes at most about `max_bytes`; a larger one is refused
    /// (ResourceExhausted, saying how to ask for less) before any of it is built.
    pub fn query_within(&self, q: &Query, max_bytes: usize) -> Result<Response, EngineError> {
        let fits = |s: &Store, slots: &mut dyn Iterator<Item = u32>, how: &'static str| {
            let mut bytes = 0usize;
            for slot in slots {
                bytes = bytes.saturating_add(s.answer_bytes(slot));
                if bytes > max_bytes {
                    return Err(EngineError::AnswerTooLarge { bytes, limit: max_bytes, how });
                }
            }
            Ok(())
        };
        match q {
            Query::GetKey { store, keys } => {
                let s = self.store(store)?;
                let s = read(&s);
                keys.iter().try_for_each(|k| check_key(store, s.dimension(), k))?;
                let slots: Vec<u32> = keys.iter().filter_map(|k| s.find(k)).collect();
                fits(&s, &mut slots.iter().copied(), "ask for fewer keys at a time")?;
                Ok(Response::Entries(slots.into_iter().map(|slot| s.entry(slot)).collect()))
            }
            Query::GetPred { store, condition } => {
                self.check_condition(condition)?;
                let s = self.store(store)?;
                let s = read(&s);
                let mut slots: Vec<u32> = s.matching(condition).into_iter().collect();
                fits(
                    &s,
                    &mut slots.iter().copied(),
                    "narrow the condition, or page with ListStoreEntries (limit and cursor)",
                )?;
                s.sort_by_key(&mut slots);
                Ok(Response::Entries(slots.into_iter().map(|slot| s.entry(slot)).collect()))
            }
            Query::GetSimN { store, search, closest_n, algorithm, condition } => {
                if let Some(c) = condition {
                    self.check_condition(c)?;
                }
                if *closest_n == 0 {
                    return Err(EngineError::InvalidArgument("closest_n must be at least 1".into()));
                }
                if let Algorithm::Hnsw { ef_search: Some(ef) } = algorithm
                    && !HNSW_EF_RANGE.contains(ef)
                {
                    return Err(EngineError::InvalidArgument(format!(
                        "ef_search must be in {}..={}, as at index creation; got {ef}",
                        HNSW_EF_RANGE.start(),
                        HNSW_EF_RANGE.end()
                    )));
                }
                let s = self.store(store)?;
                let s = read(&s);
                check_key(store, s.dimension(), search)?;
                // No allocation or loop is sized by the request: a store never returns more
                // entries than it holds.
                let closest_n = &(*closest_n).min(s.len());
                let cosine = matches!(algorithm, Algorithm::Linear(Metric::Cosine));
                if cosine && search.iter().all(|x| *x == 0.0) {
                    return Err(EngineError::InvalidArgument("cosine similarity to a zero vector is undefined".into()));
                }
                let candidates = condition.as_ref().map(|c| s.matching(c));
                let found = match algorithm {
                    Algorithm::Linear(metric) => {
                        Some(s.linear_nearest(*metric, search, *closest_n, candidates.as_ref()))
                    }
                    Algorithm::KdTree => s.kdtree_nearest(search, *closest_n, candidates.as_ref()),
                    Algorithm::Hnsw { ef_search } => {
                        s.hnsw_nearest(search, *closest_n, *ef_search, candidates.as_ref())
                    }
                };
                let kind = match algorithm {
                    Algorithm::Hnsw { .. } => NonLinearKind::Hnsw,
                    _ => NonLinearKind::KdTree,
                };
                let found = found.ok_or_else(|| EngineError::NonLinearIndexNotFound { store: store.clone(), kind })?;
                fits(&s, &mut found.iter().map(|(slot, _)| *slot), "ask for fewer with closest_n")?;
                Ok(Response::Similar(found.into_iter().map(|(slot, score)| (s.entry(slot), score)).collect()))
            }
            Query::GetStore { store } => {
                let s = self.store(store)?;
                let info = read(&s).info(&store.name);
                Ok(Response::Store(info))
            }
            Query::ListStores { schema } => {
                let schema = schema.as_deref().filter(|s| !s.is_empty()).unwrap_or(DEFAULT_SCHEMA);
                let stores = read(&self.stores);
                let infos = stores.in_schema(schema).map(|(name, s)| read(s).info(name)).collect();
                Ok(Response::Stores(infos))
            }
            Query::ListStoreEntries { store, cursor, limit, condition } => {
                if let Some(c) = condition {
                    self.check_condition(c)?;
                }
                if *limit == 0 {
                    return Err(EngineError::InvalidArgument("limit must be at least 1".into()));
                }
                let s = self.store(store)?;
                let s = read(&s);
                let after = cursor.as_deref().map(|c| decode_cursor(c, s.dimension())).transpose()?;
                let mut slots: Vec<u32> = match condition {
                    Some(c) => s.matching(c).into_iter().collect(),
                    None => s.live_slots().collect(),
                };
                if let Some(after) = &after {
                    slots.retain(|&slot| similarity::cmp_key_bits(s.key(slot), after).is_gt());
                }
                s.sort_by_key(&mut slots);
                let more = slots.len() > *limit;
                slots.truncate(*limit);
                fits(&s, &mut slots.iter().copied(), "ask for a smaller limit and follow the cursor")?;
                let next_cursor = more.then(|| slots.last().map(|&slot| encode_cursor(s.key(slot)))).flatten();
                Ok(Response::Page { entries: slots.into_iter().map(|slot| s.entry(slot)).collect(), next_cursor })
            }
        }
    }

    /// A digest of the whole state, layout included: equal on replicas that applied the same
    /// commands.
    pub fn digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        for (schema, name, s) in read(&self.stores).iter() {
            let s = read(s);
            (schema, name, s.dimension(), s.len(), s.bytes()).hash(&mut h);
            s.info(name).predicate_indexes.hash(&mut h);
            s.non_linear_indexes().hash(&mut h);
            for slot in s.live_slots() {
                slot.hash(&mut h);
                s.key(slot).iter().map(|x| x.to_bits()).for_each(|b| b.hash(&mut h));
                s.value(slot).hash(&mut h);
            }
        }
        h.finish()
    }

    fn check_store_ref(&self, r: &StoreRef) -> Result<(), EngineError> {
        if let Some(schema) = &r.schema {
            self.check_name(schema, "schema name")?;
        }
        self.check_name(&r.name, "store name")
    }

    fn check_name(&self, name: &str, what: &str) -> Result<(), EngineError> {
        if name.is_empty() {
            return Err(EngineError::InvalidName(format!("{what} is empty")));
        }
        if name.len() > self.limits.max_name_len {
            return Err(EngineError::InvalidName(format!(
                "{what} is {} bytes long, more than {}",
                name.len(),
                self.limits.max_name_len
            )));
        }
        Ok(())
    }

    fn check_metadata(&self, m: &Metadata) -> Result<(), EngineError> {
        m.keys().try_for_each(|k| self.check_name(k, "metadata key"))
    }

    /// [`Engine::check_metadata`] for metadata about to be stored, whose size the store charges
    /// anyway: returns the bytes of its keys and values, counted in the same walk.
    fn check_metadata_for_its_bytes(&self, m: &Metadata) -> Result<usize, EngineError> {
        m.iter().try_fold(0, |bytes, (k, v)| {
            self.check_name(k, "metadata key")?;
            Ok(bytes + meta_arena::pair_bytes(k, v))
        })
    }

    fn check_condition(&self, c: &Condition) -> Result<(), EngineError> {
        if c.depth() > self.limits.max_condition_depth {
            return Err(EngineError::InvalidArgument(format!(
                "predicate condition is {} levels deep, more than {}",
                c.depth(),
                self.limits.max_condition_depth
            )));
        }
        match c {
            Condition::Value(p) => self.check_name(p.key(), "predicate key"),
            Condition::And(a, b) | Condition::Or(a, b) => {
                self.check_condition(a)?;
                self.check_condition(b)
            }
        }
    }

    fn check_memory(&self, needed: usize) -> Result<(), EngineError> {
        let used = self.used_bytes();
        match self.limits.max_memory_bytes {
            Some(cap) if used.saturating_add(needed) > cap => Err(EngineError::MemoryCap { cap, used, needed }),
            _ => Ok(()),
        }
    }
}

fn check_key(store: &StoreRef, dimension: usize, key: &[f32]) -> Result<(), EngineError> {
    check_dimension(store, dimension, key)?;
    // The common case in one vectorised pass; the position of the first bad component only
    // when there is one.
    if similarity::all_finite(key) {
        return Ok(());
    }
    first_non_finite(key)
}

/// [`check_key`] for a key about to be stored, which needs its norm anyway: returns the norm
/// ([`similarity::norm`], bit for bit). A finite sum of squares has only finite terms, so the
/// norm's pass checks the components too; only an infinite or NaN sum (a bad component, or
/// finite ones too large to square) looks for the bad one.
fn check_key_for_its_norm(store: &StoreRef, dimension: usize, key: &[f32]) -> Result<f32, EngineError> {
    check_dimension(store, dimension, key)?;
    let squares = similarity::dot(key, key);
    if !squares.is_finite() {
        first_non_finite(key)?;
    }
    Ok(squares.sqrt())
}

fn check_dimension(store: &StoreRef, dimension: usize, key: &[f32]) -> Result<(), EngineError> {
    if key.len() != dimension {
        return Err(EngineError::DimensionMismatch { store: store.clone(), expected: dimension, given: key.len() });
    }
    Ok(())
}

/// The error for the first component of `key` that is infinite or NaN, if any.
fn first_non_finite(key: &[f32]) -> Result<(), EngineError> {
    match key.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(EngineError::NonFiniteComponent { index, value: key[index].to_string() }),
        None => Ok(()),
    }
}

fn check_non_linear(idx: &NonLinearIndex) -> Result<(), EngineError> {
    if let NonLinearIndex::Hnsw(c) = idx {
        let ok = (2..=256).contains(&c.m)
            && (1..=10_000).contains(&c.ef_construction)
            && HNSW_EF_RANGE.contains(&c.ef_search);
        if !ok {
            return Err(EngineError::InvalidArgument(format!(
                "HNSW parameters out of range (m in 2..=256, ef_construction and ef_search in 1..=10000): {c:?}"
            )));
        }
    }
    Ok(())
}

fn upserted_value(old: &Metadata, new: Option<&Metadata>, merge: bool) -> Metadata {
    match (new, merge) {
        (None, _) => old.clone(),
        (Some(new), false) => new.clone(),
        (Some(new), true) => {
            let mut merged = old.clone();
            merged.extend(new.iter().map(|(k, v)| (k.clone(), v.clone())));
            merged
        }
    }
}

fn encode_cursor(key: &[f32]) -> String {
    key.iter().map(|x| format!("{:08x}", x.to_bits())).collect()
}

fn decode_cursor(cursor: &str, dimension: usize) -> Result<Vec<f32>, EngineError> {
    let bad = || EngineError::InvalidArgument(format!("cursor {cursor:?} is not one this store returned"));
    if cursor.len() != dimension * 8 || !cursor.is_ascii() {
        return Err(bad());
    }
    (0..dimension)
        .map(|i| u32::from_str_radix(&cursor[i * 8..i * 8 + 8], 16).map(f32::from_bits).map_err(|_| bad()))
        .collect()
}
