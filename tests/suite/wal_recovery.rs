//! Recovery from damaged files: every cut of the last segment, bit flips everywhere, absurd
//! lengths, and the directory lock.

use std::path::Path;
use std::sync::Arc;

use crate::support::wal_util::{append_durable, append_each_durable, copy_dir, entry, read_all, segment_files};
use ahnlich_raft::wal::sim_fs::{SimFs, SimRng};
use ahnlich_raft::wal::{Entry, LogPos, Wal, WalError, WalOptions};
use tempfile::TempDir;

fn small_segments() -> WalOptions {
    WalOptions { segment_size: 4096, preallocate: false, ..WalOptions::default() }
}

/// Writes `n` entries, one sync each, so that every entry is its own write batch.
fn write_log(dir: &Path, n: u64, opts: WalOptions) -> Vec<Entry> {
    let wal = Wal::open(dir, opts).expect("open");
    append_each_durable(&wal, (1..=n).map(|i| entry(i, 1 + i / 20)).collect())
}

#[test]
fn every_cut_of_the_last_segment_keeps_exactly_the_whole_records_before_it() {
    let src = TempDir::new().expect("tempdir");
    let entries = write_log(src.path(), 90, small_segments());
    let segments = segment_files(src.path());
    assert!(segments.len() >= 3, "the log must span at least 3 segments, got {}", segments.len());
    let last = segments.last().expect("a segment").clone();
    let last_name = last.file_name().expect("name").to_owned();
    let full = std::fs::read(&last).expect("read last segment");

    // Where each entry of the last segment ends, from a clean read of that segment.
    let in_last: Vec<(usize, u64)> = ends_of_entries_in(&full, &entries);
    let before_last = in_last.first().map_or(entries.len() as u64, |&(_, first)| first - 1);

    for cut in 0..=full.len() {
        let work = TempDir::new().expect("tempdir");
        copy_dir(src.path(), work.path());
        let f = std::fs::OpenOptions::new().write(true).open(work.path().join(&last_name)).expect("open");
        f.set_len(cut as u64).expect("truncate");
        drop(f);

        let expected_last =
            in_last.iter().filter(|&&(end, _)| end <= cut).map(|&(_, i)| i).next_back().unwrap_or(before_last);
        let wal = Wal::open(work.path(), small_segments()).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let got = read_all(&wal).expect("read");
        assert_eq!(got, entries[..expected_last as usize], "cut at {cut}");

        // The log continues cleanly after the cut, and the continuation survives a reopen.
        let next = entry(expected_last + 1, 99);
        append_durable(&wal, vec![next.clone()]).expect("append after cut");
        drop(wal);
        let wal = Wal::open(work.path(), small_segments()).expect("reopen");
        let got = read_all(&wal).expect("read");
        assert_eq!(got.len() as u64, expected_last + 1, "cut at {cut}");
        assert_eq!(got.last(), Some(&next), "cut at {cut}");
    }
}

/// The end offset of each entry record in `segment`, found by locating each entry's payload.
fn ends_of_entries_in(segment: &[u8], entries: &[Entry]) -> Vec<(usize, u64)> {
    use ahnlich_raft::wal::format::{SEGMENT_HEADER_LEN, SegmentHeader, decode_record};
    let salt = SegmentHeader::decode(segment).expect("header").salt;
    let mut pos = SEGMENT_HEADER_LEN;
    let mut out = Vec::new();
    while let Ok(rec) = decode_record(&segment[pos..], salt, pos as u64) {
        pos += rec.encoded_len();
        if rec.kind == ahnlich_raft::wal::format::RecordKind::Entry {
            assert_eq!(rec.payload, &entries[rec.index as usize - 1].payload[..]);
            out.push((pos, rec.index));
        }
    }
    out
}

/// Builds a small log on the simulated file system and returns it with its files.
fn sim_log(n: u64) -> (SimFs, Vec<Entry>, Vec<std::path::PathBuf>) {
    let fs = SimFs::new(7);
    let dir = Path::new("/wal");
    let wal = Wal::open_with_fs(Arc::new(fs.clone()), dir, small_segments()).expect("open");
    let entries = append_each_durable(&wal, (1..=n).map(|i| entry(i, 1)).collect());
    drop(wal);
    let mut files: Vec<_> = ahnlich_raft::wal::fs::Fs::list(&fs, dir)
        .expect("list")
        .into_iter()
        .filter(|n| n.ends_with(".wal") && n.len() == 24)
        .map(|n| dir.join(n))
        .collect();
    files.sort();
    (fs, entries, files)
}

/// Flips `bit` of `file`, opens the log, and checks the outcome against where the bit was.
fn check_flip(fs: &SimFs, entries: &[Entry], files: &[std::path::PathBuf], file_ix: usize, bit: usize) {
    let path = &files[file_ix];
    let good = fs.read_file(path).expect("read");
    let mut bad = good.clone();
    bad[bit / 8] ^= 1 << (bit % 8);
    fs.write_file_durable(path, &bad).expect("damage");

    let is_last_file = file_ix + 1 == files.len();
    let last_record_start = if is_last_file { last_record_offset(&good) } else { usize::MAX };
    let in_tail_record = bit / 8 >= last_record_start;
    match Wal::open_with_fs(Arc::new(fs.clone()), Path::new("/wal"), small_segments()) {
        Ok(wal) => {
            assert!(in_tail_record, "flip of bit {bit} in {} went unnoticed", path.display());
            let got = read_all(&wal).expect("read");
            // Never a damaged record: what comes back is a prefix of what was written.
            assert!(got.len() <= entries.len() && got == entries[..got.len()], "bit {bit}");
        }
        Err(WalError::Corrupt { file, .. }) => {
            assert!(!in_tail_record, "damage in the tail record at bit {bit} should be cut, not refused");
            assert_eq!(&file, path, "the error names the damaged file");
        }
        Err(e) => panic!("bit {bit}: unexpected error {e}"),
    }
    fs.write_file_durable(path, &good).expect("restore");
}

fn last_record_offset(segment: &[u8]) -> usize {
    use ahnlich_raft::wal::format::{SEGMENT_HEADER_LEN, SegmentHeader, decode_record};
    let salt = SegmentHeader::decode(segment).expect("header").salt;
    let (mut pos, mut last) = (SEGMENT_HEADER_LEN, SEGMENT_HEADER_LEN);
    while let Ok(rec) = decode_record(&segment[pos..], salt, pos as u64) {
        last = pos;
        pos += rec.encoded_len();
    }
    last
}

#[test]
fn every_bit_flip_of_a_small_log_is_cut_at_the_tail_or_reported() {
    let (fs, entries, files) = sim_log(60);
    assert!(files.len() >= 2, "spans segments");
    for (ix, path) in files.iter().enumerate() {
        let bits = fs.read_file(path).expect("read").len() * 8;
        for bit in 0..bits {
            check_flip(&fs, &entries, &files, ix, bit);
        }
    }
}

#[test]
fn sampled_bit_flips_of_a_larger_log_are_cut_at_the_tail_or_reported() {
    let (fs, entries, files) = sim_log(400);
    assert!(files.len() >= 8, "spans many segments");
    let mut rng = SimRng::new(11);
    for _ in 0..3000 {
        let ix = rng.below(files.len() as u64) as usize;
        let bits = fs.read_file(&files[ix]).expect("read").len() * 8;
        check_flip(&fs, &entries, &files, ix, rng.below(bits as u64) as usize);
    }
}

#[test]
fn absurd_record_lengths_never_allocate_or_panic() {
    use ahnlich_raft::wal::format::SEGMENT_HEADER_LEN;
    for (len, is_tail) in [(u32::MAX, true), (0x0fff_ffff, true), (200 << 20, true), (u32::MAX, false)] {
        let (fs, entries, files) = sim_log(3);
        let last = files.last().expect("segment");
        let mut bytes = fs.read_file(last).expect("read");
        let at = if is_tail { last_record_offset(&bytes) } else { SEGMENT_HEADER_LEN };
        bytes[at + 4..at + 8].copy_from_slice(&len.to_le_bytes());
        fs.write_file_durable(last, &bytes).expect("damage");
        let opened = Wal::open_with_fs(Arc::new(fs.clone()), Path::new("/wal"), small_segments());
        match (opened, is_tail) {
            (Ok(wal), true) => assert!(read_all(&wal).expect("read").len() < entries.len() + 1),
            (Err(WalError::Corrupt { offset, .. }), false) => assert_eq!(offset, SEGMENT_HEADER_LEN as u64),
            (other, _) => panic!("length {len:#x} at the tail={is_tail}: {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn a_missing_middle_segment_is_reported() {
    let dir = TempDir::new().expect("tempdir");
    write_log(dir.path(), 90, small_segments());
    let segments = segment_files(dir.path());
    std::fs::remove_file(&segments[1]).expect("remove");
    match Wal::open(dir.path(), small_segments()) {
        Err(WalError::Corrupt { file, .. }) => assert_eq!(file, segments[1]),
        other => panic!("expected corruption, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_second_opener_gets_a_clear_error() {
    let dir = TempDir::new().expect("tempdir");
    let _first = Wal::open(dir.path(), small_segments()).expect("open");
    match Wal::open(dir.path(), small_segments()) {
        Err(e @ WalError::Locked { .. }) => assert!(e.to_string().contains("in use by another process"), "{e}"),
        other => panic!("expected a lock error, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn truncated_entries_never_come_back_after_reopen() {
    let dir = TempDir::new().expect("tempdir");
    let wal = Wal::open(dir.path(), small_segments()).expect("open");
    append_durable(&wal, (1..=50).map(|i| entry(i, 1)).collect()).expect("append");
    ahnlich_raft::wal::wait(|done| wal.truncate_from(20, done)).expect("truncate");
    append_durable(&wal, (20..=30).map(|i| entry(i, 2)).collect()).expect("append new tail");
    drop(wal);
    let wal = Wal::open(dir.path(), small_segments()).expect("reopen");
    let got = read_all(&wal).expect("read");
    let want: Vec<Entry> = (1..20).map(|i| entry(i, 1)).chain((20..=30).map(|i| entry(i, 2))).collect();
    assert_eq!(got, want);
}

#[test]
fn records_cut_from_a_torn_batch_never_come_back_after_new_writes() {
    use ahnlich_raft::wal::format::{SEGMENT_HEADER_LEN, SegmentHeader, decode_record};
    let dir = TempDir::new().expect("tempdir");
    let opts = WalOptions { segment_size: 1 << 20, preallocate: false, ..WalOptions::default() };
    {
        let wal = Wal::open(dir.path(), opts.clone()).expect("open");
        for i in 1..=3 {
            append_durable(&wal, vec![entry(i, 1)]).expect("append");
        }
        // One write batch: 4..=8. Damage 5 as a torn write would, leaving 6..=8 intact.
        append_durable(&wal, (4..=8).map(|i| entry(i, 1)).collect()).expect("append batch");
    }
    let seg = segment_files(dir.path()).pop().expect("segment");
    let mut bytes = std::fs::read(&seg).expect("read");
    let salt = SegmentHeader::decode(&bytes).expect("header").salt;
    let mut pos = SEGMENT_HEADER_LEN;
    let mut fifth = None;
    while let Ok(rec) = decode_record(&bytes[pos..], salt, pos as u64) {
        if rec.index == 5 {
            fifth = Some(pos);
        }
        pos += rec.encoded_len();
    }
    let fifth = fifth.expect("entry 5 on disk");
    bytes[fifth + 40] ^= 0xff;
    std::fs::write(&seg, &bytes).expect("damage");

    let wal = Wal::open(dir.path(), opts.clone()).expect("a torn batch is cut, not refused");
    assert_eq!(read_all(&wal).expect("read"), (1..=4).map(|i| entry(i, 1)).collect::<Vec<_>>());
    // A new entry 5 of the same size ends exactly where the old 6 began.
    append_durable(&wal, vec![entry(5, 2)]).expect("append");
    drop(wal);
    let wal = Wal::open(dir.path(), opts).expect("reopen");
    let want: Vec<Entry> = (1..=4).map(|i| entry(i, 1)).chain([entry(5, 2)]).collect();
    assert_eq!(read_all(&wal).expect("read"), want, "old entries 6..=8 must stay gone");
}

#[test]
fn inspect_reports_a_torn_tail_without_touching_it() {
    let dir = TempDir::new().expect("tempdir");
    write_log(dir.path(), 10, small_segments());
    let seg = segment_files(dir.path()).pop().expect("segment");
    let whole = std::fs::read(&seg).expect("read");
    let torn_at = last_record_offset(&whole);
    let torn = &whole[..whole.len() - 5];
    std::fs::write(&seg, torn).expect("tear the last record");

    let fs = ahnlich_raft::wal::fs::OsFs;
    let report = ahnlich_raft::wal::inspect(&fs, dir.path()).expect("inspect");
    assert_eq!(report.bounds.last.map(|p| p.index), Some(9));
    assert_eq!(report.repairs.len(), 1, "{report}");
    assert!(report.repairs[0].contains(&format!("offset {torn_at}")), "{report}");
    assert_eq!(std::fs::read(&seg).expect("read"), torn, "inspect changed the file");

    drop(Wal::open(dir.path(), small_segments()).expect("open repairs"));
    let report = ahnlich_raft::wal::inspect(&fs, dir.path()).expect("inspect");
    assert!(report.repairs.is_empty(), "{report}");
    assert_eq!(report.bounds.last.map(|p| p.index), Some(9));
}

#[test]
fn the_tail_within_a_byte_budget_counts_whole_records_back_from_a_point() {
    let dir = TempDir::new().expect("tempdir");
    let wal = Wal::open(dir.path(), small_segments()).expect("open");
    let entries: Vec<Entry> = (1..=20).map(|i| entry(i, 1)).collect();
    let sizes: Vec<u64> = entries.iter().map(|e| (e.payload.len() + 32) as u64).collect();
    append_durable(&wal, entries).expect("append");
    // Entries 13..=15 fit exactly; one byte less and only 14..=15 do.
    let budget: u64 = sizes[12..15].iter().sum();
    assert_eq!(wal.tail_start_within(15, budget), 13);
    assert_eq!(wal.tail_start_within(15, budget - 1), 14);
    assert_eq!(wal.tail_start_within(15, 0), 16, "not even the last entry fits");
    assert_eq!(wal.tail_start_within(15, u64::MAX), 1, "everything fits");
}

/// The record bytes of `entries` whose indexes fall in `from..=upto`.
fn record_bytes(entries: &[Entry], from: u64, upto: u64) -> u64 {
    entries.iter().filter(|e| (from..=upto).contains(&e.index)).map(|e| (e.payload.len() + 32) as u64).sum()
}

#[test]
fn the_bytes_between_two_entries_follow_appends_truncations_purges_and_a_reopen() {
    let dir = TempDir::new().expect("tempdir");
    let wal = Wal::open(dir.path(), small_segments()).expect("open");
    let mut live: Vec<Entry> = (1..=40).map(|i| entry(i, 1)).collect();
    append_durable(&wal, live.clone()).expect("append");
    let check = |wal: &Wal, live: &[Entry], when: &str| {
        for (from, upto) in [(0, 40), (1, 1), (10, 10), (11, 30), (6, 5), (31, 10), (21, u64::MAX), (0, 0)] {
            assert_eq!(wal.bytes_in(from, upto), record_bytes(live, from, upto), "{when}: entries {from}..={upto}");
        }
    };
    check(&wal, &live, "after appends");

    ahnlich_raft::wal::wait(|done| wal.truncate_from(25, done)).expect("truncate");
    live.truncate(24);
    check(&wal, &live, "after a truncation");
    let new_tail: Vec<Entry> = (25..=35).map(|i| entry(i, 2)).collect();
    append_durable(&wal, new_tail.clone()).expect("append a new tail");
    live.extend(new_tail);
    check(&wal, &live, "after a new tail");

    ahnlich_raft::wal::wait(|done| wal.purge_to(LogPos { index: 8, term: 1 }, done)).expect("purge");
    live.retain(|e| e.index > 8);
    check(&wal, &live, "after a purge");

    drop(wal);
    let wal = Wal::open(dir.path(), small_segments()).expect("reopen");
    check(&wal, &read_all(&wal).expect("read"), "after a reopen");
    check(&wal, &live, "after a reopen, against what was written");
}

#[test]
fn an_entry_appended_again_with_the_same_bytes_reads_back_as_the_new_one() {
    // The entry at an index is written, cut and written again with a new term but the very
    // same bytes (one shared buffer), all queued before the writer syncs: reads must find the
    // second record, never the cut one.
    let dir = TempDir::new().expect("tempdir");
    let wal = Wal::open(dir.path(), small_segments()).expect("open");
    let shared = bytes::Bytes::from(vec![7u8; 100]);
    for round in 0..50u64 {
        let index = round + 1;
        let first = Entry { index, term: 2 * round + 1, payload: shared.clone() };
        wal.append(vec![first], Box::new(|_| {})).expect("append");
        wal.truncate_from(index, Box::new(|_| {})).expect("truncate");
        let again = Entry { index, term: 2 * round + 2, payload: shared.clone() };
        append_durable(&wal, vec![again]).expect("append again");
    }
    let want: Vec<Entry> =
        (0..50u64).map(|round| Entry { index: round + 1, term: 2 * round + 2, payload: shared.clone() }).collect();
    assert_eq!(read_all(&wal).expect("read"), want);
    drop(wal);
    let wal = Wal::open(dir.path(), small_segments()).expect("reopen");
    assert_eq!(read_all(&wal).expect("read after reopen"), want);
}
