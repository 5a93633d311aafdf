//! Rebuilding the log from its directory: every record verified, a torn tail cut and zeroed,
//! anything else that fails a check reported with its file and offset.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::format::{self, DecodeError, RecordKind, RecordRef, SEGMENT_HEADER_LEN, SegmentHeader};
use super::fs::{Fs, FsFile};
use super::index::{Gap, LogIndex};
use super::segment::{TEMP_SUFFIX, parse_segment_name, parse_spare_name};
use super::{LogPos, WalError};

/// Where a live entry's record is.
#[derive(Clone, Debug)]
pub(crate) enum Loc {
    /// Queued for the writer: entry `at` of a queued append, kept here until it is on disk
    /// (the same `Arc` as in the queue, which tells this entry from a later one at the same
    /// index).
    Pending { append: Arc<QueuedAppend>, at: usize },
    /// Written: the whole record (header and payload) at `offset` in segment `seq`.
    Disk { seq: u64, offset: u64, len: u32 },
}

/// The entries of one append, from when it is queued until the writer has written them: one
/// allocation for the whole append, shared by the queue and the index.
#[derive(Debug)]
pub(crate) struct QueuedAppend {
    /// Each entry's index, term and payload, in order.
    pub entries: Vec<(u64, u64, Bytes)>,
}

impl QueuedAppend {
    /// The payload of entry `at` of this append (`at` comes from the `Loc` made with it).
    pub(crate) fn payload(&self, at: usize) -> &Bytes {
        &self.entries[at].2
    }
}

impl Loc {
    /// The bytes the entry's record takes on disk, header included (once written, or when it
    /// will be).
    pub(crate) fn record_len(&self) -> u64 {
        match self {
            Loc::Pending { append, at } => (format::RECORD_HEADER_LEN + append.payload(*at).len()) as u64,
            Loc::Disk { len, .. } => u64::from(*len),
        }
    }
}

/// One live entry in the index.
#[derive(Clone, Debug)]
pub(crate) struct Slot {
    pub term: u64,
    pub loc: Loc,
    /// The record bytes of this entry and the ones before it, counted from some earlier point:
    /// the difference between two live entries' `end` is the size of the log between them.
    pub end: u64,
}

impl LogIndex<Slot> {
    /// Appends the entry at `index`, whose record takes `record_len` bytes (`loc.record_len()`,
    /// given by the caller, who knows it without looking).
    pub(crate) fn push_entry(&mut self, index: u64, term: u64, loc: Loc, record_len: u64) -> Result<(), Gap> {
        let end = self.last().map_or(0, |s| s.end) + record_len;
        self.push(index, Slot { term, loc, end })
    }

    /// The record bytes of the live entries with indexes in `from..=upto`.
    pub(crate) fn bytes_in(&self, from: u64, upto: u64) -> u64 {
        let (Some(first), Some(last)) = (self.first_live(), self.last_live()) else { return 0 };
        let (from, upto) = (from.max(first), upto.min(last));
        match (self.get(from), self.get(upto)) {
            (Some(a), Some(b)) if from <= upto => b.end - (a.end - a.loc.record_len()),
            _ => 0,
        }
    }

    /// The lowest index `i` such that the live entries `i..=upto` take at most `max_bytes` on
    /// disk; `upto + 1` if even entry `upto` alone is larger or is not live, the first live
    /// index if everything up to `upto` fits.
    pub(crate) fn tail_start_within(&self, upto: u64, max_bytes: u64) -> u64 {
        let (Some(first), Some(last)) = (self.first_live(), self.last_live()) else { return upto + 1 };
        let upto = upto.min(last);
        if upto < first {
            return upto + 1;
        }
        // `bytes_in(i, upto)` shrinks as `i` grows: search for the first `i` that fits.
        let (mut lo, mut hi) = (first, upto + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.bytes_in(mid, upto) <= max_bytes {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }
}

/// An open segment as the front end and readers know it.
pub(crate) struct SegmentInfo {
    pub path: PathBuf,
    pub file: Arc<dyn FsFile>,
    pub salt: u32,
    /// Largest entry index ever written to this segment, live or truncated.
    pub max_index: Option<u64>,
}

/// Where the writer continues.
pub(crate) struct Tail {
    pub seq: u64,
    pub file: Arc<dyn FsFile>,
    pub salt: u32,
    /// Offset of the next record.
    pub pos: u64,
    /// A seal record ends the segment: the next write opens a new one.
    pub sealed: bool,
}

/// Whether recovery may change files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Cut torn tails, remove temporary files: what opening a log does.
    Repair,
    /// Change nothing; report what a repair would do.
    Inspect,
}

/// The log as found on disk.
pub(crate) struct Recovered {
    pub segments: BTreeMap<u64, SegmentInfo>,
    pub index: LogIndex<Slot>,
    pub purged: Option<LogPos>,
    pub meta: BTreeMap<u8, Arc<[u8]>>,
    pub tail: Option<Tail>,
    /// Numbers of the spare files found.
    pub spares: Vec<u64>,
    /// What recovery repaired (or, inspecting, would repair), one line each.
    pub repairs: Vec<String>,
}

/// Header value meaning "the log was empty and unanchored when this segment was opened".
pub(crate) const UNANCHORED: u64 = u64::MAX;

/// Encodes an anchor for a segment header.
pub(crate) fn anchor_to_header(next: Option<u64>) -> u64 {
    next.unwrap_or(UNANCHORED)
}

fn anchor_from_header(first_index: u64) -> Option<u64> {
    (first_index != UNANCHORED).then_some(first_index)
}

fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> WalError {
    WalError::Corrupt { file: path.to_path_buf(), offset, reason: reason.into() }
}

fn io_err(context: String) -> impl FnOnce(std::io::Error) -> WalError {
    move |source| WalError::Io { context, source }
}

/// Reads and verifies every segment in `dir`, cutting a torn tail. Idempotent: running it again
/// on what it left, or on what a crash in the middle of it left, gives the same log.
pub(crate) fn recover(fs: &dyn Fs, dir: &Path, mode: Mode) -> Result<Recovered, WalError> {
    let names = fs.list(dir).map_err(io_err(format!("listing {}", dir.display())))?;
    let mut seqs = Vec::new();
    let mut spares = Vec::new();
    let mut repairs = Vec::new();
    for name in &names {
        if let Some(seq) = parse_segment_name(name) {
            seqs.push(seq);
        } else if let Some(n) = parse_spare_name(name) {
            spares.push(n);
        } else if name.ends_with(TEMP_SUFFIX) {
            let path = dir.join(name);
            repairs.push(format!("remove the unfinished file {}", path.display()));
            if mode == Mode::Repair {
                fs.remove(&path).map_err(io_err(format!("removing {}", path.display())))?;
            }
        }
    }
    if !repairs.is_empty() && mode == Mode::Repair {
        fs.sync_dir(dir).map_err(io_err(format!("syncing {}", dir.display())))?;
    }
    seqs.sort_unstable();
    for pair in seqs.windows(2) {
        if pair[1] != pair[0] + 1 {
            let missing = dir.join(super::segment::segment_name(pair[0] + 1));
            return Err(corrupt(&missing, 0, "segment file is missing from the middle of the log"));
        }
    }

    let mut replay = Replay { index: LogIndex::new(None), purged: None, meta: BTreeMap::new() };
    let mut segments = BTreeMap::new();
    let mut tail = None;
    // A large log takes a while: say how far it got every few seconds.
    let mut progress =
        crate::progress::Progress::start(format!("WAL recovery in {} ({} segments)", dir.display(), seqs.len()), None);
    for (i, &seq) in seqs.iter().enumerate() {
        let is_last = i + 1 == seqs.len();
        let path = dir.join(super::segment::segment_name(seq));
        let file = fs.open(&path).map_err(io_err(format!("opening {}", path.display())))?;
        let len = file.len().map_err(io_err(format!("reading the length of {}", path.display())))?;
        let mut bytes = vec![0u8; usize::try_from(len).map_err(|_| corrupt(&path, 0, "segment is too large"))?];
        file.read_exact_at(&mut bytes, 0).map_err(io_err(format!("reading {}", path.display())))?;
        progress.advance(len);

        if is_last && bytes.len() < SEGMENT_HEADER_LEN {
            // Headers are synced before any record is written, so a last segment too short to
            // hold one holds nothing acknowledged: it is a torn tail, like a short record.
            repairs.push(format!("remove {}: the last segment, shorter than its header", path.display()));
            if mode == Mode::Repair {
                drop(file);
                fs.remove(&path).map_err(io_err(format!("removing {}", path.display())))?;
                fs.sync_dir(dir).map_err(io_err(format!("syncing {}", dir.display())))?;
            }
            break;
        }
        let header = SegmentHeader::decode(&bytes).map_err(|why| corrupt(&path, 0, why))?;
        if header.seq != seq {
            return Err(corrupt(&path, 12, format!("header names segment {} but the file is {seq}", header.seq)));
        }
        let anchor = anchor_from_header(header.first_index);
        if i == 0 {
            replay.index = LogIndex::new(anchor);
        } else if anchor != replay.index.next_index() {
            return Err(corrupt(&path, 20, "segment does not continue the log of the segment before it"));
        }

        let scan = replay.segment(&path, seq, header.salt, &bytes)?;
        let info = SegmentInfo { path: path.clone(), file: file.clone(), salt: header.salt, max_index: scan.max_index };
        if !scan.sealed {
            if !is_last {
                let why = match scan.stopped {
                    Some(e) => format!("damaged record before the end of the log: {e}"),
                    None => "segment ends without a seal but is not the last".into(),
                };
                return Err(corrupt(&path, scan.end, why));
            }
            let after = scan_after_cut(&bytes, header.salt, scan.end);
            if let Some(later) = after.later_batch {
                let why = scan.stopped.map_or_else(String::new, |e| e.to_string());
                return Err(corrupt(
                    &path,
                    scan.end,
                    format!("damaged record ({why}) is followed by a later synced batch at offset {later}"),
                ));
            }
            if after.zero_until > scan.end {
                let len = after.zero_until - scan.end;
                repairs.push(format!(
                    "cut a torn tail at offset {} of {} (zeroing {len} bytes)",
                    scan.end,
                    path.display()
                ));
                if mode == Mode::Repair {
                    zero_tail(&*file, &path, scan.end, len)?;
                }
            }
        }
        segments.insert(seq, info);
        tail = Some(Tail { seq, file, salt: header.salt, pos: scan.end, sealed: scan.sealed });
    }
    Ok(Recovered { segments, index: replay.index, purged: replay.purged, meta: replay.meta, tail, spares, repairs })
}

struct Replay {
    index: LogIndex<Slot>,
    purged: Option<LogPos>,
    meta: BTreeMap<u8, Arc<[u8]>>,
}

struct SegmentScan {
    /// Offset just past the last good record.
    end: u64,
    sealed: bool,
    /// Why the scan stopped before a seal, if it did.
    stopped: Option<DecodeError>,
    max_index: Option<u64>,
}

impl Replay {
    /// Applies the segment's records in order until a seal or the first record that fails.
    fn segment(&mut self, path: &Path, seq: u64, salt: u32, bytes: &[u8]) -> Result<SegmentScan, WalError> {
        let mut pos = SEGMENT_HEADER_LEN as u64;
        let mut max_index = None;
        loop {
            let rest = &bytes[pos as usize..];
            let rec = match format::decode_record(rest, salt, pos) {
                Ok(rec) => rec,
                Err(e) => {
                    return Ok(SegmentScan { end: pos, sealed: false, stopped: Some(e), max_index });
                }
            };
            if rec.kind == RecordKind::Seal {
                return Ok(SegmentScan { end: pos + rec.encoded_len() as u64, sealed: true, stopped: None, max_index });
            }
            if rec.kind == RecordKind::Entry {
                max_index = max_index.max(Some(rec.index));
            }
            self.apply(&rec, seq, pos).map_err(|why| corrupt(path, pos, why))?;
            pos += rec.encoded_len() as u64;
        }
    }

    fn apply(&mut self, rec: &RecordRef<'_>, seq: u64, offset: u64) -> Result<(), String> {
        match rec.kind {
            RecordKind::Entry => {
                let loc = Loc::Disk { seq, offset, len: rec.encoded_len() as u32 };
                self.index.push_entry(rec.index, rec.term, loc, rec.encoded_len() as u64).map_err(|g| g.to_string())
            }
            RecordKind::Truncate => {
                if self.purged.is_some_and(|p| rec.index <= p.index) {
                    return Err(format!("truncation at {} reaches below the purge point", rec.index));
                }
                self.index.truncate_from(rec.index).map_err(|g| g.to_string())
            }
            RecordKind::Purge => {
                if self.purged.is_some_and(|p| rec.index < p.index) {
                    return Err(format!("purge point moves back to {}", rec.index));
                }
                self.purged = Some(LogPos { index: rec.index, term: rec.term });
                self.index.purge_to(rec.index);
                Ok(())
            }
            RecordKind::Meta => {
                let slot = u8::try_from(rec.index).map_err(|_| format!("meta slot {} out of range", rec.index))?;
                self.meta.insert(slot, Arc::from(rec.payload));
                Ok(())
            }
            RecordKind::Seal => Ok(()),
        }
    }
}

/// What lies after the point where a segment's records stop.
struct AfterCut {
    /// A valid record of a later write batch than the one the cut is in, if any: proof that
    /// the damage at the cut is corruption, not a torn write.
    later_batch: Option<u64>,
    /// End of the bytes that must be zeroed: the last valid record of this segment after the
    /// cut, or the torn record at the cut. Nothing else there can ever pass a check, so nothing
    /// else can come back after new writes.
    zero_until: u64,
}

/// Scans every offset after `cut` for records of this segment (salt tag and checksum). The
/// writer starts a batch only after the previous one was synced, and every record names its
/// batch's start, so a valid record whose batch starts after `cut` proves the damage at `cut`
/// is not a torn write.
fn scan_after_cut(bytes: &[u8], salt: u32, cut: u64) -> AfterCut {
    let at_cut = &bytes[cut as usize..];
    let mut zero_until = cut;
    if at_cut.len() >= format::RECORD_HEADER_LEN && at_cut[29..32] == format::salt_tag(salt) {
        // A torn record of this segment: its whole claimed extent, as far as the file goes.
        let claimed = u32::from_le_bytes([at_cut[4], at_cut[5], at_cut[6], at_cut[7]]) as u64;
        zero_until = (cut + format::RECORD_HEADER_LEN as u64 + claimed).min(bytes.len() as u64);
    } else if !at_cut.is_empty() && at_cut.len() < format::RECORD_HEADER_LEN {
        zero_until = bytes.len() as u64;
    }
    for y in cut as usize + 1..bytes.len().saturating_sub(format::RECORD_HEADER_LEN - 1) {
        let at = &bytes[y..];
        if !format::plausible_record_start(at, salt, y as u64) {
            continue;
        }
        let Ok(rec) = format::decode_record(at, salt, y as u64) else { continue };
        if u64::from(rec.batch_start) > cut {
            return AfterCut { later_batch: Some(y as u64), zero_until };
        }
        zero_until = zero_until.max(y as u64 + rec.encoded_len() as u64);
    }
    AfterCut { later_batch: None, zero_until }
}

/// Overwrites `len` bytes from `from` with zeros, and syncs, so that a later write at `from` can
/// never be followed by a stale record.
fn zero_tail(file: &dyn FsFile, path: &Path, from: u64, len: u64) -> Result<(), WalError> {
    tracing::warn!("{}: cutting a torn tail of {len} bytes at offset {from}", path.display());
    let zeros = vec![0u8; len as usize];
    file.write_all_at(&zeros, from).map_err(io_err(format!("zeroing the torn tail of {}", path.display())))?;
    file.sync_data().map_err(io_err(format!("syncing {}", path.display())))
}
