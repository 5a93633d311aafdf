//! The newest log entries, kept in memory as openraft handed them to the log store, so the
//! reads that follow an append (replication to followers, then apply) take them from here
//! instead of decoding them again from the WAL.
//!
//! The cache holds a run of consecutive indices ending at the newest entry it was given, never
//! more than [`MAX_ENTRIES`] entries or [`MAX_BYTES`] bytes (counted as their encodings).
//! Whatever it holds equals what the WAL holds at the same index: callers drop entries here
//! before truncating or purging the WAL, and add them only after the WAL took them. A read it
//! cannot answer whole is answered by the WAL.

use std::collections::VecDeque;
use std::ops::Range;

/// Entries kept at most.
pub const MAX_ENTRIES: usize = 1 << 16;
/// Encoded bytes kept at most. A cached entry holds its command both decoded and encoded
/// ([`super::logged`]; on a follower, the encoding is a slice of the buffer its message
/// arrived in), so the cache takes about 2.5 times this in memory.
pub const MAX_BYTES: usize = 32 << 20;

/// A run of consecutive log entries, newest last.
pub struct EntryCache<E> {
    /// (index, entry, encoded bytes), indices consecutive.
    entries: VecDeque<(u64, E, usize)>,
    bytes: usize,
}

impl<E> Default for EntryCache<E> {
    fn default() -> Self {
        Self { entries: VecDeque::new(), bytes: 0 }
    }
}

impl<E: Clone> EntryCache<E> {
    /// Adds the entry at `index` (the next after the newest held, or the cache starts over
    /// from it), `bytes` long once encoded; drops the oldest beyond the bounds.
    pub fn push(&mut self, index: u64, entry: E, bytes: usize) {
        if self.entries.back().is_some_and(|(last, _, _)| last.checked_add(1) != Some(index)) {
            self.clear();
        }
        self.entries.push_back((index, entry, bytes));
        self.bytes += bytes;
        while self.entries.len() > MAX_ENTRIES || (self.bytes > MAX_BYTES && self.entries.len() > 1) {
            self.pop_front();
        }
    }

    /// Drops the entries at `index` and after.
    pub fn truncate_from(&mut self, index: u64) {
        while self.entries.back().is_some_and(|(i, _, _)| *i >= index) {
            if let Some((_, _, b)) = self.entries.pop_back() {
                self.bytes -= b;
            }
        }
    }

    /// Drops the entries at `index` and before.
    pub fn purge_to(&mut self, index: u64) {
        while self.entries.front().is_some_and(|(i, _, _)| *i <= index) {
            self.pop_front();
        }
    }

    /// Copies of the entries in `range`, if the cache holds every one of them.
    pub fn get(&self, range: &Range<u64>) -> Option<Vec<E>> {
        let first = self.entries.front()?.0;
        let last = self.entries.back()?.0;
        if range.start < first || range.end > last + 1 {
            return None;
        }
        if range.start >= range.end {
            return Some(Vec::new());
        }
        let from = (range.start - first) as usize;
        let to = (range.end - first) as usize;
        Some(self.entries.range(from..to).map(|(_, e, _)| e.clone()).collect())
    }

    fn pop_front(&mut self) {
        if let Some((_, _, b)) = self.entries.pop_front() {
            self.bytes -= b;
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(indices: Range<u64>) -> EntryCache<u64> {
        let mut c = EntryCache::default();
        for i in indices {
            c.push(i, i * 10, 1);
        }
        c
    }

    #[test]
    fn answers_only_ranges_it_holds_whole() {
        let c = filled(5..10);
        assert_eq!(c.get(&(5..10)), Some(vec![50, 60, 70, 80, 90]));
        assert_eq!(c.get(&(7..8)), Some(vec![70]));
        assert_eq!(c.get(&(4..8)), None, "starts before the oldest held");
        assert_eq!(c.get(&(8..11)), None, "ends after the newest held: the WAL may have more");
        assert_eq!(EntryCache::<u64>::default().get(&(0..1)), None);
    }

    #[test]
    fn truncate_purge_and_gaps_keep_it_a_suffix_of_the_log() {
        let mut c = filled(1..6);
        c.truncate_from(4);
        assert_eq!(c.get(&(1..4)), Some(vec![10, 20, 30]));
        assert_eq!(c.get(&(1..5)), None);
        c.push(4, 400, 1);
        assert_eq!(c.get(&(3..5)), Some(vec![30, 400]), "a re-appended index holds the new entry");
        c.purge_to(2);
        assert_eq!(c.get(&(2..4)), None);
        assert_eq!(c.get(&(3..5)), Some(vec![30, 400]));
        c.push(9, 900, 1);
        assert_eq!(c.get(&(3..5)), None, "a gap starts the cache over");
        assert_eq!(c.get(&(9..10)), Some(vec![900]));
    }

    #[test]
    fn stays_within_its_bounds() {
        let mut c = EntryCache::default();
        for i in 0..10u64 {
            c.push(i, i, MAX_BYTES / 4);
        }
        assert_eq!(c.get(&(6..10)), Some(vec![6, 7, 8, 9]));
        assert_eq!(c.get(&(5..10)), None);
        let mut big = EntryCache::default();
        big.push(1, 1u64, MAX_BYTES * 2);
        assert_eq!(big.get(&(1..2)), Some(vec![1]), "the newest entry stays even when over the bound");
        let c = filled(0..(MAX_ENTRIES as u64 + 10));
        assert_eq!(c.get(&(9..11)), None);
        assert!(c.get(&(10..11)).is_some());
    }
}
