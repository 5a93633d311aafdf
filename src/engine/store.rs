//! One store: its entries in slot-addressed arrays, its key lookup, its predicate indexes and
//! its non-linear indexes. Callers validate arguments first (see `engine::validate`); the
//! methods here assume valid input and keep every structure in step.
//!
//! Layout (made for snapshots): slot `s` owns row `s` of `arena` (the vectors, in shared chunks
//! of about 1 MiB, so a write after a snapshot capture copies one chunk, not every vector),
//! row `s` of `norms` and its metadata in the store's [`MetaArena`] (chunks of encodings, no
//! allocation per entry). The key lookup (`key_lookup`) and predicate indexes (`chunked`) are
//! sharded and their parts shared with captures in the same way. Freed slots are reused
//! last-in first-out, which is deterministic, so replicas that apply the same commands hold
//! identical layouts.
//! While a k-d tree or HNSW graph exists, a removed slot is quarantined (its vector kept) until
//! the indexes are rebuilt, since dead nodes still route searches.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use hashbrown::HashTable;

use super::chunked::{ShardedMap, SlotSet};

use super::hnsw::Hnsw;
use super::kdtree::KdTree;
use super::key_hash::key_hash;
use super::key_lookup::KeyLookup;
use super::meta_arena::{self, MetaArena, ValueRef};
use super::rows::Rows;
use super::similarity::{self, cmp_key_bits};
use super::types::{Condition, Entry, HnswConfig, Metadata, MetadataValue, NonLinearIndex, NonLinearKind, Predicate};

/// One predicate index: for each value of its metadata key, the live slots holding it.
pub(super) type PredicateIndex = ShardedMap<MetadataValue, SlotSet>;

/// How many entries ahead of its insert a Set's key lookup is prefetched.
const INSERT_PREFETCH_DISTANCE: usize = 8;

/// Bytes charged per entry on top of its vector and metadata (index and bookkeeping overhead).
pub const ENTRY_OVERHEAD: usize = 64;

/// A store's description, as GetStore and ListStores report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreInfo {
    /// The store's name.
    pub name: String,
    /// Live entries.
    pub len: usize,
    /// Bytes charged against the memory cap.
    pub size_in_bytes: usize,
    /// Vector dimension.
    pub dimension: usize,
    /// Indexed metadata keys, sorted.
    pub predicate_indexes: Vec<String>,
    /// Non-linear indexes, sorted.
    pub non_linear_indexes: Vec<NonLinearIndex>,
}

/// The entries and indexes of one store.
#[derive(Clone, Debug)]
pub struct Store {
    pub(super) dimension: usize,
    pub(super) arena: Rows,
    pub(super) norms: Rows,
    pub(super) meta: MetaArena,
    pub(super) free: Vec<u32>,
    pub(super) quarantine: Vec<u32>,
    pub(super) by_hash: KeyLookup,
    pub(super) collisions: HashMap<u64, Vec<u32>>,
    pub(super) predicates: BTreeMap<String, PredicateIndex>,
    pub(super) kdtree: Option<KdTree>,
    pub(super) hnsw: Option<Hnsw>,
    pub(super) live: usize,
    pub(super) bytes: usize,
}

/// What checking a Set learned about each of its entries (its key's hash, its bytes, and
/// whether its key is live, absent or repeated from earlier in the Set), so that writing it
/// looks nothing up again. Made by [`Store::plan_set`]; it holds only for the store as it was
/// then, so it must be written before any other change to the store.
#[derive(Debug)]
pub struct SetPlan {
    places: Vec<Place>,
    bytes_added: usize,
}

impl SetPlan {
    /// Bytes the Set adds to the store (when it frees more than it adds, zero).
    pub fn bytes_added(&self) -> usize {
        self.bytes_added
    }
}

/// One entry of a [`SetPlan`].
#[derive(Clone, Copy, Debug)]
struct Place {
    hash: u64,
    /// The key's norm (stored with it if the key is new).
    norm: f32,
    bytes: usize,
    found: Found,
}

/// Where an entry's key was when its Set was planned.
#[derive(Clone, Copy, Debug)]
enum Found {
    /// Live in this slot.
    Live(u32),
    /// In neither the store nor an earlier entry of the Set.
    Absent,
    /// In an earlier entry of the Set (which may insert it): looked up when writing.
    Repeated,
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Bytes charged for an entry of `dimension` with `value`.
pub fn entry_bytes(dimension: usize, value: &Metadata) -> usize {
    charged_bytes(dimension, meta_arena::key_and_value_bytes(value))
}

/// Bytes charged for an entry of `dimension` whose metadata's keys and values take
/// `key_and_value_bytes`.
fn charged_bytes(dimension: usize, key_and_value_bytes: usize) -> usize {
    ENTRY_OVERHEAD + dimension * 4 + key_and_value_bytes
}

/// What a Set's check measures of each entry, for its plan (see [`Store::plan_set`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct EntryMeasures {
    /// The key's norm ([`similarity::norm`], bit for bit).
    pub(super) norm: f32,
    /// The bytes of the metadata's keys and values (`meta_arena::key_and_value_bytes`).
    pub(super) key_and_value_bytes: usize,
}

impl EntryMeasures {
    /// The measures of `entry`, taken afresh.
    pub(super) fn of(entry: &Entry) -> Self {
        EntryMeasures {
            norm: similarity::norm(&entry.key),
            key_and_value_bytes: meta_arena::key_and_value_bytes(&entry.value),
        }
    }
}

impl Store {
    /// An empty store.
    pub fn new(dimension: usize, predicates: &[String], non_linear: &[NonLinearIndex]) -> Self {
        let mut store = Self {
            dimension,
            arena: Rows::new(dimension),
            norms: Rows::new(1),
            meta: MetaArena::default(),
            free: Vec::new(),
            quarantine: Vec::new(),
            by_hash: KeyLookup::default(),
            collisions: HashMap::new(),
            predicates: BTreeMap::new(),
            kdtree: None,
            hnsw: None,
            live: 0,
            bytes: 0,
        };
        store.create_predicate_indexes(predicates);
        store.create_non_linear_indexes(non_linear);
        store
    }

    /// Vector dimension.
    pub fn dimension(&self) -> usize {
        self.dimension
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether the store has no entries.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Bytes charged against the memory cap.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The key stored in `slot` (also for a quarantined slot).
    pub fn key(&self, slot: u32) -> &[f32] {
        self.arena.row(slot as usize)
    }

    /// The entry in a live `slot`.
    pub fn entry(&self, slot: u32) -> Entry {
        Entry { key: self.key(slot).to_vec(), value: self.meta.get(slot).unwrap_or_default() }
    }

    /// About how many bytes the entry at `slot` takes in an answer: its key, its metadata and
    /// a few bytes of framing per field and per entry (a score included), a little more than
    /// the protobuf encoding takes.
    pub fn answer_bytes(&self, slot: u32) -> usize {
        let meta: usize = self
            .meta
            .pairs(slot)
            .map(|(k, v)| {
                let value = match v {
                    super::meta_arena::ValueRef::Text(t) => t.len(),
                    super::meta_arena::ValueRef::Image(b) | super::meta_arena::ValueRef::Audio(b) => b.len(),
                };
                k.len() + value + 16
            })
            .sum();
        self.dimension * 4 + meta + 32
    }

    /// A copy of the metadata of a live `slot`.
    pub fn value(&self, slot: u32) -> Option<Metadata> {
        self.meta.get(slot)
    }

    /// The value of metadata `key` in a live `slot`, borrowed.
    pub fn value_of(&self, slot: u32, key: &str) -> Option<ValueRef<'_>> {
        self.meta.value_of(slot, key)
    }

    fn live_entry_bytes(&self, slot: u32) -> usize {
        ENTRY_OVERHEAD + self.dimension * 4 + self.meta.accounted_bytes(slot)
    }

    /// The slot holding exactly `key` (bit for bit), if any.
    pub fn find(&self, key: &[f32]) -> Option<u32> {
        self.find_hashed(key_hash(key), key)
    }

    /// [`Store::find`] for a key whose hash `h` is already known.
    fn find_hashed(&self, h: u64, key: &[f32]) -> Option<u32> {
        let primary = self.by_hash.get(h).filter(|&s| same_bits(self.key(s), key));
        primary.or_else(|| self.collisions.get(&h)?.iter().copied().find(|&s| same_bits(self.key(s), key)))
    }

    /// Every live slot, ascending.
    pub fn live_slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.meta.live_slots()
    }

    /// Sorts slots by their keys' bit patterns: the order every listing uses.
    pub fn sort_by_key(&self, slots: &mut [u32]) {
        slots.sort_unstable_by(|a, b| cmp_key_bits(self.key(*a), self.key(*b)));
    }

    /// Rebuilds the key lookup from the live slots; fails if two live slots hold the same key.
    pub(super) fn rebuild_key_lookup(&mut self) -> Result<(), String> {
        self.by_hash = KeyLookup::with_capacity(self.live);
        self.collisions.clear();
        let arena = &self.arena;
        for slot in self.meta.live_slots() {
            let key = arena.row(slot as usize);
            let h = key_hash(key);
            let same = |s: &u32| same_bits(arena.row(*s as usize), key);
            match self.by_hash.get(h) {
                None => {
                    self.by_hash.insert(h, slot);
                }
                Some(first) => {
                    let others = self.collisions.entry(h).or_default();
                    if same(&first) || others.iter().any(same) {
                        return Err(format!("slots hold the same key twice (slot {slot})"));
                    }
                    others.push(slot);
                }
            }
        }
        Ok(())
    }

    /// Plans a Set of `entries` (see [`SetPlan`]): hashes their keys and looks each up once.
    /// `measured` holds each entry's [`EntryMeasures`], in order.
    pub(super) fn plan_set(&self, entries: &[Entry], measured: impl IntoIterator<Item = EntryMeasures>) -> SetPlan {
        let many = entries.len() > 1;
        // Every key's lookup is started before the first is needed: at a million keys each is a
        // cache miss, and this way they overlap instead of coming one after another.
        let mut places: Vec<Place> = entries
            .iter()
            .zip(measured)
            .map(|(e, EntryMeasures { norm, key_and_value_bytes })| {
                let hash = key_hash(&e.key);
                if many {
                    self.by_hash.prefetch(hash);
                }
                let bytes = charged_bytes(self.dimension, key_and_value_bytes);
                Place { hash, norm, bytes, found: Found::Absent }
            })
            .collect();
        let added: usize = places.iter().map(|p| p.bytes).sum();
        let mut freed = 0usize;
        // The first entry of the Set with each hash; a repeat of a key frees nothing twice.
        // The key hashes are seeded already (see `key_hash`), so they place themselves.
        let mut first_with_hash: HashTable<usize> =
            if many { HashTable::with_capacity(entries.len()) } else { HashTable::new() };
        for (i, e) in entries.iter().enumerate() {
            let hash = places[i].hash;
            let repeated = many && {
                match first_with_hash.entry(hash, |&j| places[j].hash == hash, |&j| places[j].hash) {
                    hashbrown::hash_table::Entry::Vacant(v) => {
                        v.insert(i);
                        false
                    }
                    // Same hash: a repeated key, or (rarely) a different key that collides.
                    hashbrown::hash_table::Entry::Occupied(o) => {
                        entries[*o.get()..i].iter().any(|earlier| same_bits(&earlier.key, &e.key))
                    }
                }
            };
            places[i].found = if repeated {
                Found::Repeated
            } else if let Some(slot) = self.find_hashed(hash, &e.key) {
                freed += self.live_entry_bytes(slot);
                Found::Live(slot)
            } else {
                Found::Absent
            };
        }
        SetPlan { places, bytes_added: added.saturating_sub(freed) }
    }

    /// Inserts or overwrites every entry, in order; returns (inserted, updated).
    pub fn set(&mut self, entries: &[Entry]) -> (usize, usize) {
        let plan = self.plan_set(entries, entries.iter().map(EntryMeasures::of));
        self.set_planned(entries, &plan)
    }

    /// [`Store::set`] by a plan made for these `entries` on this store as it is.
    pub fn set_planned(&mut self, entries: &[Entry], plan: &SetPlan) -> (usize, usize) {
        assert_eq!(entries.len(), plan.places.len(), "a Set's plan has one place per entry");
        let (mut inserted, mut updated) = (0, 0);
        for (i, (Entry { key, value }, place)) in entries.iter().zip(&plan.places).enumerate() {
            // The plan's lookups brought these lines in, but a large Set's rows may have pushed
            // them out since: bring them back a few entries ahead of their inserts.
            if let Some(ahead) = plan.places.get(i + INSERT_PREFETCH_DISTANCE) {
                self.by_hash.prefetch(ahead.hash);
            }
            let live = match place.found {
                Found::Live(slot) => Some(slot),
                Found::Absent => None,
                Found::Repeated => self.find_hashed(place.hash, key),
            };
            match live {
                Some(slot) => {
                    self.replace_value_sized(slot, value, place.bytes);
                    updated += 1;
                }
                None => {
                    self.insert_new(place, key, value);
                    inserted += 1;
                }
            }
        }
        self.rebalance_kdtree();
        (inserted, updated)
    }

    /// The bytes of an entry's metadata keys and values, from its [`entry_bytes`].
    fn metadata_bytes(&self, entry_bytes: usize) -> usize {
        entry_bytes.saturating_sub(ENTRY_OVERHEAD + self.dimension * 4)
    }

    /// Stores a key absent from the store, in the place its plan made for it.
    fn insert_new(&mut self, place: &Place, key: &[f32], value: &Metadata) -> u32 {
        let Place { hash: h, norm, bytes, .. } = *place;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.arena.set_row(slot as usize, key);
                self.norms.set_row(slot as usize, &[norm]);
                slot
            }
            None => {
                self.arena.push_row(key);
                self.meta.push_slot();
                self.norms.push_row(&[norm]) as u32
            }
        };
        if !self.by_hash.insert_if_absent(h, slot) {
            self.collisions.entry(h).or_default().push(slot);
        }
        self.bytes += bytes;
        self.index_value(slot, value);
        self.meta.set_counted(slot, value, self.metadata_bytes(bytes));
        self.live += 1;
        let arena = &self.arena;
        let key_of = |s: u32| arena.row(s as usize);
        if let Some(t) = self.kdtree.as_mut() {
            t.insert(slot, &key_of);
        }
        if let Some(g) = self.hnsw.as_mut() {
            g.insert(slot, &key_of);
        }
        slot
    }

    /// Replaces the metadata of a live slot.
    pub fn replace_value(&mut self, slot: u32, value: &Metadata) {
        self.replace_value_sized(slot, value, entry_bytes(self.dimension, value));
    }

    /// [`Store::replace_value`] with the new value's [`entry_bytes`] known.
    fn replace_value_sized(&mut self, slot: u32, value: &Metadata, bytes: usize) {
        if self.meta.is_live(slot) {
            self.unindex_value(slot);
            self.bytes -= self.live_entry_bytes(slot);
        }
        self.bytes += bytes;
        self.index_value(slot, value);
        self.meta.set_counted(slot, value, self.metadata_bytes(bytes));
    }

    /// Removes the live entries in `slots`; returns how many were live.
    pub fn remove(&mut self, slots: &[u32]) -> usize {
        let mut removed = 0;
        for &slot in slots {
            if !self.meta.is_live(slot) {
                continue;
            }
            self.unindex_value(slot);
            self.bytes -= self.live_entry_bytes(slot);
            self.meta.clear(slot);
            let h = key_hash(self.key(slot));
            if self.by_hash.get(h) == Some(slot) {
                match self.collisions.get_mut(&h).and_then(Vec::pop) {
                    Some(other) => {
                        self.by_hash.insert(h, other);
                    }
                    None => {
                        self.by_hash.remove(h);
                    }
                }
            } else if let Some(list) = self.collisions.get_mut(&h) {
                list.retain(|&s| s != slot);
            }
            if self.collisions.get(&h).is_some_and(Vec::is_empty) {
                self.collisions.remove(&h);
            }
            if let Some(t) = self.kdtree.as_mut() {
                t.remove(slot);
            }
            if let Some(g) = self.hnsw.as_mut() {
                g.remove(slot);
            }
            if self.kdtree.is_some() || self.hnsw.is_some() {
                self.quarantine.push(slot);
            } else {
                self.free.push(slot);
            }
            self.live -= 1;
            removed += 1;
        }
        if self.quarantine.len() > self.live.max(64) {
            self.rebuild_non_linear_indexes();
        }
        removed
    }

    /// Removes every entry; keeps the indexes (emptied). Returns how many were removed.
    pub fn clear(&mut self) -> usize {
        let removed = self.live;
        let predicates: Vec<String> = self.predicates.keys().cloned().collect();
        let non_linear = self.non_linear_indexes();
        *self = Store::new(self.dimension, &predicates, &non_linear);
        removed
    }

    fn index_value(&mut self, slot: u32, value: &Metadata) {
        for (key, index) in self.predicates.iter_mut() {
            let Some(v) = value.get(key) else { continue };
            // Most values are shared by many entries: copy one only when it is new to the index.
            index.get_or_insert_with(v, SlotSet::default).insert(slot);
        }
    }

    /// Removes a live slot's current metadata from the predicate indexes.
    fn unindex_value(&mut self, slot: u32) {
        for (key, index) in self.predicates.iter_mut() {
            let Some(v) = self.meta.value_of(slot, key).map(ValueRef::to_owned_value) else { continue };
            if let Some(set) = index.get_mut(&v) {
                set.remove(slot);
                if set.is_empty() {
                    index.remove(&v);
                }
            }
        }
    }

    /// Starts indexing the metadata keys not indexed yet; returns how many were new.
    pub fn create_predicate_indexes(&mut self, keys: &[String]) -> usize {
        let mut created = 0;
        for key in keys {
            if self.predicates.contains_key(key) {
                continue;
            }
            let mut index = PredicateIndex::default();
            for slot in self.live_slots() {
                if let Some(v) = self.value_of(slot, key).map(ValueRef::to_owned_value) {
                    index.get_or_insert_with(&v, SlotSet::default).insert(slot);
                }
            }
            self.predicates.insert(key.clone(), index);
            created += 1;
        }
        created
    }

    /// Whether `key` is indexed.
    pub fn has_predicate_index(&self, key: &str) -> bool {
        self.predicates.contains_key(key)
    }

    /// Stops indexing `keys`; returns how many were indexed.
    pub fn drop_predicate_indexes(&mut self, keys: &[String]) -> usize {
        keys.iter().filter(|k| self.predicates.remove(*k).is_some()).count()
    }

    /// The non-linear indexes, sorted.
    pub fn non_linear_indexes(&self) -> Vec<NonLinearIndex> {
        let mut out = Vec::new();
        if self.kdtree.is_some() {
            out.push(NonLinearIndex::KdTree);
        }
        if let Some(g) = &self.hnsw {
            out.push(NonLinearIndex::Hnsw(*g.config()));
        }
        out
    }

    /// Whether an index of `kind` exists.
    pub fn has_non_linear(&self, kind: NonLinearKind) -> bool {
        match kind {
            NonLinearKind::KdTree => self.kdtree.is_some(),
            NonLinearKind::Hnsw => self.hnsw.is_some(),
        }
    }

    /// Builds the indexes of kinds not present yet; returns how many were built.
    pub fn create_non_linear_indexes(&mut self, indexes: &[NonLinearIndex]) -> usize {
        let mut created = 0;
        for idx in indexes {
            if self.has_non_linear(idx.kind()) {
                continue;
            }
            match idx {
                NonLinearIndex::KdTree => self.kdtree = Some(self.build_kdtree()),
                NonLinearIndex::Hnsw(config) => self.hnsw = Some(self.build_hnsw(*config)),
            }
            created += 1;
        }
        created
    }

    /// Drops the indexes of `kinds`; returns how many existed.
    pub fn drop_non_linear_indexes(&mut self, kinds: &[NonLinearKind]) -> usize {
        let mut dropped = 0;
        for kind in kinds {
            let existed = match kind {
                NonLinearKind::KdTree => self.kdtree.take().is_some(),
                NonLinearKind::Hnsw => self.hnsw.take().is_some(),
            };
            dropped += usize::from(existed);
        }
        if self.kdtree.is_none() && self.hnsw.is_none() {
            self.free.append(&mut self.quarantine);
        }
        dropped
    }

    fn build_kdtree(&self) -> KdTree {
        let slots: Vec<u32> = self.live_slots().collect();
        KdTree::build(self.dimension, &slots, &|s| self.key(s))
    }

    fn build_hnsw(&self, config: HnswConfig) -> Hnsw {
        let mut g = Hnsw::new(config);
        for slot in self.live_slots() {
            g.insert(slot, &|s| self.key(s));
        }
        g
    }

    fn rebalance_kdtree(&mut self) {
        if self.kdtree.as_ref().is_some_and(KdTree::is_unbalanced) {
            self.kdtree = Some(self.build_kdtree());
        }
    }

    /// Rebuilds the non-linear indexes from the live entries and releases quarantined slots.
    fn rebuild_non_linear_indexes(&mut self) {
        if self.kdtree.is_some() {
            self.kdtree = Some(self.build_kdtree());
        }
        if let Some(config) = self.hnsw.as_ref().map(|g| *g.config()) {
            self.hnsw = Some(self.build_hnsw(config));
        }
        self.free.append(&mut self.quarantine);
    }

    /// The live slots that satisfy `condition`, through indexes where they exist.
    pub fn matching(&self, condition: &Condition) -> BTreeSet<u32> {
        match condition {
            Condition::Value(p) => match self.predicates.get(p.key()) {
                Some(index) => matching_indexed(index, p),
                None => self.live_slots().filter(|&s| Condition::Value(p.clone()).accepts_slot(self, s)).collect(),
            },
            Condition::And(a, b) => {
                let (x, y) = (self.matching(a), self.matching(b));
                x.intersection(&y).copied().collect()
            }
            Condition::Or(a, b) => {
                let mut x = self.matching(a);
                x.extend(self.matching(b));
                x
            }
        }
    }

    /// The live slots that satisfy `condition`, by scanning every entry (no index).
    pub fn matching_by_scan(&self, condition: &Condition) -> BTreeSet<u32> {
        self.live_slots().filter(|&s| condition.accepts_slot(self, s)).collect()
    }

    /// The `k` entries closest to `query` under `metric` among `candidates` (all when `None`),
    /// by linear scan, closest first, with scores.
    pub fn linear_nearest(
        &self,
        metric: super::types::Metric,
        query: &[f32],
        k: usize,
        candidates: Option<&BTreeSet<u32>>,
    ) -> Vec<(u32, f32)> {
        let qn = similarity::norm(query);
        let score = |s: u32| similarity::score(metric, query, qn, self.key(s), self.norms.row(s as usize)[0]);
        let scored: Vec<(u32, f32)> = match candidates {
            Some(c) => c.iter().map(|&s| (s, score(s))).collect(),
            None => {
                // Walk the vectors chunk by chunk: contiguous memory, no per-row chunk lookup.
                let mut scored = Vec::with_capacity(self.live);
                for (first, block) in self.arena.chunks() {
                    let rows = block.len() / self.dimension;
                    // A vector chunk's rows never straddle two norm chunks (both are aligned
                    // powers of two, norm chunks the larger).
                    let norms = self.norms.span(first, rows).unwrap_or(&[]);
                    for (r, key) in block.chunks_exact(self.dimension).enumerate() {
                        let s = (first + r) as u32;
                        if self.meta.is_live(s) {
                            let n = norms.get(r).copied().unwrap_or_else(|| self.norms.row(s as usize)[0]);
                            scored.push((s, similarity::score(metric, query, qn, key, n)));
                        }
                    }
                }
                scored
            }
        };
        similarity::top_k(metric, scored, k, |s| self.key(s))
    }

    /// The k-d tree's `k` nearest among `candidates`, with Euclidean distances.
    pub fn kdtree_nearest(
        &self,
        query: &[f32],
        k: usize,
        candidates: Option<&BTreeSet<u32>>,
    ) -> Option<Vec<(u32, f32)>> {
        let tree = self.kdtree.as_ref()?;
        let allowed = |s: u32| candidates.is_none_or(|c| c.contains(&s));
        Some(tree.nearest(query, k, &allowed, &|s| self.key(s)))
    }

    /// The HNSW graph's approximately `k` nearest among `candidates`, scored with its metric.
    pub fn hnsw_nearest(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        candidates: Option<&BTreeSet<u32>>,
    ) -> Option<Vec<(u32, f32)>> {
        let g = self.hnsw.as_ref()?;
        let allowed = |s: u32| candidates.is_none_or(|c| c.contains(&s));
        let ef = ef.unwrap_or(g.config().ef_search);
        let slots = g.nearest(query, k, ef, &allowed, &|s| self.key(s));
        let metric = g.config().metric;
        let qn = similarity::norm(query);
        let scored = slots
            .into_iter()
            .map(|s| (s, similarity::score(metric, query, qn, self.key(s), self.norms.row(s as usize)[0])))
            .collect();
        Some(similarity::top_k(metric, scored, k, |s| self.key(s)))
    }

    /// The store's description under `name`.
    pub fn info(&self, name: &str) -> StoreInfo {
        StoreInfo {
            name: name.to_owned(),
            len: self.live,
            size_in_bytes: self.bytes,
            dimension: self.dimension,
            predicate_indexes: self.predicates.keys().cloned().collect(),
            non_linear_indexes: self.non_linear_indexes(),
        }
    }
}

fn matching_indexed(index: &PredicateIndex, p: &Predicate) -> BTreeSet<u32> {
    match p {
        Predicate::Equals { value, .. } => index.get(value).map(|slots| slots.iter().collect()).unwrap_or_default(),
        Predicate::In { values, .. } => values.iter().filter_map(|v| index.get(v)).flat_map(SlotSet::iter).collect(),
        Predicate::NotEquals { .. } | Predicate::NotIn { .. } => {
            index.iter().filter(|(v, _)| p.accepts(v)).flat_map(|(_, slots)| slots.iter()).collect()
        }
    }
}

impl Condition {
    /// Whether the live entry in `slot` satisfies the condition (read in place, no copies).
    fn accepts_slot(&self, store: &Store, slot: u32) -> bool {
        match self {
            Condition::Value(p) => store.value_of(slot, p.key()).is_some_and(|v| p.accepts_ref(v)),
            Condition::And(a, b) => a.accepts_slot(store, slot) && b.accepts_slot(store, slot),
            Condition::Or(a, b) => a.accepts_slot(store, slot) || b.accepts_slot(store, slot),
        }
    }
}

impl Predicate {
    /// Whether an entry whose key holds the borrowed `value` satisfies the predicate.
    fn accepts_ref(&self, value: ValueRef<'_>) -> bool {
        match self {
            Predicate::Equals { value: v, .. } => value.eq_value(v),
            Predicate::NotEquals { value: v, .. } => !value.eq_value(v),
            Predicate::In { values, .. } => values.iter().any(|v| value.eq_value(v)),
            Predicate::NotIn { values, .. } => !values.iter().any(|v| value.eq_value(v)),
        }
    }
}
