//! The in-memory map from entry index to where the entry is, and the rules that keep a log
//! contiguous. Recovery, the writer and the front end all apply records through this one type,
//! so a log replayed from disk follows exactly the rules the live log followed.

use std::collections::VecDeque;

/// A contiguous run of entries, each with a value of type `T` (its location, or nothing).
///
/// An unanchored log is empty and accepts any index as its first entry; once anchored, every
/// appended index must be the next one.
#[derive(Debug, Clone)]
pub(crate) struct LogIndex<T> {
    first: Option<u64>,
    slots: VecDeque<T>,
}

/// Why an entry cannot be added or a truncation applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gap {
    /// The entry's index is not the next one.
    NotNext { expected: u64, got: u64 },
    /// A truncation point lies past the end of the log.
    TruncateBeyondEnd { next: u64, first_removed: u64 },
}

impl std::fmt::Display for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Gap::NotNext { expected, got } => {
                write!(f, "entry index {got} does not follow the log (expected {expected})")
            }
            Gap::TruncateBeyondEnd { next, first_removed } => {
                write!(f, "truncation at {first_removed} is past the end of the log (next index {next})")
            }
        }
    }
}

impl<T> LogIndex<T> {
    /// An empty log whose next entry must be `first`, or any entry if `None`.
    pub(crate) fn new(first: Option<u64>) -> Self {
        Self { first, slots: VecDeque::new() }
    }

    /// The index the next appended entry must have, if anchored.
    pub(crate) fn next_index(&self) -> Option<u64> {
        self.first.map(|f| f + self.slots.len() as u64)
    }

    /// Index of the first live entry, if any.
    pub(crate) fn first_live(&self) -> Option<u64> {
        if self.slots.is_empty() { None } else { self.first }
    }

    /// Index of the last live entry, if any.
    pub(crate) fn last_live(&self) -> Option<u64> {
        self.next_index().filter(|_| !self.slots.is_empty()).map(|n| n - 1)
    }

    /// Checks that `index` may be appended next.
    pub(crate) fn check_next(&self, index: u64) -> Result<(), Gap> {
        match self.next_index() {
            Some(expected) if expected != index => Err(Gap::NotNext { expected, got: index }),
            _ => Ok(()),
        }
    }

    /// Appends the entry at `index`.
    pub(crate) fn push(&mut self, index: u64, value: T) -> Result<(), Gap> {
        self.check_next(index)?;
        self.first.get_or_insert(index);
        self.slots.push_back(value);
        Ok(())
    }

    /// Checks that entries from `first_removed` on may be removed.
    pub(crate) fn check_truncate(&self, first_removed: u64) -> Result<(), Gap> {
        match self.next_index() {
            Some(next) if first_removed > next => Err(Gap::TruncateBeyondEnd { next, first_removed }),
            _ => Ok(()),
        }
    }

    /// Removes every entry with an index ≥ `first_removed`; the next entry must then be
    /// `first_removed`. (A truncation may reach below the first entry this index holds: the
    /// entries it removes can be in segments already deleted.)
    pub(crate) fn truncate_from(&mut self, first_removed: u64) -> Result<(), Gap> {
        self.check_truncate(first_removed)?;
        let Some(first) = self.first else { return Ok(()) };
        if first_removed <= first {
            self.slots.clear();
            self.first = Some(first_removed);
        } else {
            self.slots.truncate((first_removed - first) as usize);
        }
        Ok(())
    }

    /// Drops every entry with an index ≤ `upto`; the log continues at `upto + 1` at the earliest.
    pub(crate) fn purge_to(&mut self, upto: u64) {
        let first = *self.first.get_or_insert(upto + 1);
        if upto >= first {
            let n = ((upto + 1 - first) as usize).min(self.slots.len());
            self.slots.drain(..n);
            self.first = Some(upto + 1);
        }
    }

    /// The same log without the values: its anchor and its length.
    pub(crate) fn shape(&self) -> LogIndex<()> {
        LogIndex { first: self.first, slots: self.slots.iter().map(|_| ()).collect() }
    }

    /// The value of the last live entry, if any.
    pub(crate) fn last(&self) -> Option<&T> {
        self.slots.back()
    }

    /// The value at `index`, if live.
    pub(crate) fn get(&self, index: u64) -> Option<&T> {
        let first = self.first?;
        self.slots.get(usize::try_from(index.checked_sub(first)?).ok()?)
    }

    /// The value at `index`, if live, for update.
    pub(crate) fn get_mut(&mut self, index: u64) -> Option<&mut T> {
        let first = self.first?;
        self.slots.get_mut(usize::try_from(index.checked_sub(first)?).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguity_truncate_and_purge() {
        let mut ix = LogIndex::new(None);
        ix.push(5, 'a').expect("first entry anchors");
        ix.push(6, 'b').expect("next");
        assert_eq!(ix.push(8, 'x'), Err(Gap::NotNext { expected: 7, got: 8 }));
        assert_eq!(ix.check_truncate(8), Err(Gap::TruncateBeyondEnd { next: 7, first_removed: 8 }));
        ix.truncate_from(6).expect("truncate");
        assert_eq!((ix.first_live(), ix.last_live()), (Some(5), Some(5)));
        ix.purge_to(9);
        assert_eq!((ix.first_live(), ix.next_index()), (None, Some(10)));
        ix.truncate_from(10).expect("no-op at the end");
        assert_eq!(ix.next_index(), Some(10));
        let mut ix = LogIndex::new(Some(20));
        ix.push(20, 'a').expect("anchored");
        ix.truncate_from(12).expect("below the first entry held");
        assert_eq!((ix.first_live(), ix.next_index()), (None, Some(12)));
    }

    #[test]
    fn purge_below_the_anchor_changes_nothing() {
        let mut ix = LogIndex::new(Some(20));
        ix.push(20, ()).expect("anchored");
        ix.purge_to(3);
        assert_eq!((ix.first_live(), ix.last_live()), (Some(20), Some(20)));
        assert!(ix.get(19).is_none() && ix.get(20).is_some() && ix.get(21).is_none());
    }
}
