//! Structures a snapshot capture can share with the live store. A capture clones a store; with
//! these, the clone copies a short list of reference-counted parts instead of every element,
//! and a later write copies only the one part it lands in, if the capture still holds it. So
//! the first write after a capture costs about one part, whatever the store's size.
//!
//! - [`ChunkedVec`]: a vector in fixed-size chunks (metadata spans, graph nodes, slot maps).
//! - [`ShardedMap`]: a hash map in shards chosen by the key's hash (the values of a predicate
//!   index; the store's key lookup has its own table, `key_lookup`).
//! - [`NodeOfSlot`]: which graph or tree node holds each slot.
//! - [`SlotSet`]: a set of slots in blocks of consecutive slot numbers (the entries holding one
//!   value of a predicate index).
//!
//! Reads cost one extra indirection; writes to a part nobody else holds happen in place.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::ops::{Index, IndexMut};
use std::sync::Arc;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

/// A vector whose elements live in shared chunks of `1 << shift` elements.
#[derive(Clone, Debug)]
pub struct ChunkedVec<T> {
    shift: u32,
    chunks: Vec<Arc<Vec<T>>>,
    len: usize,
}

impl<T: Clone> ChunkedVec<T> {
    /// An empty vector whose chunks hold `1 << shift` elements.
    pub fn new(shift: u32) -> Self {
        Self { shift, chunks: Vec::new(), len: 0 }
    }

    fn chunk_len(&self) -> usize {
        1 << self.shift
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Element `i`, if `i < len`.
    pub fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i >> self.shift)?.get(i & (self.chunk_len() - 1))
    }

    /// Element `i` (`i < len`) to write; its chunk is copied first if a clone shares it.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        let mask = self.chunk_len() - 1;
        let capacity = self.chunk_len();
        let chunk = self.chunks.get_mut(i >> self.shift)?;
        own(chunk, capacity).get_mut(i & mask)
    }

    /// Appends `value`.
    pub fn push(&mut self, value: T) {
        let capacity = self.chunk_len();
        if self.len & (capacity - 1) == 0 {
            // Sized once, so a chunk never grows by copying itself.
            self.chunks.push(Arc::new(Vec::with_capacity(capacity)));
        }
        if let Some(last) = self.chunks.last_mut() {
            own(last, capacity).push(value);
        }
        self.len += 1;
    }

    /// Sets element `i` to `value`, first appending `fill` up to `i` if the vector is shorter.
    pub fn set_growing(&mut self, i: usize, value: T, fill: T) {
        while self.len <= i {
            self.push(fill.clone());
        }
        self[i] = value;
    }

    /// Every element, in order.
    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.chunks.iter().flat_map(|c| c.iter())
    }
}

impl<T: Clone> Default for ChunkedVec<T> {
    /// Chunks of about 64 KiB.
    fn default() -> Self {
        Self::new(default_shift::<T>())
    }
}

impl<T: Clone> FromIterator<T> for ChunkedVec<T> {
    /// Chunks of the default size for `T` (about 64 KiB).
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut v = Self::default();
        for x in iter {
            v.push(x);
        }
        v
    }
}

/// The chunk shift that makes a chunk of `T` about 64 KiB.
fn default_shift<T>() -> u32 {
    let per_chunk = (64 * 1024 / std::mem::size_of::<T>().max(1)).max(1);
    usize::BITS - 1 - per_chunk.leading_zeros()
}

/// The chunk's elements to write: copied first (with room for `capacity`) if shared.
pub(super) fn own<T: Clone>(chunk: &mut Arc<Vec<T>>, capacity: usize) -> &mut Vec<T> {
    // Plain loads of the counts (`Arc::get_mut` would take a lock on them, and `make_mut` takes
    // one again): this is called for every entry written. Should they ever miss a sharer,
    // `make_mut` still copies.
    if Arc::strong_count(chunk) != 1 || Arc::weak_count(chunk) != 0 {
        let mut copy = Vec::with_capacity(capacity.max(chunk.len()));
        copy.extend_from_slice(chunk);
        *chunk = Arc::new(copy);
    }
    Arc::make_mut(chunk)
}

impl<T: Clone> Index<usize> for ChunkedVec<T> {
    type Output = T;

    fn index(&self, i: usize) -> &T {
        match self.get(i) {
            Some(x) => x,
            None => panic!("index {i} out of range for a chunked vector of {}", self.len),
        }
    }
}

impl<T: Clone> IndexMut<usize> for ChunkedVec<T> {
    /// Copies the element's chunk first if a clone shares it.
    fn index_mut(&mut self, i: usize) -> &mut T {
        let len = self.len;
        match self.get_mut(i) {
            Some(x) => x,
            None => panic!("index {i} out of range for a chunked vector of {len}"),
        }
    }
}

/// For each slot, the node of a graph or tree that holds it, if any.
#[derive(Clone, Debug, Default)]
pub struct NodeOfSlot {
    nodes: ChunkedVec<u32>,
}

/// No node.
const NO_NODE: u32 = u32::MAX;

impl NodeOfSlot {
    /// The node holding `slot`.
    pub fn get(&self, slot: u32) -> Option<u32> {
        self.nodes.get(slot as usize).copied().filter(|&n| n != NO_NODE)
    }

    /// Records that `node` holds `slot`.
    pub fn insert(&mut self, slot: u32, node: u32) {
        self.nodes.set_growing(slot as usize, node, NO_NODE);
    }

    /// Forgets the node of `slot`; returns it.
    pub fn remove(&mut self, slot: u32) -> Option<u32> {
        let node = self.get(slot)?;
        self.nodes[slot as usize] = NO_NODE;
        Some(node)
    }
}

/// Shards per [`ShardedMap`]: at 1M keys, a write after a capture copies ~4k of them.
const SHARDS: usize = 256;

/// A key a [`ShardedMap`] can place.
pub trait ShardKey: Eq + Clone {
    /// A well-mixed 64-bit hash of the key under `seed`; equal keys give equal hashes, and
    /// without the seed, keys cannot be chosen to collide.
    fn keyed_hash(&self, seed: &Seed) -> u64;
}

/// A map's random hashing key, drawn when the map is made and kept by its clones (odd, so
/// multiplying by it loses no bit).
#[derive(Clone, Debug)]
pub struct Seed {
    mix: u64,
}

impl Seed {
    /// A fresh random key.
    pub(super) fn new() -> Self {
        Self { mix: random_u64() | 1 }
    }

    /// The key, to mix into hashes.
    pub(super) fn mix(&self) -> u64 {
        self.mix
    }
}

/// A random number (from the standard library's per-process random hashing keys).
pub(super) fn random_u64() -> u64 {
    std::hash::RandomState::new().hash_one(0x5eed_u64)
}

/// The two halves of the 128-bit product of `a` and `b`, folded together: one fast mixing
/// step, in which every input bit reaches every output bit.
pub(super) fn fold_mul(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

const MIX_A: u64 = 0x9e37_79b9_7f4a_7c15;
const MIX_B: u64 = 0xbf58_476d_1ce4_e5b9;

/// Plain integers, which the tests place.
#[cfg(test)]
impl ShardKey for u64 {
    /// One folded multiply under the seed.
    fn keyed_hash(&self, seed: &Seed) -> u64 {
        fold_mul(*self ^ MIX_A, seed.mix)
    }
}

impl ShardKey for super::types::MetadataValue {
    /// The value's kind and bytes, eight at a time, each step a folded multiply.
    fn keyed_hash(&self, seed: &Seed) -> u64 {
        use super::types::MetadataValue as V;
        let (kind, bytes) = match self {
            V::RawString(s) => (1, s.as_bytes()),
            V::Image(b) => (2, b.as_slice()),
            V::Audio(b) => (3, b.as_slice()),
        };
        let mut h = fold_mul(seed.mix ^ kind, MIX_A ^ bytes.len() as u64);
        let mut words = bytes.chunks_exact(8);
        for word in words.by_ref() {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            h = fold_mul(h ^ u64::from_le_bytes(w), MIX_B);
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            h = fold_mul(h ^ u64::from_le_bytes(w), MIX_A);
        }
        fold_mul(h, seed.mix)
    }
}

/// A hash map split into shared shards by the key's hash; each operation hashes its key once.
#[derive(Clone, Debug)]
pub struct ShardedMap<K, V> {
    seed: Seed,
    shards: Vec<Arc<HashTable<(K, V)>>>,
}

impl<K: ShardKey, V: Clone> Default for ShardedMap<K, V> {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

/// The shard of a key with hash `h`: bits the tables inside do not use (they index buckets
/// by the low bits and tag them with the top seven).
fn shard_of(h: u64) -> usize {
    (h >> 48) as usize % SHARDS
}

impl<K: ShardKey, V: Clone> ShardedMap<K, V> {
    /// An empty map with room for about `capacity` keys.
    pub fn with_capacity(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS);
        Self { seed: Seed::new(), shards: (0..SHARDS).map(|_| Arc::new(HashTable::with_capacity(per_shard))).collect() }
    }

    /// The value of `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        let h = key.keyed_hash(&self.seed);
        self.shards[shard_of(h)].find(h, |(k, _)| k == key).map(|(_, v)| v)
    }

    /// The value of `key`, to write; its shard is copied first if a clone shares it.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let h = key.keyed_hash(&self.seed);
        let shard = &mut self.shards[shard_of(h)];
        shard.find(h, |(k, _)| k == key)?;
        Arc::make_mut(shard).find_mut(h, |(k, _)| k == key).map(|(_, v)| v)
    }

    /// The value of `key`, to write, made by `make` (and the key cloned) if absent; the key's
    /// shard is copied first if a clone shares it.
    pub fn get_or_insert_with(&mut self, key: &K, make: impl FnOnce() -> V) -> &mut V {
        &mut self.entry(key).or_insert_with(|| (key.clone(), make())).into_mut().1
    }

    /// Sets `key` to `value`; returns the value it replaces.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.entry(&key) {
            Entry::Occupied(mut o) => Some(std::mem::replace(&mut o.get_mut().1, value)),
            Entry::Vacant(v) => {
                v.insert((key, value));
                None
            }
        }
    }

    /// The place of `key` in its shard, found with one probe; the shard is copied first if a
    /// clone shares it.
    fn entry(&mut self, key: &K) -> Entry<'_, (K, V)> {
        let seed = &self.seed;
        let h = key.keyed_hash(seed);
        let shard = Arc::make_mut(&mut self.shards[shard_of(h)]);
        shard.entry(h, |(k, _)| k == key, |(k, _)| k.keyed_hash(seed))
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let h = key.keyed_hash(&self.seed);
        let shard = &mut self.shards[shard_of(h)];
        shard.find(h, |(k, _)| k == key)?;
        let found = Arc::make_mut(shard).find_entry(h, |(k, _)| k == key).ok()?;
        Some(found.remove().0.1)
    }

    /// Every key and value, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        self.shards.iter().flat_map(|s| s.iter().map(|(k, v)| (k, v)))
    }
}

/// A [`SlotSet`] of at most this many slots is one small sorted list.
const FEW_SLOTS: usize = 32;

/// log2 of the slot numbers one block of a larger [`SlotSet`] covers.
const BLOCK_SHIFT: u32 = 12;

/// A set of slots, iterated in ascending order.
#[derive(Clone, Debug)]
pub enum SlotSet {
    /// Few slots, sorted: one small allocation (most values of a high-cardinality key).
    Few(Vec<u32>),
    /// Sorted blocks, keyed by `slot >> BLOCK_SHIFT`, shared with clones until written.
    Blocks { blocks: BTreeMap<u32, Arc<Vec<u32>>>, len: usize },
}

impl Default for SlotSet {
    /// The empty set.
    fn default() -> Self {
        SlotSet::Few(Vec::new())
    }
}

impl SlotSet {
    /// The set of `slots`, which are ascending and distinct.
    pub fn from_ascending(slots: Vec<u32>) -> Self {
        debug_assert!(slots.is_sorted_by(|a, b| a < b));
        if slots.len() <= FEW_SLOTS {
            return SlotSet::Few(slots);
        }
        let blocks = slots
            .chunk_by(|a, b| a >> BLOCK_SHIFT == b >> BLOCK_SHIFT)
            .map(|block| (block[0] >> BLOCK_SHIFT, Arc::new(block.to_vec())))
            .collect();
        SlotSet::Blocks { blocks, len: slots.len() }
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        match self {
            SlotSet::Few(v) => v.len(),
            SlotSet::Blocks { len, .. } => *len,
        }
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `slot`; returns whether it was new.
    pub fn insert(&mut self, slot: u32) -> bool {
        match self {
            SlotSet::Few(v) => match v.binary_search(&slot) {
                Ok(_) => false,
                Err(at) if v.len() < FEW_SLOTS => {
                    v.insert(at, slot);
                    true
                }
                Err(_) => {
                    let mut blocks: BTreeMap<u32, Arc<Vec<u32>>> = BTreeMap::new();
                    for &s in v.iter() {
                        block_of(&mut blocks, s).push(s);
                    }
                    *self = SlotSet::Blocks { blocks, len: v.len() };
                    self.insert(slot)
                }
            },
            SlotSet::Blocks { blocks, len } => {
                // New slots mostly come in ascending order: the common case appends to the
                // last block, found without a search.
                let block = match blocks.last_entry() {
                    Some(last) if *last.key() == slot >> BLOCK_SHIFT => Arc::make_mut(last.into_mut()),
                    _ => block_of(blocks, slot),
                };
                if block.last().is_none_or(|&last| last < slot) {
                    block.push(slot);
                    *len += 1;
                    return true;
                }
                match block.binary_search(&slot) {
                    Ok(_) => false,
                    Err(at) => {
                        block.insert(at, slot);
                        *len += 1;
                        true
                    }
                }
            }
        }
    }

    /// Removes `slot`; returns whether it was there.
    pub fn remove(&mut self, slot: u32) -> bool {
        match self {
            SlotSet::Few(v) => v.binary_search(&slot).map(|at| v.remove(at)).is_ok(),
            SlotSet::Blocks { blocks, len } => {
                let key = slot >> BLOCK_SHIFT;
                let Some(block) = blocks.get_mut(&key) else { return false };
                let Ok(at) = block.binary_search(&slot) else { return false };
                Arc::make_mut(block).remove(at);
                if block.is_empty() {
                    blocks.remove(&key);
                }
                *len -= 1;
                true
            }
        }
    }

    /// Whether `slot` is in the set.
    #[cfg(test)]
    fn contains(&self, slot: u32) -> bool {
        match self {
            SlotSet::Few(v) => v.binary_search(&slot).is_ok(),
            SlotSet::Blocks { blocks, .. } => {
                blocks.get(&(slot >> BLOCK_SHIFT)).is_some_and(|b| b.binary_search(&slot).is_ok())
            }
        }
    }

    /// The slots, ascending.
    pub fn iter(&self) -> Box<dyn Iterator<Item = u32> + '_> {
        match self {
            SlotSet::Few(v) => Box::new(v.iter().copied()),
            SlotSet::Blocks { blocks, .. } => Box::new(blocks.values().flat_map(|b| b.iter().copied())),
        }
    }
}

/// The block `slot` belongs in, to write (made, or copied if a clone shares it).
fn block_of(blocks: &mut BTreeMap<u32, Arc<Vec<u32>>>, slot: u32) -> &mut Vec<u32> {
    Arc::make_mut(blocks.entry(slot >> BLOCK_SHIFT).or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_vec_clone_shares_all_but_the_written_chunk() {
        let mut v = ChunkedVec::new(4);
        for i in 0..100u32 {
            v.push(i);
        }
        let before = v.clone();
        v[37] = 1000;
        v.push(100);
        v.set_growing(120, 7, u32::MAX);
        assert_eq!((before[37], v[37]), (37, 1000));
        assert_eq!(before.len(), 100);
        assert_eq!(v.len(), 121);
        assert_eq!((v[100], v[101], v[120]), (100, u32::MAX, 7));
        assert_eq!(v.iter().copied().take(3).collect::<Vec<_>>(), [0, 1, 2]);
        let shared = v.chunks.iter().zip(&before.chunks).filter(|(a, b)| Arc::ptr_eq(a, b)).count();
        // Chunks 0..6 hold 0..100; chunk 2 was written and chunk 6 (the partial last) pushed.
        assert_eq!(shared, 5);
        assert_eq!(v.get(121), None);
    }

    #[test]
    fn a_sharded_map_clone_shares_all_but_the_written_shard() {
        let mut m: ShardedMap<u64, u32> = ShardedMap::default();
        let key = |i: u64| i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for i in 0..10_000 {
            assert_eq!(m.insert(key(i), i as u32), None);
        }
        let before = m.clone();
        assert_eq!(m.insert(key(5), 50), Some(5));
        *m.get_mut(&key(6)).expect("present") = 60;
        assert_eq!(m.remove(&key(7)), Some(7));
        assert_eq!(m.remove(&key(7)), None);
        assert_eq!((m.iter().count(), before.iter().count()), (9_999, 10_000));
        assert_eq!((m.get(&key(5)), before.get(&key(5))), (Some(&50), Some(&5)));
        assert_eq!(m.get(&key(7)), None);
        assert_eq!(before.get(&key(7)), Some(&7));
        let shared = m.shards.iter().zip(&before.shards).filter(|(a, b)| Arc::ptr_eq(a, b)).count();
        assert!(shared >= SHARDS - 3, "{shared} shards still shared");
    }

    #[test]
    fn a_slot_set_keeps_order_and_shares_unwritten_blocks() {
        let mut set = SlotSet::default();
        assert!(set.insert(5) && !set.insert(5));
        // Spread over many blocks, inserted out of order.
        let slots: Vec<u32> = (0..5_000u32).map(|i| (i * 7919) % 100_000).collect();
        for &s in &slots {
            set.insert(s);
        }
        let mut expected: Vec<u32> = slots.clone();
        expected.push(5);
        expected.sort_unstable();
        expected.dedup();
        assert_eq!(set.iter().collect::<Vec<_>>(), expected);
        assert_eq!(set.len(), expected.len());
        for n in [0, 1, FEW_SLOTS, FEW_SLOTS + 1, expected.len()] {
            let built = SlotSet::from_ascending(expected[..n].to_vec());
            assert_eq!((built.iter().collect::<Vec<_>>(), built.len()), (expected[..n].to_vec(), n));
        }
        let before = set.clone();
        assert!(set.remove(expected[10]));
        assert!(!set.remove(expected[10]));
        assert!(set.insert(200_000));
        assert!(!set.contains(expected[10]) && before.contains(expected[10]));
        assert_eq!((set.len(), before.len()), (expected.len(), expected.len()));
        let (SlotSet::Blocks { blocks: now, .. }, SlotSet::Blocks { blocks: then, .. }) = (&set, &before) else {
            panic!("a set this large is in blocks")
        };
        let shared = now.iter().filter(|(k, b)| then.get(k).is_some_and(|t| Arc::ptr_eq(t, b))).count();
        assert_eq!(shared, then.len() - 1, "only the block written was copied");
        for s in expected.iter().copied().filter(|&s| s != expected[10]) {
            assert!(set.remove(s), "slot {s}");
        }
        assert_eq!(set.iter().collect::<Vec<_>>(), [200_000]);

        // Ascending, as new slots mostly come: each one lands at the end of its block.
        let mut ascending = SlotSet::default();
        for s in (0..20_000u32).step_by(3) {
            assert!(ascending.insert(s), "slot {s}");
            assert!(!ascending.insert(s), "slot {s} again");
        }
        assert!(ascending.insert(4) && !ascending.insert(4), "a slot below the last of its block");
        let mut expected: Vec<u32> = (0..20_000u32).step_by(3).chain([4]).collect();
        expected.sort_unstable();
        assert_eq!(ascending.iter().collect::<Vec<_>>(), expected);
        assert_eq!(ascending.len(), expected.len());
        // An append to the last block of a set a clone shares copies that block first.
        let captured = ascending.clone();
        assert!(ascending.insert(20_001));
        assert!(ascending.contains(20_001) && !captured.contains(20_001));
        assert_eq!(captured.iter().collect::<Vec<_>>(), expected);
    }
}
