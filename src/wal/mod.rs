//! A segmented, checksummed, group-committed write-ahead log. It knows nothing of Raft or
//! Ahnlich: it stores entries `(index, term, payload)` in order, plus truncations, a purge
//! point and a few small metadata values, and gives them back after any crash exactly as far as
//! they were acknowledged.
//!
//! # Assumptions about the medium
//! - `fdatasync` returning success means every byte written to that file before the call is on
//!   stable storage; a directory `fsync` does the same for creates, renames and removes in it.
//! - A rename is atomic, and directory operations reach the disk in the order they were made
//!   (what a journaling file system such as ext4 or XFS provides); the WAL syncs the directory
//!   after each one anyway before relying on it.
//! - Nothing else is assumed: file bytes not yet synced may reach the disk in any order, in any
//!   subset, down to single bytes (the crash tests model exactly that, see `sim_fs`); writes to
//!   one region never change bytes outside it.
//! - After an `fdatasync` error, the unsynced bytes are lost even if reads still return them; a
//!   failed sync is therefore never retried: the log refuses all further writes until reopened.
//!
//! # Files
//! A data directory holds `LOCK` (an exclusive `flock` for the life of the process), numbered
//! segments `00000000000000000001.wal`, `…02.wal`, …, spares `spare-00000000000000000001.wal`,
//! … (purged segments kept for reuse, up to [`WalOptions::max_spares`], and a zero-filled file
//! made ahead of need when none is left), and `*.tmp` files being created (removed on open). The
//! byte layout of a segment is the table in [`mod@format`].
//!
//! # Writing
//! One writer thread owns the active segment. [`Wal::append`] and the other writes put their
//! records in the in-memory index at once (readable immediately) and queue them; the writer
//! takes everything queued, encodes it into one buffer, writes it and syncs once, then moves
//! the readers to the on-disk copies and completes every waiter. A write nobody waits for (only
//! [`Wal::set_meta_unsynced`] makes one) does not wake the writer: it goes out with the next
//! waited-for write, or once it is [`IDLE_SYNC`] old, in a batch that is then synced at once.
//! A batch written but not synced (only while the log closes) belongs to the same write batch
//! as the next one (see Recovery). A segment is closed by a seal record when the next record
//! would not fit. The next segment is made from a spare: its header
//! and its head (the purge point and every metadata value, written again so that removing older
//! segments never loses them) are written and synced, then it is renamed into place and the
//! directory synced, all before any other record goes into it.
//!
//! # Truncation, purge and metadata
//! Truncation writes a record saying "entries from index `i` on are gone"; replaying the log
//! applies it to what came before, so an old entry can never come back. Purge writes the purge
//! point; once that record is synced, the oldest segments holding nothing above it are removed,
//! oldest first, each removal synced before the next: renamed into the spare pool while it has
//! room (their records then fail every check of the segment they become), deleted otherwise. Metadata slots (the Raft vote, the
//! committed id, …) are records too, so every write reaches the disk in the order it was issued.
//!
//! # Recovery
//! Segments must form a contiguous run of sequence numbers, each with a valid header, and each
//! but the last must end with a seal. Every record is checked (frame, checksum under the
//! segment's salt, index continuity). In the last segment the first bad record ends the log if
//! it is a torn write: no valid record of a *later* write batch follows it (the writer starts a
//! batch only after the previous one was synced, and each record names its batch's start).
//! Every record of this segment that is still valid after the cut, and the torn record itself,
//! are then zeroed and synced before any new write; nothing else there can pass a check (stale
//! bytes of a recycled file carry another salt), so nothing cut can come back. Any other failed check is
//! corruption: opening fails with the file and offset, and the node refuses to start rather
//! than drop acknowledged data. Damage inside the last synced batch cannot be told from a torn
//! write and is cut like one.

pub mod format;
pub mod fs;
mod gather;
mod index;
mod inspect;
#[cfg(any(test, feature = "testing"))]
pub mod model;
mod recovery;
mod segment;
#[cfg(any(test, feature = "testing"))]
pub mod sim_fs;
pub mod stats;
mod writer;

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use bytes::Bytes;

pub use self::inspect::{Inspection, inspect};

use self::fs::{DirLock, Fs, OsFs};
use self::index::LogIndex;
use self::recovery::{Loc, QueuedAppend, SegmentInfo, Slot, anchor_to_header};

/// Default segment size: 32 MiB.
pub const DEFAULT_SEGMENT_SIZE: u64 = 32 << 20;
/// Default for [`WalOptions::max_spares`].
pub const DEFAULT_MAX_SPARES: usize = 2;
/// Smallest segment size accepted (tests use tiny segments to exercise rotation).
pub const MIN_SEGMENT_SIZE: u64 = 4096;
/// Largest segment size accepted (offsets are stored in 32 bits).
pub const MAX_SEGMENT_SIZE: u64 = 1 << 30;

/// How a log is opened.
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// A segment is closed when the next record would take it past this size.
    pub segment_size: u64,
    /// Keep a zero-filled spare segment ready on a background thread.
    pub preallocate: bool,
    /// Most purged segments kept as spares for reuse (with `preallocate`); purged segments
    /// beyond it are deleted. The spares on disk are at most this many, and one more while a
    /// zero-filled spare made when the pool was empty joins purged ones.
    pub max_spares: usize,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self { segment_size: DEFAULT_SEGMENT_SIZE, preallocate: true, max_spares: DEFAULT_MAX_SPARES }
    }
}

/// An entry's index and term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogPos {
    /// The entry's index.
    pub index: u64,
    /// The entry's term.
    pub term: u64,
}

/// A log entry: its position and its opaque payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The entry's index.
    pub index: u64,
    /// The entry's term.
    pub term: u64,
    /// The entry's bytes, as given to [`Wal::append`] (shared, not copied, while queued).
    pub payload: Bytes,
}

/// What the log holds, as of the last write issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogBounds {
    /// The first live entry, if any.
    pub first: Option<LogPos>,
    /// The last live entry, if any.
    pub last: Option<LogPos>,
    /// Everything up to here was purged.
    pub purged: Option<LogPos>,
    /// The index the next append must have; `None` if the log is empty and unanchored, when
    /// any index may come first.
    pub next_index: Option<u64>,
}

/// Errors of the log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// Another process (or another open log in this one) holds the directory.
    #[error("data directory {dir} is in use by another process: {source}")]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// What the lock call said.
        source: io::Error,
    },
    /// A file fails a check and the log cannot be trusted past it.
    #[error("WAL corruption in {file} at offset {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damage.
        offset: u64,
        /// Which check failed.
        reason: String,
    },
    /// An I/O call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: io::Error,
    },
    /// An earlier write or sync failed; the log refuses writes until reopened.
    #[error("WAL refuses writes: {0}")]
    Failed(String),
    /// The request would break the log's order (a gap, a purge moving back, …).
    #[error("invalid WAL operation: {0}")]
    InvalidInput(String),
}

impl From<WalError> for io::Error {
    fn from(e: WalError) -> Self {
        let kind = match &e {
            WalError::Locked { .. } => io::ErrorKind::WouldBlock,
            WalError::Corrupt { .. } => io::ErrorKind::InvalidData,
            WalError::Io { source, .. } => source.kind(),
            WalError::Failed(_) => io::ErrorKind::Other,
            WalError::InvalidInput(_) => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, e)
    }
}

/// Completion of a queued write: called once, from the writer thread, with the sync's result.
pub type Done = Box<dyn FnOnce(io::Result<()>) + Send + 'static>;

pub(crate) enum OpKind {
    /// The entries, in an `Arc` the index shares, which is their identity while they are
    /// queued (see `writer::Placed`).
    Append(Arc<QueuedAppend>),
    Truncate(u64),
    Purge(LogPos),
    Meta(u8, Arc<[u8]>),
}

/// A queued write. One without `done` asks for no sync and does not wake the writer: the writer
/// takes it with the next write that has a waiter, or once it is [`IDLE_SYNC`] old (see
/// [`Wal::set_meta_unsynced`]).
pub(crate) struct Op {
    kind: OpKind,
    done: Option<Done>,
}

/// How long a write that asked for no sync may stay unwritten or unsynced (when no waited-for
/// write syncs it sooner); also how long the writer, after a batch, sleeps with a deadline
/// before it parks until woken.
pub const IDLE_SYNC: std::time::Duration = std::time::Duration::from_millis(50);

pub(crate) struct FrontState {
    index: LogIndex<Slot>,
    purged: Option<LogPos>,
    meta: BTreeMap<u8, Arc<[u8]>>,
    segments: BTreeMap<u64, SegmentInfo>,
    queue: Vec<Op>,
    /// Whether `queue` holds a write somebody waits for (the writer was woken for it).
    waited: bool,
    /// When the oldest queued write that nobody waits for was queued. Such a write does not
    /// wake the writer, which takes it with the next waited-for write or once it is
    /// [`IDLE_SYNC`] old.
    unwaited_since: Option<std::time::Instant>,
    /// Whether the writer sleeps with no deadline, so that only a wake-up would make it see a
    /// write nobody waits for.
    writer_parked: bool,
    closing: bool,
}

/// Why a log refuses writes, once a write or sync of it has failed. Set once, by the writer,
/// and kept by whoever holds a clone, after the log itself is closed.
pub type FailureLatch = Arc<std::sync::OnceLock<String>>;

pub(crate) struct Shared {
    stats: Arc<stats::WalStats>,
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    state: Mutex<FrontState>,
    /// Set (while `state` is locked) when a write or sync fails; read under `state` by every
    /// write, so none is queued after the writer has failed.
    failure: FailureLatch,
    wake: Condvar,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An open write-ahead log. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Wal {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
    lock: Option<DirLock>,
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl Wal {
    /// Opens (creating if needed) the log in `dir` on the real file system.
    pub fn open(dir: impl AsRef<Path>, opts: WalOptions) -> Result<Self, WalError> {
        Self::open_with_fs(Arc::new(OsFs), dir.as_ref(), opts)
    }

    /// Opens the log in `dir` through `fs`: locks the directory, recovers every segment (see the
    /// module docs) and starts the writer.
    pub fn open_with_fs(fs: Arc<dyn Fs>, dir: &Path, opts: WalOptions) -> Result<Self, WalError> {
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&opts.segment_size) {
            return Err(WalError::InvalidInput(format!(
                "segment size {} is outside {MIN_SEGMENT_SIZE}..={MAX_SEGMENT_SIZE}",
                opts.segment_size
            )));
        }
        let io_ctx = |context: String| move |source| WalError::Io { context, source };
        fs.create_dir_all(dir).map_err(io_ctx(format!("creating {}", dir.display())))?;
        let dir_lock = lock_dir(&*fs, dir)?;
        let stats = Arc::new(stats::WalStats::default());
        let recovering = std::time::Instant::now();
        let rec = recovery::recover(&*fs, dir, recovery::Mode::Repair)?;
        stats.recovery_seconds.set(recovering.elapsed().as_secs_f64());
        for repair in &rec.repairs {
            tracing::warn!("WAL recovery in {}: {repair}", dir.display());
        }

        let prealloc = if opts.preallocate {
            let spares = stats.spares.clone();
            let p = segment::Preallocator::start(
                fs.clone(),
                dir.to_path_buf(),
                opts.segment_size,
                opts.max_spares,
                &rec.spares,
                spares,
            );
            Some(p.map_err(io_ctx("starting the WAL preallocation thread".into()))?)
        } else {
            None
        };
        let mut segments = rec.segments;
        let tail = match rec.tail {
            Some(tail) => tail,
            None => {
                let header = format::SegmentHeader {
                    seq: 1,
                    first_index: anchor_to_header(rec.index.next_index()),
                    salt: segment::random_salt(),
                };
                let file = segment::activate(&*fs, dir, &header, &[], prealloc.as_ref())
                    .map_err(io_ctx(format!("creating the first segment in {}", dir.display())))?;
                let path = dir.join(segment::segment_name(1));
                segments.insert(1, SegmentInfo { path, file: file.clone(), salt: header.salt, max_index: None });
                recovery::Tail {
                    seq: 1,
                    file,
                    salt: header.salt,
                    pos: format::SEGMENT_HEADER_LEN as u64,
                    sealed: false,
                }
            }
        };
        let written = rec.index.shape();
        stats.segments.set(segments.len() as i64);
        let shared = Arc::new(Shared {
            stats,
            fs: fs.clone(),
            dir: dir.to_path_buf(),
            state: Mutex::new(FrontState {
                index: rec.index,
                purged: rec.purged,
                meta: rec.meta.clone(),
                segments,
                queue: Vec::new(),
                waited: false,
                unwaited_since: None,
                writer_parked: false,
                closing: false,
            }),
            failure: FailureLatch::default(),
            wake: Condvar::new(),
        });
        let w = writer::Writer::new(shared.clone(), tail, opts.segment_size, prealloc, written, rec.purged, rec.meta);
        let writer = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || w.run())
            .map_err(io_ctx("starting the WAL writer thread".into()))?;
        Ok(Self {
            shared,
            writer: Some(writer),
            lock: Some(dir_lock),
            closed: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        })
    }

    /// Queues `entries` (contiguous, continuing the log) and returns once they are readable;
    /// `done` is called after they are durable, or with the error that stopped them.
    pub fn append(&self, entries: Vec<Entry>, done: Done) -> Result<(), WalError> {
        let mut st = self.front()?;
        let mut records = Vec::with_capacity(entries.len());
        let mut next = st.index.next_index();
        for e in entries {
            if let Some(expected) = next
                && e.index != expected
            {
                return Err(WalError::InvalidInput(index::Gap::NotNext { expected, got: e.index }.to_string()));
            }
            if e.payload.len() > format::MAX_PAYLOAD_LEN {
                return Err(WalError::InvalidInput(format!(
                    "entry {} has {} bytes, more than the maximum {}",
                    e.index,
                    e.payload.len(),
                    format::MAX_PAYLOAD_LEN
                )));
            }
            next = Some(e.index + 1);
            records.push((e.index, e.term, e.payload));
        }
        let append = Arc::new(QueuedAppend { entries: records });
        for (at, (index, term, payload)) in append.entries.iter().enumerate() {
            let loc = Loc::Pending { append: append.clone(), at };
            let record_len = (format::RECORD_HEADER_LEN + payload.len()) as u64;
            st.index.push_entry(*index, *term, loc, record_len).map_err(|g| WalError::InvalidInput(g.to_string()))?;
        }
        self.enqueue(st, OpKind::Append(append), done);
        Ok(())
    }

    /// Removes every entry with an index ≥ `first_removed`, at once for readers; `done` is called
    /// when the removal is durable. Later appends are acknowledged only after it.
    pub fn truncate_from(&self, first_removed: u64, done: Done) -> Result<(), WalError> {
        let mut st = self.front()?;
        if let Some(p) = st.purged.filter(|p| first_removed <= p.index) {
            return Err(WalError::InvalidInput(format!(
                "cannot truncate from {first_removed}: entries up to {} are purged",
                p.index
            )));
        }
        // Removing from past the end removes nothing.
        let first_removed = st.index.next_index().map_or(first_removed, |next| first_removed.min(next));
        st.index.truncate_from(first_removed).map_err(|g| WalError::InvalidInput(g.to_string()))?;
        self.enqueue(st, OpKind::Truncate(first_removed), done);
        Ok(())
    }

    /// Purges every entry up to and including `upto`, at once for readers; `done` is called when
    /// the purge point is durable. Segment files are deleted only after that.
    pub fn purge_to(&self, upto: LogPos, done: Done) -> Result<(), WalError> {
        let mut st = self.front()?;
        if let Some(p) = st.purged.filter(|p| upto.index < p.index) {
            return Err(WalError::InvalidInput(format!(
                "purge point cannot move back from {} to {}",
                p.index, upto.index
            )));
        }
        st.index.purge_to(upto.index);
        st.purged = Some(upto);
        self.enqueue(st, OpKind::Purge(upto), done);
        Ok(())
    }

    /// Sets metadata slot `slot` to `value`, ordered with every other write; `done` is called
    /// when it is durable.
    pub fn set_meta(&self, slot: u8, value: Vec<u8>, done: Done) -> Result<(), WalError> {
        self.queue_meta(slot, value, Some(done))
    }

    /// Sets metadata slot `slot` to `value`, ordered with every other write, without asking for
    /// a sync of its own or waking the writer: it is written and made durable with the next
    /// write that is waited for, or about [`IDLE_SYNC`] after it was queued if none comes, or
    /// when the log is closed. Until then a crash or a power loss may take it back to an earlier
    /// value (never to one newer than queued, and never without everything queued before it).
    /// [`Wal::meta`] reads it at once. For values that may lag, such as Raft's committed index,
    /// which a leader sets after every commit: it rides along with the next append instead of
    /// costing the writer a wake-up and a write of its own.
    pub fn set_meta_unsynced(&self, slot: u8, value: Vec<u8>) -> Result<(), WalError> {
        self.queue_meta(slot, value, None)
    }

    fn queue_meta(&self, slot: u8, value: Vec<u8>, done: Option<Done>) -> Result<(), WalError> {
        let mut st = self.front()?;
        let value: Arc<[u8]> = value.into();
        st.meta.insert(slot, value.clone());
        self.enqueue_op(st, Op { kind: OpKind::Meta(slot, value), done });
        Ok(())
    }

    /// The latest value set for `slot`.
    pub fn meta(&self, slot: u8) -> Option<Arc<[u8]>> {
        lock(&self.shared.state).meta.get(&slot).cloned()
    }

    /// The log's current bounds.
    pub fn bounds(&self) -> LogBounds {
        let st = lock(&self.shared.state);
        bounds_of(&st.index, st.purged)
    }

    /// The lowest index `i` such that the live entries `i..=upto` take at most `max_bytes` on
    /// disk (a queued entry counts as the record it will be). `upto + 1` if even entry `upto`
    /// alone is larger; the first live index if everything up to `upto` fits.
    pub fn tail_start_within(&self, upto: u64, max_bytes: u64) -> u64 {
        lock(&self.shared.state).index.tail_start_within(upto, max_bytes)
    }

    /// The bytes on disk of the live entries with indexes in `from..=upto` (a queued entry
    /// counts as the record it will be; purged entries count nothing).
    pub fn bytes_in(&self, from: u64, upto: u64) -> u64 {
        lock(&self.shared.state).index.bytes_in(from, upto)
    }

    /// The term of the live entry at `index`.
    pub fn term_of(&self, index: u64) -> Option<u64> {
        lock(&self.shared.state).index.get(index).map(|s| s.term)
    }

    /// The live entries whose indexes fall in `range`, in order. Every record read from disk is
    /// checked again before it is returned.
    pub fn read(&self, range: Range<u64>) -> Result<Vec<Entry>, WalError> {
        let mut wanted = Vec::new();
        {
            let st = lock(&self.shared.state);
            let (Some(first), Some(last)) = (st.index.first_live(), st.index.last_live()) else {
                return Ok(Vec::new());
            };
            for i in range.start.max(first)..range.end.min(last + 1) {
                let Some(slot) = st.index.get(i) else { break };
                let source = match &slot.loc {
                    Loc::Pending { append, at } => ReadFrom::Memory(append.payload(*at).clone()),
                    Loc::Disk { seq, offset, len } => {
                        let seg = st.segments.get(seq).ok_or_else(|| WalError::Io {
                            context: format!("reading entry {i}"),
                            source: io::Error::other(format!("segment {seq} is no longer open")),
                        })?;
                        ReadFrom::Disk {
                            path_seq: *seq,
                            file: seg.file.clone(),
                            salt: seg.salt,
                            offset: *offset,
                            len: *len,
                        }
                    }
                };
                wanted.push((i, slot.term, source));
            }
        }
        let mut entries = Vec::with_capacity(wanted.len());
        for (index, term, from) in wanted {
            match from.load(&self.shared.dir, index, term) {
                Ok(entry) => entries.push(entry),
                // Purged since it was looked up, and its segment file recycled: the read ends
                // where the log now begins, as it would have a moment later.
                Err(_) if self.term_of(index).is_none() => break,
                Err(e) => return Err(e),
            }
        }
        Ok(entries)
    }

    /// Blocks until everything queued so far is durable (a convenience for tests and tools).
    pub fn sync(&self) -> io::Result<()> {
        // An empty append writes nothing but completes only after every write queued before it.
        wait(|done| self.append(Vec::new(), done))
    }

    /// What the log has done since it was opened.
    pub fn stats(&self) -> Arc<stats::WalStats> {
        self.shared.stats.clone()
    }

    /// Why the log refuses writes, once a write or sync has failed (it does until reopened).
    pub fn failure(&self) -> Option<String> {
        self.shared.failure.get().cloned()
    }

    /// A handle on why the log refuses writes that answers even after the log is closed.
    pub fn failure_latch(&self) -> FailureLatch {
        self.shared.failure.clone()
    }

    fn front(&self) -> Result<MutexGuard<'_, FrontState>, WalError> {
        let st = lock(&self.shared.state);
        if let Some(reason) = self.shared.failure.get() {
            return Err(WalError::Failed(reason.clone()));
        }
        Ok(st)
    }

    fn enqueue(&self, st: MutexGuard<'_, FrontState>, kind: OpKind, done: Done) {
        self.enqueue_op(st, Op { kind, done: Some(done) });
    }

    fn enqueue_op(&self, mut st: MutexGuard<'_, FrontState>, op: Op) {
        let wake = if op.done.is_some() {
            st.waited = true;
            true
        } else {
            st.unwaited_since.get_or_insert_with(std::time::Instant::now);
            st.writer_parked
        };
        st.queue.push(op);
        drop(st);
        if wake {
            self.shared.wake.notify_one();
        }
    }
}

impl Wal {
    /// A flag that turns true once this log is fully closed: its writer stopped and its
    /// directory unlocked (so another open in this process can succeed).
    pub fn closed_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.closed.clone()
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        lock(&self.shared.state).closing = true;
        self.shared.wake.notify_all();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        drop(self.lock.take());
        self.closed.store(true, std::sync::atomic::Ordering::Release);
    }
}

enum ReadFrom {
    Memory(Bytes),
    Disk { path_seq: u64, file: Arc<dyn fs::FsFile>, salt: u32, offset: u64, len: u32 },
}

impl ReadFrom {
    fn load(self, dir: &Path, index: u64, term: u64) -> Result<Entry, WalError> {
        let payload = match self {
            ReadFrom::Memory(p) => p,
            ReadFrom::Disk { path_seq, file, salt, offset, len } => {
                let path = dir.join(segment::segment_name(path_seq));
                let mut buf = vec![0u8; len as usize];
                file.read_exact_at(&mut buf, offset)
                    .map_err(|source| WalError::Io { context: format!("reading {}", path.display()), source })?;
                let rec = format::decode_record(&buf, salt, offset).map_err(|e| WalError::Corrupt {
                    file: path.clone(),
                    offset,
                    reason: e.to_string(),
                })?;
                if rec.kind != format::RecordKind::Entry || rec.index != index || rec.term != term {
                    return Err(WalError::Corrupt {
                        file: path,
                        offset,
                        reason: format!("expected entry {index} of term {term}, found another record"),
                    });
                }
                // The payload as a slice of the buffer just read, not a copy of it.
                let start = rec.payload.as_ptr() as usize - buf.as_ptr() as usize;
                let end = start + rec.payload.len();
                Bytes::from(buf).slice(start..end)
            }
        };
        Ok(Entry { index, term, payload })
    }
}

/// Takes the exclusive lock of `dir`: `Locked` if another holder has it, `Io` for anything else.
pub(crate) fn lock_dir(fs: &dyn Fs, dir: &Path) -> Result<DirLock, WalError> {
    fs.lock_dir(dir).map_err(|source| match source.kind() {
        io::ErrorKind::WouldBlock => WalError::Locked { dir: dir.to_path_buf(), source },
        _ => WalError::Io { context: format!("locking {}", dir.display()), source },
    })
}

pub(crate) fn bounds_of(index: &LogIndex<Slot>, purged: Option<LogPos>) -> LogBounds {
    let pos = |i: Option<u64>| i.and_then(|i| index.get(i).map(|s| LogPos { index: i, term: s.term }));
    LogBounds { first: pos(index.first_live()), last: pos(index.last_live()), purged, next_index: index.next_index() }
}

/// Runs `start` with a completion and blocks until it is called.
pub fn wait(start: impl FnOnce(Done) -> Result<(), WalError>) -> io::Result<()> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    start(Box::new(move |r| {
        let _ = tx.send(r);
    }))?;
    rx.recv().map_err(|_| io::Error::other("the WAL writer stopped before completing the write"))?
}
