//! openraft's `RaftStateMachine` and `RaftSnapshotBuilder` on the engine and snapshot files.
//!
//! - `apply` runs each committed command through [`Engine::apply`] and answers its responder
//!   with the command's own result, user errors included: a user error is a response, the same
//!   on every replica, and never stops the node. Only an undecodable entry (surfacing from the
//!   log reader) or real I/O failure is an error here.
//! - A snapshot is captured in `get_snapshot_builder`, between two applies, so it is exactly
//!   the state at `last_applied`. The capture clones one `Arc` per store and stalls nothing;
//!   the builder archives it on a blocking thread straight from the captured chunks, with no
//!   copy of the state in between (temporary file, fsync, rename, directory fsync), while
//!   applies go on. A store written before the builder is done is
//!   copied in part by that write (see below). openraft purges the log only after
//!   the builder returns, so the log is never purged past a snapshot that is not durable.
//! - `SnapshotData` is a handle to a checked, mapped snapshot file, never a copy in memory.
//!   `install_snapshot` makes the file durable under its final name first and only then swaps
//!   the engine: a crash in between leaves the old snapshot as the newest, never a mix.
//! - On open, the newest snapshot that checks is restored. If a newer one is damaged, the
//!   older one is used only when the log still holds every entry after it (nothing past it was
//!   purged); otherwise the node refuses to start and the error names the damaged file.
//!
//! Cost of copy-on-write: the first write that lands on a store while a capture still holds it
//! copies the ~1 MiB chunks of vectors and norms it touches, and the store's key map,
//! predicate indexes and metadata arena whole (about 50 ms at 1M entries here). Long applies
//! (scans, index builds, large batches) run on the blocking pool.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use futures_util::StreamExt;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};

use super::codec::{LogIdStd, decode_snapshot_meta, encode_snapshot_meta};
use super::types::TypeConfig;
use crate::engine::{Capture, Engine, Limits, Response};
use crate::snapshot::{MappedSnapshot, SnapshotError, SnapshotId, SnapshotStore};

/// A snapshot as openraft passes it around: the checked, mapped file.
pub type SnapshotData = Arc<MappedSnapshot>;

type Membership = StoredMembershipOf<TypeConfig>;

/// Why the state machine cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A snapshot file is damaged and no usable fallback exists.
    #[error("cannot start: {0}; the log does not cover the state it held, so no older snapshot can replace it")]
    NoFallback(SnapshotError),
    /// The snapshot directory or a file in it could not be read.
    #[error("cannot start: {0}")]
    Snapshot(#[from] SnapshotError),
    /// A snapshot passed its checks but its content is inconsistent.
    #[error("cannot start: snapshot {file}: {reason}")]
    BadContent {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
}

struct Applied {
    last: Option<LogIdStd>,
    membership: Membership,
}

struct Shared {
    engine: RwLock<Arc<Engine>>,
    applied: Mutex<Applied>,
    current: Mutex<Option<SnapshotData>>,
    snapshots: SnapshotStore,
    limits: Limits,
    /// The node's id and metrics, once the node says (for log lines and counts).
    observer: std::sync::OnceLock<(u64, Arc<crate::metrics::Metrics>)>,
}

impl Shared {
    /// Logs `line` naming the node, and counts snapshot `event` of `bytes` taking `took`.
    fn snapshot_event(
        &self,
        event: &'static str,
        line: std::fmt::Arguments<'_>,
        bytes: u64,
        took: std::time::Duration,
    ) {
        match self.observer.get() {
            Some((id, metrics)) => {
                metrics.snapshot(event, bytes, took);
                tracing::info!("node {id} {line}");
            }
            None => tracing::info!("{line}"),
        }
    }
}

/// The replicated state: the engine, what was applied, and the snapshots.
#[derive(Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Runs blocking work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| io::Error::other(format!("blocking task failed: {e}")))?
}

impl StateMachine {
    /// Opens the state in `dir` (snapshots), restoring the newest usable snapshot.
    /// `log_purged_upto` is the log's purge point: a fallback to an older snapshot is allowed
    /// only if it covers at least that index.
    pub fn open(dir: &Path, limits: Limits, log_purged_upto: Option<u64>) -> Result<Self, StartError> {
        let snapshots = SnapshotStore::open(dir)?;
        let (engine, applied, current) = match snapshots.load_newest() {
            Ok(None) => (Engine::new(limits.clone()), Applied { last: None, membership: Membership::default() }, None),
            Ok(Some((snap, skipped))) => {
                let covers = log_purged_upto.is_none_or(|p| snap.id().index >= p);
                if let Some((_, damaged)) = skipped.into_iter().next()
                    && !covers
                {
                    return Err(StartError::NoFallback(damaged));
                }
                let snap = Arc::new(snap);
                let bad = |reason: String| StartError::BadContent { file: snap.path().display().to_string(), reason };
                let meta = decode_snapshot_meta(snap.meta()).map_err(|e| bad(e.to_string()))?;
                let engine = Engine::restore_backed(snap.image()?, snap.clone(), limits.clone()).map_err(bad)?;
                let applied = Applied { last: meta.last_log_id, membership: meta.last_membership };
                (engine, applied, Some(snap))
            }
            // Every snapshot is damaged: starting empty is right only if nothing was purged.
            Err(e) if log_purged_upto.is_none() => {
                tracing::warn!("ignoring damaged snapshots, the log holds everything: {e}");
                (Engine::new(limits.clone()), Applied { last: None, membership: Membership::default() }, None)
            }
            Err(e) => return Err(StartError::NoFallback(e)),
        };
        Ok(Self {
            shared: Arc::new(Shared {
                engine: RwLock::new(Arc::new(engine)),
                applied: Mutex::new(applied),
                current: Mutex::new(current),
                snapshots,
                limits,
                observer: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Names the node this state belongs to and where its snapshot work is counted (once).
    pub fn observe(&self, node: u64, metrics: Arc<crate::metrics::Metrics>) {
        let _ = self.shared.observer.set((node, metrics));
    }

    /// The newest snapshot, if any.
    pub fn current_snapshot(&self) -> Option<SnapshotData> {
        lock(&self.shared.current).clone()
    }

    /// Tells the state machine the log was purged up to `upto`: older snapshots that the log
    /// can no longer bring forward are deleted (the newest always stays).
    pub fn log_purged(&self, upto: u64) -> Result<usize, crate::snapshot::SnapshotError> {
        self.shared.snapshots.prune_uncovered(upto)
    }

    /// The directory snapshots are kept in (received ones are written there first).
    pub fn snapshot_dir(&self) -> std::path::PathBuf {
        self.shared.snapshots.dir().to_path_buf()
    }

    /// The engine as of the last applied entry.
    pub fn engine(&self) -> Arc<Engine> {
        self.shared.engine.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The last applied log id.
    pub fn last_applied(&self) -> Option<LogIdStd> {
        lock(&self.shared.applied).last
    }
}

/// Writes a captured state as a snapshot file.
pub struct SnapshotBuilder {
    shared: Arc<Shared>,
    capture: Option<Capture>,
    meta: SnapshotMetaOf<TypeConfig>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TypeConfig, SnapshotData>, io::Error> {
        let capture = self.capture.take().ok_or_else(|| other("snapshot builder used twice"))?;
        let meta = self.meta.clone();
        let shared = self.shared.clone();
        let id = SnapshotId {
            index: meta.last_log_id.map_or(0, |l| l.index),
            term: meta.last_log_id.map_or(0, |l| l.leader_id.term),
        };
        let meta_bytes = encode_snapshot_meta(&meta);
        let started = std::time::Instant::now();
        let snap = blocking(move || {
            // The image keeps the capture's large parts where they are, shared with it: the
            // archive streams them into the file.
            let image = capture.image_parts();
            drop(capture);
            let path = shared.snapshots.write(id, &meta_bytes, &image).map_err(other)?;
            drop(image);
            let snap = Arc::new(MappedSnapshot::open(&path, id).map_err(other)?);
            *lock(&shared.current) = Some(snap.clone());
            let bytes = snap.bytes().len() as u64;
            let summary = crate::progress::Summary::of(bytes, None, started.elapsed());
            shared.snapshot_event("built", format_args!("built snapshot {id}: {summary}"), bytes, started.elapsed());
            Ok(snap)
        })
        .await?;
        Ok(openraft::Snapshot { meta, snapshot: snap })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogIdStd>, Membership), io::Error> {
        let a = lock(&self.shared.applied);
        Ok((a.last, a.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: futures_util::Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let engine = self.engine();
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let log_id = entry.log_id;
            let result = match entry.payload {
                EntryPayload::Blank => Ok(Response::Unit),
                // Scans, index builds and large batches run on the blocking pool, so the
                // runtime's workers stay free for heartbeats and elections.
                EntryPayload::Normal(cmd) if cmd.may_take_long() => {
                    let engine = engine.clone();
                    tokio::task::spawn_blocking(move || engine.apply(&cmd))
                        .await
                        .map_err(|e| other(format!("applying {log_id}: {e}")))?
                }
                EntryPayload::Normal(cmd) => engine.apply(&cmd),
                EntryPayload::Membership(m) => {
                    lock(&self.shared.applied).membership = Membership::new(Some(log_id), m);
                    Ok(Response::Unit)
                }
            };
            lock(&self.shared.applied).last = Some(log_id);
            if let Some(r) = responder {
                r.send(result);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let engine = self.engine();
        let applied = lock(&self.shared.applied);
        let meta =
            SnapshotMetaOf::<TypeConfig> { last_log_id: applied.last, last_membership: applied.membership.clone() };
        drop(applied);
        SnapshotBuilder { shared: self.shared.clone(), capture: Some(engine.capture()), meta }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TypeConfig>,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let shared = self.shared.clone();
        let meta = meta.clone();
        blocking(move || {
            let started = std::time::Instant::now();
            let engine =
                Engine::restore_backed(snapshot.image().map_err(other)?, snapshot.clone(), shared.limits.clone())
                    .map_err(other)?;
            let adopted = Arc::new(shared.snapshots.adopt(&snapshot).map_err(other)?);
            *shared.engine.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(engine);
            *lock(&shared.applied) = Applied { last: meta.last_log_id, membership: meta.last_membership.clone() };
            let (id, bytes) = (adopted.id(), adopted.bytes().len() as u64);
            *lock(&shared.current) = Some(adopted);
            let summary = crate::progress::Summary::of(bytes, None, started.elapsed());
            shared.snapshot_event(
                "installed",
                format_args!("installed snapshot {id}: {summary}"),
                bytes,
                started.elapsed(),
            );
            Ok(())
        })
        .await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<TypeConfig, SnapshotData>>, io::Error> {
        let Some(snap) = lock(&self.shared.current).clone() else { return Ok(None) };
        let meta = decode_snapshot_meta(snap.meta())?;
        Ok(Some(openraft::Snapshot { meta, snapshot: snap }))
    }
}
