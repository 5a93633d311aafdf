//! openraft's `RaftLogStorage` and `RaftLogReader` on top of the WAL.
//!
//! Entries are WAL entries: the log id's term and index go in the record header, the payload
//! is encoded by [`super::codec`] (protobuf). The vote and the committed log id are WAL
//! metadata slots rather than a separate file: a slot write is a record in the same queue as
//! the entries, so every write reaches the disk in the order openraft issued it with no second
//! file to keep in step, and the WAL writes each slot's value again at the head of every new
//! segment, so purging old segments never loses it.
//!
//! The newest entries are also kept in memory as openraft gave them
//! ([`super::entry_cache`]): replication and apply read them back without decoding.
//!
//! Durability:
//! - `append` returns once the entries are readable; the `IOFlushed` callback fires from the
//!   WAL writer thread after the sync that made them durable.
//! - `save_vote` and `truncate_after` return only once durable.
//! - `save_committed` and `purge` are ordered with everything else but do not wait; the WAL
//!   deletes segment files only after the purge point is durable. The committed id asks for no
//!   sync of its own and does not wake the WAL's writer (`Wal::set_meta_unsynced`): it goes to
//!   disk with the next entry's write and sync (or within about `wal::IDLE_SYNC` if none comes),
//!   so a commit costs neither a sync nor a write of its own. After a crash or a power loss it
//!   may be older than the last one saved, which openraft allows: the entries behind it are
//!   durable, and the leader tells the node the commit again.

use std::fmt::Debug;
use std::io;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::type_config::alias::{LogIdOf, VoteOf};
use openraft::{Entry, LogState, OptionalSend, RaftLogReader};

use super::codec::{self, log_id};
use super::entry_cache::EntryCache;
use super::types::DurableConfig;
use crate::wal::fs::Fs;
use crate::wal::{self, Done, FailureLatch, LogPos, Wal, WalError, WalOptions};

/// WAL metadata slot holding the vote.
pub const SLOT_VOTE: u8 = 1;
/// WAL metadata slot holding the committed log id.
pub const SLOT_COMMITTED: u8 = 2;

/// The Raft log of one node. Clones share the same WAL (and the same cache of its newest
/// entries), so a reader sees every append at once.
pub struct LogStore<C: DurableConfig> {
    wal: Arc<Wal>,
    recent: Arc<Mutex<EntryCache<C::Entry>>>,
    _config: PhantomData<fn() -> C>,
}

impl<C: DurableConfig> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        Self { wal: self.wal.clone(), recent: self.recent.clone(), _config: PhantomData }
    }
}

impl<C: DurableConfig> LogStore<C> {
    /// Opens (or creates) the log in `dir`; see [`Wal::open`].
    pub fn open(dir: impl AsRef<Path>, opts: WalOptions) -> Result<Self, WalError> {
        Ok(Self::with_wal(Arc::new(Wal::open(dir, opts)?)))
    }

    /// Opens (or creates) the log in `dir` on the file system `fs`; see [`Wal::open_with_fs`].
    pub fn open_on(fs: Arc<dyn Fs>, dir: &Path, opts: WalOptions) -> Result<Self, WalError> {
        Ok(Self::with_wal(Arc::new(Wal::open_with_fs(fs, dir, opts)?)))
    }

    /// A log store over an already open WAL.
    pub fn with_wal(wal: Arc<Wal>) -> Self {
        Self { wal, recent: Arc::default(), _config: PhantomData }
    }

    /// The WAL underneath.
    pub fn wal(&self) -> &Arc<Wal> {
        &self.wal
    }

    /// The index of the last entry purged from the log, if any was.
    pub fn purged_index(&self) -> Option<u64> {
        self.wal.bounds().purged.map(|p| p.index)
    }

    /// A flag that turns true once the log is fully closed (its directory unlocked).
    pub fn closed_flag(&self) -> Arc<AtomicBool> {
        self.wal.closed_flag()
    }

    /// A view of this log for tasks that watch it, which does not keep it open.
    pub fn watch(&self) -> LogWatch {
        LogWatch { wal: Arc::downgrade(&self.wal), failure: self.wal.failure_latch() }
    }
}

/// A view of a node's log that does not keep it open: whether it can still be written, and
/// how much of it lies behind a point. Once the log is closed it reports only why it failed, if
/// it did.
#[derive(Clone, Debug)]
pub struct LogWatch {
    wal: Weak<Wal>,
    failure: FailureLatch,
}

impl LogWatch {
    /// What failed, if the log refuses writes (after a failed write or sync: a disk error, a
    /// full disk; it does until the node is restarted). Still answers after the log is closed.
    pub fn failure(&self) -> Option<String> {
        self.failure.get().cloned()
    }

    /// The lowest index `i` such that the entries `i..=upto` take at most `max_bytes` on disk
    /// (see [`Wal::tail_start_within`]); `None` once the log is closed.
    pub fn tail_start_within(&self, upto: u64, max_bytes: u64) -> Option<u64> {
        Some(self.wal.upgrade()?.tail_start_within(upto, max_bytes))
    }

    /// The bytes on disk of the live entries `from..=upto` (see [`Wal::bytes_in`]); `None` once
    /// the log is closed.
    pub fn bytes_in(&self, from: u64, upto: u64) -> Option<u64> {
        Some(self.wal.upgrade()?.bytes_in(from, upto))
    }
}

/// Starts a WAL write and waits, without blocking the async runtime, until it is durable.
async fn durable(start: impl FnOnce(Done) -> Result<(), WalError>) -> io::Result<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    start(Box::new(move |result| {
        let _ = tx.send(result);
    }))?;
    rx.await.map_err(|_| io::Error::other("the WAL writer stopped before completing the write"))?
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn ignore_completion() -> Done {
    Box::new(|_| {})
}

fn to_range(range: &impl RangeBounds<u64>) -> std::ops::Range<u64> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    start..end
}

impl<C: DurableConfig> RaftLogReader<C> for LogStore<C> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, io::Error> {
        let range = to_range(&range);
        if let Some(entries) = lock(&self.recent).get(&range) {
            return Ok(entries);
        }
        let wal = self.wal.clone();
        let records = tokio::task::spawn_blocking(move || wal.read(range))
            .await
            .map_err(|e| io::Error::other(format!("log read task failed: {e}")))??;
        records
            .into_iter()
            .map(|r| Ok(Entry { log_id: log_id(r.term, r.index), payload: codec::decode_payload(&r.payload)? }))
            .collect()
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        self.wal.meta(SLOT_VOTE).map(|b| codec::decode_vote(&b)).transpose()
    }
}

impl<C: DurableConfig> RaftLogStorage<C> for LogStore<C> {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let bounds = self.wal.bounds();
        let purged = bounds.purged.map(|p| log_id(p.term, p.index));
        let last = bounds.last.map(|p| log_id(p.term, p.index)).or(purged);
        Ok(LogState { last_purged_log_id: purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        let bytes = codec::encode_vote(vote);
        durable(|done| self.wal.set_meta(SLOT_VOTE, bytes, done)).await
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let bytes = codec::encode_committed(committed.as_ref());
        Ok(self.wal.set_meta_unsynced(SLOT_COMMITTED, bytes)?)
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        match self.wal.meta(SLOT_COMMITTED) {
            Some(bytes) => codec::decode_committed(&bytes),
            None => Ok(None),
        }
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut records = Vec::new();
        let mut kept = Vec::new();
        for e in entries {
            let payload = codec::encode_payload(&e.payload);
            let index = e.log_id.index;
            records.push(wal::Entry { index, term: e.log_id.leader_id.term, payload: payload.clone() });
            kept.push((index, e, payload.len()));
        }
        self.wal.append(records, Box::new(move |result| callback.io_completed(result)))?;
        // Only once the WAL holds them (readers fall back to the WAL for what is not here).
        let mut recent = lock(&self.recent);
        for (index, entry, bytes) in kept {
            recent.push(index, entry, bytes);
        }
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let first_removed = last_log_id.map_or(0, |l| l.index + 1);
        lock(&self.recent).truncate_from(first_removed);
        durable(|done| self.wal.truncate_from(first_removed, done)).await
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        let upto = LogPos { index: log_id.index, term: log_id.leader_id.term };
        lock(&self.recent).purge_to(log_id.index);
        Ok(self.wal.purge_to(upto, ignore_completion())?)
    }
}
