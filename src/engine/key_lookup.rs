//! A store's key lookup: from the hash of each stored key to the slot holding it.
//!
//! At a million keys the lookup is tens of MiB, so each lookup of a new key is a cache miss.
//! The table is built so that one miss is all it costs, and so that the miss can be started
//! early ([`KeyLookup::prefetch`]): the hash and its slot sit together in 16-byte buckets, four
//! to a cache line, probed linearly from a home bucket computed from the hash alone. The same
//! line serves the check that a key is new and the insert that follows.
//!
//! As in `chunked`, the table is split into shards shared with clones (snapshot captures) until
//! written, so a write after a capture copies one shard, not the table.
//!
//! Positions come from the key hash mixed with a random per-table seed; the key hashes are
//! themselves keyed by a per-process secret, so a client cannot choose keys that pile up in one
//! run of buckets.

use std::sync::Arc;

use super::chunked::{Seed, fold_mul};

/// Shards per table (a power of two): at 1M keys, a write after a capture copies one shard
/// of ~4k keys (8k buckets, 128 KiB).
const SHARD_BITS: u32 = 8;
const SHARDS: usize = 1 << SHARD_BITS;

/// Marks a bucket that holds nothing (no store reaches 2³² − 1 slots: its rows alone would
/// take terabytes).
const EMPTY: u32 = u32::MAX;

/// Buckets in a shard's first table.
const MIN_BUCKETS: usize = 8;

const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

/// One key hash and its slot.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    hash: u64,
    slot: u32,
}

const VACANT: Bucket = Bucket { hash: 0, slot: EMPTY };

/// One shard: open addressing with linear probing, at most three quarters full, and no
/// tombstones (a removal shifts the buckets after it back).
#[derive(Clone, Debug, Default)]
struct Shard {
    /// A power of two in length, or empty.
    buckets: Box<[Bucket]>,
    len: usize,
}

impl Shard {
    fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    /// The index of the bucket holding `hash`, or of the vacant bucket where it would go.
    fn probe(&self, position: u64, hash: u64) -> usize {
        let mask = self.mask();
        let mut i = position as usize & mask;
        loop {
            let b = &self.buckets[i];
            if b.slot == EMPTY || b.hash == hash {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    /// Makes room for one more key, doubling the table once it would pass three quarters.
    fn reserve_one(&mut self, seed: &Seed) {
        let buckets = self.buckets.len();
        if (self.len + 1) * 4 <= buckets * 3 {
            return;
        }
        let old = std::mem::replace(&mut self.buckets, vec![VACANT; (buckets * 2).max(MIN_BUCKETS)].into_boxed_slice());
        for b in old.iter().filter(|b| b.slot != EMPTY) {
            let i = self.probe(position_of(b.hash, seed), b.hash);
            self.buckets[i] = *b;
        }
    }
}

/// Where `hash` lives: the top bits pick the shard, the low bits the home bucket in it.
fn position_of(hash: u64, seed: &Seed) -> u64 {
    fold_mul(hash ^ MIX, seed.mix())
}

fn shard_of(position: u64) -> usize {
    (position >> (u64::BITS - SHARD_BITS)) as usize
}

/// The slot of each stored key's hash (one slot per hash: keys whose hashes collide are kept
/// apart by the store).
#[derive(Clone, Debug)]
pub struct KeyLookup {
    seed: Seed,
    shards: Vec<Arc<Shard>>,
}

impl Default for KeyLookup {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl KeyLookup {
    /// An empty lookup with room for about `capacity` keys before it grows.
    pub fn with_capacity(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS);
        let buckets = if per_shard == 0 { 0 } else { (per_shard * 4 / 3 + 1).next_power_of_two().max(MIN_BUCKETS) };
        let shard = Shard { buckets: vec![VACANT; buckets].into_boxed_slice(), len: 0 };
        Self { seed: Seed::new(), shards: (0..SHARDS).map(|_| Arc::new(shard.clone())).collect() }
    }

    /// The slot stored for `hash`.
    pub fn get(&self, hash: u64) -> Option<u32> {
        let position = position_of(hash, &self.seed);
        let shard = &self.shards[shard_of(position)];
        if shard.len == 0 {
            return None;
        }
        let b = shard.buckets[shard.probe(position, hash)];
        (b.slot != EMPTY).then_some(b.slot)
    }

    /// Starts loading the memory that a lookup of `hash` reads first, so that a lookup soon
    /// after finds it in cache. Changes nothing.
    pub fn prefetch(&self, hash: u64) {
        let position = position_of(hash, &self.seed);
        let shard = &self.shards[shard_of(position)];
        if let Some(bucket) = shard.buckets.get(position as usize & shard.buckets.len().wrapping_sub(1)) {
            prefetch_line(bucket);
        }
    }

    /// Sets `hash` to `slot`; returns the slot it replaces. The hash's shard is copied first if
    /// a clone shares it.
    pub fn insert(&mut self, hash: u64, slot: u32) -> Option<u32> {
        self.put(hash, slot, true)
    }

    /// Sets `hash` to `slot` if it has none; returns whether it had none. The hash's shard is
    /// copied first if a clone shares it, even when the hash is present (callers use it for keys
    /// they have just found absent).
    pub fn insert_if_absent(&mut self, hash: u64, slot: u32) -> bool {
        self.put(hash, slot, false).is_none()
    }

    fn put(&mut self, hash: u64, slot: u32, replace: bool) -> Option<u32> {
        assert_ne!(slot, EMPTY, "slot numbers stay below u32::MAX");
        let position = position_of(hash, &self.seed);
        let shard = Arc::make_mut(&mut self.shards[shard_of(position)]);
        shard.reserve_one(&self.seed);
        let i = shard.probe(position, hash);
        let b = &mut shard.buckets[i];
        if b.slot == EMPTY {
            *b = Bucket { hash, slot };
            shard.len += 1;
            return None;
        }
        let old = b.slot;
        if replace {
            b.slot = slot;
        }
        Some(old)
    }

    /// Removes `hash`; returns its slot. A shard shared with a clone is copied only when the
    /// hash is in it.
    pub fn remove(&mut self, hash: u64) -> Option<u32> {
        let position = position_of(hash, &self.seed);
        let shard = &mut self.shards[shard_of(position)];
        if shard.len == 0 {
            return None;
        }
        let mut hole = shard.probe(position, hash);
        if shard.buckets[hole].slot == EMPTY {
            return None;
        }
        // A copy keeps every bucket where it was, so the probe's answer still holds.
        let shard = Arc::make_mut(shard);
        let removed = shard.buckets[hole].slot;
        shard.len -= 1;
        // Shift back every later bucket of the run whose home is not between the hole and it,
        // so that every key stays reachable from its home without crossing a vacant bucket.
        let mask = shard.mask();
        let mut next = (hole + 1) & mask;
        loop {
            let b = shard.buckets[next];
            if b.slot == EMPTY {
                break;
            }
            let home = position_of(b.hash, &self.seed) as usize & mask;
            let distance_to_next = next.wrapping_sub(home) & mask;
            let distance_to_hole = hole.wrapping_sub(home) & mask;
            if distance_to_hole < distance_to_next {
                shard.buckets[hole] = b;
                hole = next;
            }
            next = (next + 1) & mask;
        }
        shard.buckets[hole] = VACANT;
        Some(removed)
    }

    /// How many hashes have a slot.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len).sum()
    }
}

/// Asks the CPU to start loading the cache line of `bucket`.
#[cfg(target_arch = "x86_64")]
fn prefetch_line(bucket: &Bucket) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    // SAFETY: a prefetch reads nothing the program sees and never faults; the pointer comes
    // from a reference, and SSE is part of the x86-64 baseline.
    unsafe { _mm_prefetch::<_MM_HINT_T0>((bucket as *const Bucket).cast()) }
}

#[cfg(not(target_arch = "x86_64"))]
fn prefetch_line(_bucket: &Bucket) {}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64, u32),
        InsertIfAbsent(u64, u32),
        Remove(u64),
        Snapshot,
    }

    /// Hashes drawn from a small set, so that inserts, replacements and removals meet.
    fn op() -> impl Strategy<Value = Op> {
        let hash = 0u64..600;
        prop_oneof![
            4 => (hash.clone(), 0u32..1000).prop_map(|(h, s)| Op::Insert(h, s)),
            4 => (hash.clone(), 0u32..1000).prop_map(|(h, s)| Op::InsertIfAbsent(h, s)),
            3 => hash.prop_map(Op::Remove),
            1 => Just(Op::Snapshot),
        ]
    }

    fn assert_same(lookup: &KeyLookup, model: &HashMap<u64, u32>) {
        assert_eq!(lookup.len(), model.len());
        for h in 0..600 {
            assert_eq!(lookup.get(h), model.get(&h).copied(), "hash {h}");
        }
    }

    proptest! {
        /// Every operation agrees with a plain map, and a clone taken at any point keeps the
        /// contents it had while the original goes on changing.
        #[test]
        fn behaves_as_a_map_and_clones_do_not_move(ops in proptest::collection::vec(op(), 1..3000)) {
            let mut lookup = KeyLookup::default();
            let mut model = HashMap::new();
            let mut snapshots = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(h, s) => prop_assert_eq!(lookup.insert(h, s), model.insert(h, s)),
                    Op::InsertIfAbsent(h, s) => {
                        let absent = !model.contains_key(&h);
                        if absent {
                            model.insert(h, s);
                        }
                        prop_assert_eq!(lookup.insert_if_absent(h, s), absent);
                    }
                    Op::Remove(h) => prop_assert_eq!(lookup.remove(h), model.remove(&h)),
                    Op::Snapshot => snapshots.push((lookup.clone(), model.clone())),
                }
            }
            assert_same(&lookup, &model);
            for (lookup, model) in &snapshots {
                assert_same(lookup, model);
            }
        }
    }

    /// Many keys in few shards make long runs that wrap around the end of a shard's table;
    /// removing every other key shifts buckets back across the wrap and keeps the rest found.
    #[test]
    fn removals_inside_long_runs_keep_every_other_key_reachable() {
        let mut lookup = KeyLookup::with_capacity(20_000);
        let hashes: Vec<u64> = (0..15_000u64).map(|i| i.wrapping_mul(0x2545_f491_4f6c_dd1d)).collect();
        for (slot, &h) in hashes.iter().enumerate() {
            assert!(lookup.insert_if_absent(h, slot as u32));
        }
        for (slot, &h) in hashes.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
            assert_eq!(lookup.remove(h), Some(slot as u32));
        }
        for (slot, &h) in hashes.iter().enumerate() {
            let expected = (slot % 2 == 1).then_some(slot as u32);
            assert_eq!(lookup.get(h), expected, "key {slot}");
        }
        assert_eq!(lookup.len(), 7_500);
        assert_eq!(lookup.remove(hashes[0]), None);
    }

    #[test]
    fn a_clone_shares_all_but_the_written_shards() {
        let mut lookup = KeyLookup::default();
        let hash = |i: u64| i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for i in 0..10_000 {
            assert!(lookup.insert_if_absent(hash(i), i as u32));
        }
        let before = lookup.clone();
        assert_eq!(lookup.insert(hash(5), 50), Some(5));
        assert!(!lookup.insert_if_absent(hash(6), 60), "a present hash keeps its slot");
        assert_eq!(lookup.remove(hash(7)), Some(7));
        assert_eq!((lookup.get(hash(5)), lookup.get(hash(6)), lookup.get(hash(7))), (Some(50), Some(6), None));
        assert_eq!((before.get(hash(5)), before.get(hash(7)), before.len()), (Some(5), Some(7), 10_000));
        let shared = lookup.shards.iter().zip(&before.shards).filter(|(a, b)| Arc::ptr_eq(a, b)).count();
        assert!(shared >= SHARDS - 3, "{shared} shards still shared");
    }

    #[test]
    fn prefetch_changes_nothing_even_on_an_empty_table() {
        let mut lookup = KeyLookup::default();
        lookup.prefetch(7);
        assert_eq!(lookup.get(7), None);
        lookup.insert(7, 3);
        lookup.prefetch(7);
        lookup.prefetch(8);
        assert_eq!((lookup.get(7), lookup.get(8), lookup.len()), (Some(3), None, 1));
    }
}
