//! The one thread that writes the log: it takes everything queued, writes it with one write
//! call per segment touched (large payloads gathered from where they are, see `gather`), syncs
//! once, and only then completes every waiter of the batch.
//! What nobody waits for (see [`super::Wal::set_meta_unsynced`]) does not wake it: it goes out
//! with the next batch that has a waiter, or on its own once it is `IDLE_SYNC` old (then synced
//! at once); while the log closes, what is left is written and synced last.
//! The first write or sync error fails every waiter and every later operation: a failed
//! `fdatasync` is never retried, since the kernel may already have dropped the unsynced pages.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::format::{self, RECORD_HEADER_LEN, RecordKind, SEGMENT_HEADER_LEN, SegmentHeader};
use super::gather::{Gathered, IN_PLACE_MIN};
use super::index::LogIndex;
use super::recovery::{Loc, QueuedAppend, SegmentInfo, Tail, anchor_to_header};
use super::segment::{self, Preallocator};
use super::{Done, LogPos, OpKind, Shared, lock};

/// The segment being written.
struct Active {
    tail: Tail,
    encoder: format::RecordEncoder,
    /// Whether a record from the queue (not just the re-emitted state) is in this segment.
    holds_ops: bool,
}

/// Where an entry written in this batch landed, to move it from `Pending` to `Disk`.
struct Placed {
    index: u64,
    /// Address of the queued append that held it, to recognise the entry in the index without
    /// cloning the `Arc` (the op keeps it alive, so the address cannot be reused, until
    /// `publish` is done).
    append: usize,
    loc: Loc,
}

fn address(append: &Arc<QueuedAppend>) -> usize {
    Arc::as_ptr(append) as usize
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    active: Active,
    segment_size: u64,
    prealloc: Option<Preallocator>,
    /// The log as written so far (mirrors the front end's index, one batch behind).
    written: LogIndex<()>,
    written_purge: Option<LogPos>,
    written_meta: BTreeMap<u8, Arc<[u8]>>,
    /// The batch's bytes until they are written at the end of the active segment.
    gathered: Gathered,
    /// Segment offset where the open write batch starts: the end of the synced bytes. Bytes
    /// written since (up to `active.tail.pos`) are not synced yet.
    batch_start: u64,
    /// When the oldest unsynced bytes were written, if any are.
    unsynced_since: Option<Instant>,
    /// When the last batch was taken (see `run`: the writer lingers after it).
    last_batch: Option<Instant>,
    placed: Vec<Placed>,
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        tail: Tail,
        segment_size: u64,
        prealloc: Option<Preallocator>,
        written: LogIndex<()>,
        written_purge: Option<LogPos>,
        written_meta: BTreeMap<u8, Arc<[u8]>>,
    ) -> Self {
        let batch_start = tail.pos;
        Self {
            shared,
            active: Active { encoder: format::RecordEncoder::new(tail.salt), tail, holds_ops: true },
            segment_size,
            prealloc,
            written,
            written_purge,
            written_meta,
            gathered: Gathered::with_capacity(1 << 20),
            batch_start,
            unsynced_since: None,
            last_batch: None,
            placed: Vec::new(),
        }
    }

    /// Runs until the log is closed and its queue drained, or until the first I/O error.
    pub(crate) fn run(mut self) {
        loop {
            let ops = {
                let mut st = lock(&self.shared.state);
                loop {
                    if st.closing || st.waited {
                        break;
                    }
                    let now = Instant::now();
                    let unwaited_due = st.unwaited_since.map(|t| super::IDLE_SYNC.saturating_sub(now - t));
                    let sync_due = self.sync_due_in();
                    if unwaited_due == Some(Duration::ZERO) || sync_due == Some(Duration::ZERO) {
                        break;
                    }
                    // For a while after a batch, sleep with a deadline, so that writes nobody
                    // waits for (a commit index after each commit) need no wake-up of their own.
                    let linger = self.last_batch.map(|t| super::IDLE_SYNC.saturating_sub(now - t));
                    match [unwaited_due, sync_due, linger].into_iter().flatten().filter(|d| !d.is_zero()).min() {
                        Some(due) => st = self.shared.wake.wait_timeout(st, due).unwrap_or_else(|p| p.into_inner()).0,
                        None => {
                            st.writer_parked = true;
                            st = self.shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                            st.writer_parked = false;
                        }
                    }
                }
                st.waited = false;
                // Writes nobody waited for count as unsynced from when they were queued, so
                // they are synced about `IDLE_SYNC` after that, as `Wal::set_meta_unsynced` says.
                if let Some(queued) = st.unwaited_since.take() {
                    self.unsynced_since = Some(self.unsynced_since.map_or(queued, |t| t.min(queued)));
                }
                std::mem::take(&mut st.queue)
            };
            if ops.is_empty() {
                // Idle with unsynced bytes, or closing: sync what was written, then go on or stop.
                if let Err(e) = self.sync_written() {
                    self.fail(e, Vec::new());
                    return;
                }
                let st = lock(&self.shared.state);
                if st.closing && st.queue.is_empty() {
                    return;
                }
                continue;
            }
            self.last_batch = Some(Instant::now());
            let sync = ops.iter().any(|op| op.done.is_some()) || self.sync_due_in() == Some(Duration::ZERO);
            let (kinds, dones): (Vec<OpKind>, Vec<Option<Done>>) = ops.into_iter().map(|op| (op.kind, op.done)).unzip();
            match self.write_batch(&kinds, sync) {
                Ok(purge) => {
                    self.publish();
                    dones.into_iter().flatten().for_each(|done| done(Ok(())));
                    if let Some(purge) = purge
                        && let Err(e) = self.delete_purged_segments(purge)
                    {
                        self.fail(e, Vec::new());
                        return;
                    }
                }
                Err(e) => {
                    self.fail(e, dones);
                    return;
                }
            }
        }
    }

    /// Writes one batch of ops, and syncs it (with anything written unsynced before it) if
    /// `sync`; returns the purge point it made durable, if any.
    fn write_batch(&mut self, ops: &[OpKind], sync: bool) -> io::Result<Option<LogPos>> {
        self.gathered.clear();
        self.placed.clear();
        let mut purge = None;
        for op in ops {
            match op {
                OpKind::Append(append) => {
                    // Check for room once for the whole append when it fits, else per entry.
                    let entries = &append.entries;
                    let bytes: usize = entries.iter().map(|(_, _, p)| RECORD_HEADER_LEN + p.len()).sum();
                    let fits = self.room_for(bytes);
                    for (index, term, payload) in entries {
                        if !fits {
                            self.make_room(payload.len())?;
                        }
                        let loc = self.encode_entry(*index, *term, payload);
                        self.placed.push(Placed { index: *index, append: address(append), loc });
                        self.written.push(*index, ()).map_err(invalid)?;
                    }
                    self.shared.stats.entries.inc_by(entries.len() as u64);
                }
                OpKind::Truncate(first_removed) => {
                    self.make_room(0)?;
                    self.encode(RecordKind::Truncate, *first_removed, 0, &[]);
                    self.written.truncate_from(*first_removed).map_err(invalid)?;
                }
                OpKind::Purge(pos) => {
                    self.make_room(0)?;
                    self.encode(RecordKind::Purge, pos.index, pos.term, &[]);
                    self.written.purge_to(pos.index);
                    self.written_purge = Some(*pos);
                    purge = Some(*pos);
                }
                OpKind::Meta(slot, value) => {
                    self.make_room(value.len())?;
                    self.encode(RecordKind::Meta, u64::from(*slot), 0, value);
                    self.written_meta.insert(*slot, value.clone());
                }
            }
            self.active.holds_ops = true;
        }
        self.write_buffered()?;
        // A purge point is always made durable: segments are removed on the strength of it.
        if sync || purge.is_some() {
            self.sync_written()?;
        }
        self.shared.stats.batches.inc();
        self.shared.stats.batch_ops.observe(ops.len() as f64);
        Ok(purge)
    }

    /// Encodes one record after the batch's gathered bytes; returns where it will be on disk.
    fn encode(&mut self, kind: RecordKind, index: u64, term: u64, payload: &[u8]) -> Loc {
        let loc = self.next_loc(payload.len());
        let batch_start = self.batch_start as u32;
        self.active.encoder.encode(self.gathered.buffer(), kind, index, term, batch_start, payload);
        loc
    }

    /// Encodes one entry as [`Self::encode`] does, but a large payload is written from where
    /// it is instead of being copied.
    fn encode_entry(&mut self, index: u64, term: u64, payload: &Bytes) -> Loc {
        if payload.len() < IN_PLACE_MIN {
            return self.encode(RecordKind::Entry, index, term, payload);
        }
        let loc = self.next_loc(payload.len());
        let batch_start = self.batch_start as u32;
        self.active.encoder.encode_header(self.gathered.buffer(), RecordKind::Entry, index, term, batch_start, payload);
        self.gathered.push_in_place(payload.clone());
        loc
    }

    /// Where a record with `payload_len` bytes gathered next will be on disk.
    fn next_loc(&self, payload_len: usize) -> Loc {
        let offset = self.active.tail.pos + self.gathered.len() as u64;
        Loc::Disk { seq: self.active.tail.seq, offset, len: (RECORD_HEADER_LEN + payload_len) as u32 }
    }

    /// Writes the gathered bytes at the end of the active segment, without syncing them.
    fn write_buffered(&mut self) -> io::Result<()> {
        if self.gathered.is_empty() {
            return Ok(());
        }
        let len = self.gathered.len() as u64;
        self.gathered.write_at(&*self.active.tail.file, self.active.tail.pos)?;
        self.unsynced_since.get_or_insert_with(Instant::now);
        self.shared.stats.bytes.inc_by(len);
        self.active.tail.pos += len;
        Ok(())
    }

    /// Whether bytes were written to the active segment since its last sync.
    fn has_unsynced(&self) -> bool {
        self.active.tail.pos > self.batch_start
    }

    /// How long until unsynced bytes are due to be synced ([`super::IDLE_SYNC`] after the
    /// oldest of them was written, even if only unsynced writes keep coming); `None` if there
    /// are none.
    fn sync_due_in(&self) -> Option<Duration> {
        Some(super::IDLE_SYNC.saturating_sub(self.unsynced_since?.elapsed()))
    }

    /// Syncs what was written to the active segment, closing the open write batch.
    fn sync_written(&mut self) -> io::Result<()> {
        if !self.has_unsynced() {
            return Ok(());
        }
        let syncing = std::time::Instant::now();
        self.active.tail.file.sync_data()?;
        self.shared.stats.sync_seconds.observe(syncing.elapsed().as_secs_f64());
        self.shared.stats.syncs.inc();
        self.batch_start = self.active.tail.pos;
        self.unsynced_since = None;
        Ok(())
    }

    /// Writes the buffer and syncs everything written to the active segment.
    fn flush(&mut self) -> io::Result<()> {
        self.write_buffered()?;
        self.sync_written()
    }

    /// Rotates to a new segment first if a record with `payload_len` bytes would not fit (a
    /// record larger than a whole segment gets a segment of its own, which grows to hold it).
    fn make_room(&mut self, payload_len: usize) -> io::Result<()> {
        if self.room_for(RECORD_HEADER_LEN + payload_len) || (!self.active.tail.sealed && !self.active.holds_ops) {
            return Ok(());
        }
        if !self.active.tail.sealed {
            self.encode(RecordKind::Seal, 0, 0, &[]);
            self.flush()?;
            self.active.tail.sealed = true;
        }
        self.open_next_segment()
    }

    /// Whether `bytes` of records (and a seal after them) fit the active segment as it is.
    fn room_for(&self, bytes: usize) -> bool {
        let end = self.active.tail.pos + self.gathered.len() as u64;
        !self.active.tail.sealed && end + (bytes + RECORD_HEADER_LEN) as u64 <= self.segment_size
    }

    /// Opens the next segment with the purge point and every metadata value written again at
    /// its head, so that deleting older segments never loses them. The head is durable before
    /// the segment gets its name (see `segment::activate`).
    fn open_next_segment(&mut self) -> io::Result<()> {
        let seq = self.active.tail.seq + 1;
        let header = SegmentHeader {
            seq,
            first_index: anchor_to_header(self.written.next_index()),
            salt: segment::random_salt(),
        };
        let head = encode_head(header.salt, self.written_purge, &self.written_meta);
        let fs = &*self.shared.fs;
        let file = segment::activate(fs, &self.shared.dir, &header, &head, self.prealloc.as_ref())?;
        let path = self.shared.dir.join(segment::segment_name(seq));
        lock(&self.shared.state)
            .segments
            .insert(seq, SegmentInfo { path, file: file.clone(), salt: header.salt, max_index: None });
        self.shared.stats.segments.inc();
        let pos = (SEGMENT_HEADER_LEN + head.len()) as u64;
        self.active = Active {
            tail: Tail { seq, file, salt: header.salt, pos, sealed: false },
            encoder: format::RecordEncoder::new(header.salt),
            holds_ops: false,
        };
        self.batch_start = pos;
        Ok(())
    }

    /// Points readers at the written records instead of the queued payloads, and records the
    /// largest index each segment now holds.
    fn publish(&mut self) {
        let mut st = lock(&self.shared.state);
        let mut largest: Option<(u64, u64)> = None; // (segment, index), flushed per segment
        for placed in self.placed.drain(..) {
            let Loc::Disk { seq, .. } = placed.loc else { continue };
            if let Some((s, index)) = largest
                && s != seq
                && let Some(info) = st.segments.get_mut(&s)
            {
                info.max_index = info.max_index.max(Some(index));
            }
            largest = Some((seq, placed.index));
            if let Some(slot) = st.index.get_mut(placed.index) {
                // The slot may hold a newer entry by now (truncated and re-appended): only the
                // very payload this batch wrote is replaced.
                if matches!(&slot.loc, Loc::Pending { append, .. } if address(append) == placed.append) {
                    slot.loc = placed.loc;
                }
            }
        }
        if let Some((s, index)) = largest
            && let Some(info) = st.segments.get_mut(&s)
        {
            info.max_index = info.max_index.max(Some(index));
        }
    }

    /// Removes, oldest first, the segments that hold nothing above the durable purge point:
    /// kept as spares while the pool has room, deleted otherwise. Only a prefix is ever removed,
    /// each removal synced before the next, so the surviving segments are always a contiguous
    /// run.
    fn delete_purged_segments(&mut self, purge: LogPos) -> io::Result<()> {
        loop {
            let victim = {
                let st = lock(&self.shared.state);
                let Some((&seq, info)) = st.segments.first_key_value() else {
                    return Ok(());
                };
                if seq == self.active.tail.seq || info.max_index.is_some_and(|m| m > purge.index) {
                    return Ok(());
                }
                (seq, info.path.clone())
            };
            let recycled = match &self.prealloc {
                Some(pool) => pool.recycle(&*self.shared.fs, &victim.1)?,
                None => false,
            };
            if !recycled {
                self.shared.fs.remove(&victim.1)?;
                self.shared.fs.sync_dir(&self.shared.dir)?;
            }
            lock(&self.shared.state).segments.remove(&victim.0);
            self.shared.stats.segments.dec();
        }
    }

    /// Marks the log failed and fails every waiter: this batch's, and all queued after it.
    fn fail(&mut self, e: io::Error, dones: Vec<Option<Done>>) {
        tracing::error!("WAL in {} failed and refuses writes until reopened: {e}", self.shared.dir.display());
        let reason = format!("an earlier write or sync failed: {e}");
        let queued = {
            let mut st = lock(&self.shared.state);
            // Only the writer sets it, and it stops after the first failure: the first reason stays.
            let _ = self.shared.failure.set(reason.clone());
            std::mem::take(&mut st.queue)
        };
        let all = dones.into_iter().flatten().chain(queued.into_iter().filter_map(|op| op.done));
        for done in all {
            done(Err(io::Error::new(e.kind(), reason.clone())));
        }
    }
}

/// The records that open a segment: the purge point, then every metadata value.
pub(crate) fn encode_head(salt: u32, purge: Option<LogPos>, meta: &BTreeMap<u8, Arc<[u8]>>) -> Vec<u8> {
    let start = SEGMENT_HEADER_LEN as u32;
    let encoder = format::RecordEncoder::new(salt);
    let mut head = Vec::new();
    if let Some(p) = purge {
        encoder.encode(&mut head, RecordKind::Purge, p.index, p.term, start, &[]);
    }
    for (slot, value) in meta {
        encoder.encode(&mut head, RecordKind::Meta, u64::from(*slot), 0, start, value);
    }
    head
}

fn invalid(gap: super::index::Gap) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, gap.to_string())
}
