//! Helpers shared by the WAL tests.

use std::path::Path;

use ahnlich_raft::wal::{self, Entry, Wal, WalError};

/// A payload that can be recomputed from its index and term, with a length that varies: mostly
/// small, and every eighth entry a few KiB, so that the writer's in-place path for large
/// payloads is crossed too.
pub fn payload_for(index: u64, term: u64) -> bytes::Bytes {
    let len = if index % 8 == 5 {
        2000 + (index.wrapping_mul(37) % 3000) as usize
    } else {
        (index.wrapping_mul(37) % 120 + 1) as usize
    };
    (0..len).map(|i| (index as u8).wrapping_mul(31) ^ (term as u8) ^ (i as u8)).collect::<Vec<u8>>().into()
}

/// The entry at `index` of `term` with its recomputable payload.
pub fn entry(index: u64, term: u64) -> Entry {
    Entry { index, term, payload: payload_for(index, term) }
}

/// Appends entries and waits until they are durable.
pub fn append_durable(wal: &Wal, entries: Vec<Entry>) -> std::io::Result<()> {
    wal::wait(|done| wal.append(entries, done))
}

/// Appends `entries` one at a time, each waited for until durable (each its own write batch),
/// and returns them.
pub fn append_each_durable(wal: &Wal, entries: Vec<Entry>) -> Vec<Entry> {
    for e in &entries {
        append_durable(wal, vec![e.clone()]).expect("append");
    }
    entries
}

/// Every live entry.
pub fn read_all(wal: &Wal) -> Result<Vec<Entry>, WalError> {
    wal.read(0..u64::MAX)
}

/// Copies the regular files of `from` into `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy dir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("dir entry");
        if e.file_type().expect("file type").is_file() && e.file_name() != "LOCK" {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy file");
        }
    }
}

/// The segment files of `dir`, oldest first.
pub fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.len() == 24 && name.ends_with(".wal")
        })
        .collect();
    v.sort();
    v
}
