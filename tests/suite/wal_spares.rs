//! Purged segments kept for reuse: as many as `max_spares`, used up by later rotations before
//! any new file is zero-filled, and never a source of stale entries, across reopens.

use std::path::Path;

use crate::support::wal_util::{append_each_durable, entry, read_all, segment_files};
use ahnlich_raft::wal::{self, Entry, LogPos, Wal, WalOptions};
use tempfile::TempDir;

fn options(max_spares: usize) -> WalOptions {
    WalOptions { segment_size: 4096, preallocate: true, max_spares }
}

fn spare_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("read dir")
        .filter(|e| {
            let name = e.as_ref().expect("dir entry").file_name().to_string_lossy().into_owned();
            name.starts_with("spare-") && name.ends_with(".wal")
        })
        .count()
}

fn append_range(wal: &Wal, from: u64, to: u64) -> Vec<Entry> {
    append_each_durable(wal, (from..=to).map(|i| entry(i, 1)).collect())
}

/// Appends one entry at a time from `from` until the log has made `rotations` new segments;
/// returns the entries appended.
fn append_until_rotated(wal: &Wal, dir: &Path, from: u64, rotations: usize) -> Vec<Entry> {
    let newest = |dir: &Path| segment_files(dir).last().cloned();
    let mut seen = vec![newest(dir)];
    let mut appended = Vec::new();
    let mut index = from;
    while seen.len() <= rotations {
        appended.extend(append_range(wal, index, index));
        index += 1;
        let now = newest(dir);
        if seen.last() != Some(&now) {
            seen.push(now);
        }
    }
    appended
}

#[test]
fn a_purge_keeps_at_most_max_spares_and_rotations_use_them_before_zero_filling_more() {
    for max_spares in [1, 4] {
        let dir = TempDir::new().expect("tempdir");
        let wal = Wal::open(dir.path(), options(max_spares)).expect("open");
        let mut entries = append_range(&wal, 1, 120);
        let before = segment_files(dir.path()).len();
        assert!(before >= 8, "the log must span at least 8 segments, got {before}");

        wal::wait(|done| wal.purge_to(LogPos { index: 110, term: 1 }, done)).expect("purge");
        // The writer removes purged segments after completing the purge: done by the next sync.
        wal.sync().expect("sync");
        let after = segment_files(dir.path()).len();
        assert!(before - after >= 6, "the purge removed {} of {before} segments", before - after);
        // Purged segments fill the pool up to `max_spares`; a zero-filled spare the last
        // rotation asked for may still join them.
        let spares = spare_files(dir.path());
        assert!((max_spares..=max_spares + 1).contains(&spares), "max_spares {max_spares}: {spares} spares");
        entries.drain(..110);
        assert_eq!(read_all(&wal).expect("read"), entries);
        drop(wal);

        // Reopened, the spares are found again; each rotation takes one, and none is
        // zero-filled while one is left.
        let wal = Wal::open(dir.path(), options(max_spares)).expect("reopen");
        let spares = spare_files(dir.path());
        assert_eq!(wal.stats().spares.get(), spares as i64, "spares found on open");
        let rotations = spares - 1;
        entries.extend(append_until_rotated(&wal, dir.path(), 121, rotations));
        assert_eq!(spare_files(dir.path()), 1, "max_spares {max_spares}: {rotations} rotations took one spare each");
        assert_eq!(read_all(&wal).expect("read"), entries);
        drop(wal);

        // The reused files' old records never come back.
        let wal = Wal::open(dir.path(), options(max_spares)).expect("reopen");
        assert_eq!(read_all(&wal).expect("read"), entries, "max_spares {max_spares}");
    }
}
