//! A plain in-memory model of what a log holds, for crash tests and fuzzing: the records the
//! WAL was asked to write, applied in order with no files at all.
//!
//! After a crash the WAL must hold exactly the result of some prefix of the issued records that
//! contains every acknowledged one; [`matching_prefix`] finds that prefix or proves there is
//! none.

use std::collections::BTreeMap;

use super::{Entry, LogPos, Wal, WalError};

/// One write as issued to the WAL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Issued {
    /// An appended entry.
    Entry(Entry),
    /// Entries from this index on were removed.
    Truncate(u64),
    /// Entries up to this position were purged.
    Purge(LogPos),
    /// A metadata slot was set.
    Meta(u8, Vec<u8>),
}

/// What a log holds: its live entries, purge point and metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogModel {
    /// The live entries, in order.
    pub entries: Vec<Entry>,
    /// The purge point.
    pub purged: Option<LogPos>,
    /// Every metadata slot that was set.
    pub meta: BTreeMap<u8, Vec<u8>>,
}

impl LogModel {
    /// Applies one issued write.
    pub fn apply(&mut self, rec: &Issued) {
        match rec {
            Issued::Entry(e) => self.entries.push(e.clone()),
            Issued::Truncate(f) => self.entries.retain(|e| e.index < *f),
            Issued::Purge(p) => {
                self.entries.retain(|e| e.index > p.index);
                self.purged = Some(*p);
            }
            Issued::Meta(slot, v) => {
                self.meta.insert(*slot, v.clone());
            }
        }
    }

    /// The index the next entry gets (1 for a fresh log).
    pub fn next_index(&self) -> u64 {
        self.entries.last().map(|e| e.index + 1).or(self.purged.map(|p| p.index + 1)).unwrap_or(1)
    }

    /// What `wal` holds, reading metadata slots `0..meta_slots`.
    pub fn read_from(wal: &Wal, meta_slots: u8) -> Result<Self, WalError> {
        let meta = (0..meta_slots).filter_map(|s| wal.meta(s).map(|v| (s, v.to_vec()))).collect();
        Ok(Self { entries: wal.read(0..u64::MAX)?, purged: wal.bounds().purged, meta })
    }
}

/// The length of the shortest prefix of `issued`, at least `acked` long, that turns `base` into
/// `found`; `None` if no such prefix exists.
pub fn matching_prefix(base: &LogModel, issued: &[Issued], acked: usize, found: &LogModel) -> Option<usize> {
    let mut m = base.clone();
    for k in 0..=issued.len() {
        if k >= acked && m == *found {
            return Some(k);
        }
        if let Some(rec) = issued.get(k) {
            m.apply(rec);
        }
    }
    None
}
