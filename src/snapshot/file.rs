//! Writing, listing, pruning and opening snapshot files (layout in the module docs).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::{FORMAT_VERSION, HEADER_LEN, MAGIC, MAX_META_LEN};
use crate::engine::{ArchiveImage, ArchivedEngineImage};

const SUFFIX: &str = ".snap";
const TEMP_SUFFIX: &str = ".tmp";
/// Snapshots kept: the newest and one predecessor.
const KEEP: usize = 2;

/// Errors of snapshot files.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// An I/O call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: io::Error,
    },
    /// The file fails a check and must not be loaded.
    #[error("snapshot {file} is damaged: {reason}")]
    Damaged {
        /// The file.
        file: PathBuf,
        /// Which check failed.
        reason: String,
    },
    /// The meta does not fit the header.
    #[error("snapshot meta of {0} bytes exceeds the maximum of {MAX_META_LEN}")]
    MetaTooLarge(usize),
    /// Serializing the image failed.
    #[error("cannot archive the engine image: {0}")]
    Archive(String),
}

fn io(context: String) -> impl FnOnce(io::Error) -> SnapshotError {
    move |source| SnapshotError::Io { context, source }
}

/// Which state a snapshot holds: the last log id it covers. Orders snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SnapshotId {
    /// Index of the last log entry applied.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
}

impl std::fmt::Display for SnapshotId {
    /// `index 5000 (term 2)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at index {} (term {})", self.index, self.term)
    }
}

impl SnapshotId {
    fn file_name(&self) -> String {
        format!("{:020}-{:020}{SUFFIX}", self.index, self.term)
    }

    fn parse(name: &str) -> Option<Self> {
        let (index, term) = name.strip_suffix(SUFFIX)?.split_once('-')?;
        let digits = |s: &str| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit());
        if !(digits(index) && digits(term)) {
            return None;
        }
        Some(Self { index: index.parse().ok()?, term: term.parse().ok()? })
    }
}

/// Counts and checksums the bytes written through it.
struct Summing<W> {
    inner: W,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> Write for Summing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The directory of snapshot files.
pub struct SnapshotStore {
    dir: PathBuf,
}

impl SnapshotStore {
    /// Opens `dir` (creating it), removing unfinished temporary files.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, SnapshotError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let mut removed = false;
        for entry in std::fs::read_dir(&dir).map_err(io(format!("listing {}", dir.display())))? {
            let path = entry.map_err(io(format!("listing {}", dir.display())))?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                std::fs::remove_file(&path).map_err(io(format!("removing {}", path.display())))?;
                removed = true;
            }
        }
        if removed {
            sync_dir(&dir)?;
        }
        Ok(Self { dir })
    }

    /// The snapshots present, newest first.
    pub fn list(&self) -> Result<Vec<(SnapshotId, PathBuf)>, SnapshotError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io(format!("listing {}", self.dir.display())))? {
            let entry = entry.map_err(io(format!("listing {}", self.dir.display())))?;
            if let Some(id) = entry.file_name().to_str().and_then(SnapshotId::parse) {
                out.push((id, entry.path()));
            }
        }
        out.sort_by_key(|x| std::cmp::Reverse(x.0));
        Ok(out)
    }

    /// Writes `image` with `meta` as snapshot `id`: to a temporary file, synced, renamed into
    /// place, directory synced; then removes all but the newest two snapshots. Blocking.
    pub fn write(&self, id: SnapshotId, meta: &[u8], image: &impl ArchiveImage) -> Result<PathBuf, SnapshotError> {
        self.write_with(id, meta, |body| image.archive_to(body).map_err(|e| SnapshotError::Archive(e.to_string())))
    }

    /// As [`SnapshotStore::write`], with the body given as the bytes of an archive already
    /// checked (another snapshot's body, under new meta).
    pub fn write_body(&self, id: SnapshotId, meta: &[u8], body: &[u8]) -> Result<PathBuf, SnapshotError> {
        self.write_with(id, meta, |out| out.write_all(body).map_err(io("writing a snapshot body".into())))
    }

    fn write_with(
        &self,
        id: SnapshotId,
        meta: &[u8],
        write_body: impl FnOnce(&mut Summing<BufWriter<&File>>) -> Result<(), SnapshotError>,
    ) -> Result<PathBuf, SnapshotError> {
        if meta.len() > MAX_META_LEN {
            return Err(SnapshotError::MetaTooLarge(meta.len()));
        }
        let final_path = self.dir.join(id.file_name());
        let tmp = self.dir.join(format!("{}{TEMP_SUFFIX}", id.file_name()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io(format!("creating {}", tmp.display())))?;
        let mut out = BufWriter::with_capacity(1 << 20, &file);
        out.write_all(&[0u8; HEADER_LEN]).map_err(io(format!("writing {}", tmp.display())))?;
        let mut body = Summing { inner: out, crc: crc32fast::Hasher::new(), len: 0 };
        write_body(&mut body)?;
        body.flush().map_err(io(format!("writing {}", tmp.display())))?;
        let Summing { inner, crc, len } = body;
        inner.into_inner().map_err(|e| io(format!("writing {}", tmp.display()))(e.into_error()))?;
        let header = encode_header(meta, len, crc.finalize());
        file.write_all_at(&header, 0).map_err(io(format!("writing the header of {}", tmp.display())))?;
        file.sync_all().map_err(io(format!("syncing {}", tmp.display())))?;
        std::fs::rename(&tmp, &final_path).map_err(io(format!("renaming {}", tmp.display())))?;
        sync_dir(&self.dir)?;
        self.prune()?;
        Ok(final_path)
    }

    /// Removes all but the newest [`KEEP`] snapshots; only ever called once a newer one is
    /// durable.
    fn prune(&self) -> Result<(), SnapshotError> {
        let old: Vec<_> = self.list()?.into_iter().skip(KEEP).collect();
        for (_, path) in &old {
            std::fs::remove_file(path).map_err(io(format!("removing {}", path.display())))?;
        }
        if !old.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Removes every snapshot but the newest whose state the log can no longer bring forward
    /// (index below `log_purged_upto`): it could not serve as a fallback any more.
    pub fn prune_uncovered(&self, log_purged_upto: u64) -> Result<usize, SnapshotError> {
        let stale: Vec<_> = self.list()?.into_iter().skip(1).filter(|(id, _)| id.index < log_purged_upto).collect();
        for (_, path) in &stale {
            std::fs::remove_file(path).map_err(io(format!("removing {}", path.display())))?;
        }
        if !stale.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(stale.len())
    }

    /// Makes `snap` (checked, possibly received from a leader and stored elsewhere) a snapshot
    /// of this directory under its id: copied in under a temporary name and synced unless it is
    /// already here, renamed into place, directory synced, older ones pruned. Returns it as
    /// mapped from its final place. Blocking.
    pub fn adopt(&self, snap: &MappedSnapshot) -> Result<MappedSnapshot, SnapshotError> {
        let id = snap.id();
        let final_path = self.dir.join(id.file_name());
        if snap.path().parent() == Some(self.dir.as_path()) && snap.path() != final_path {
            // Received into this directory: already synced by the receiver, so a rename will do.
            File::open(snap.path())
                .and_then(|f| f.sync_all())
                .map_err(io(format!("syncing {}", snap.path().display())))?;
            std::fs::rename(snap.path(), &final_path).map_err(io(format!("renaming {}", snap.path().display())))?;
            sync_dir(&self.dir)?;
        } else if snap.path() != final_path {
            let tmp = self.dir.join(format!("{}{TEMP_SUFFIX}", id.file_name()));
            std::fs::write(&tmp, snap.bytes()).map_err(io(format!("writing {}", tmp.display())))?;
            File::open(&tmp).and_then(|f| f.sync_all()).map_err(io(format!("syncing {}", tmp.display())))?;
            std::fs::rename(&tmp, &final_path).map_err(io(format!("renaming {}", tmp.display())))?;
            sync_dir(&self.dir)?;
        }
        self.prune()?;
        MappedSnapshot::open(&final_path, id)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The newest snapshot that opens and checks, with the newer ones that did not and why.
    /// `Ok(None)` if there is no snapshot at all.
    #[allow(clippy::type_complexity)]
    pub fn load_newest(&self) -> Result<Option<(MappedSnapshot, Vec<(PathBuf, SnapshotError)>)>, SnapshotError> {
        let mut skipped = Vec::new();
        for (id, path) in self.list()? {
            match MappedSnapshot::open(&path, id) {
                Ok(snap) => return Ok(Some((snap, skipped))),
                Err(e) => skipped.push((path, e)),
            }
        }
        match skipped.into_iter().next() {
            None => Ok(None),
            Some((_, newest_error)) => Err(newest_error),
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), SnapshotError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(format!("syncing {}", dir.display())))
}

fn encode_header(meta: &[u8], body_len: u64, body_crc: u32) -> Vec<u8> {
    let mut h = vec![0u8; HEADER_LEN];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(meta.len() as u32).to_le_bytes());
    h[16..24].copy_from_slice(&body_len.to_le_bytes());
    h[24..28].copy_from_slice(&body_crc.to_le_bytes());
    h[32..32 + meta.len()].copy_from_slice(meta);
    let crc = crc32fast::hash(&h[..HEADER_LEN - 4]);
    h[HEADER_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
    h
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A snapshot file, mapped and checked.
pub struct MappedSnapshot {
    id: SnapshotId,
    path: PathBuf,
    map: Mmap,
    meta_len: usize,
}

impl MappedSnapshot {
    /// Maps `path` and checks header, length, body checksum and archive; loads nothing.
    pub fn open(path: &Path, id: SnapshotId) -> Result<Self, SnapshotError> {
        let damaged = |reason: String| SnapshotError::Damaged { file: path.to_path_buf(), reason };
        let file = File::open(path).map_err(io(format!("opening {}", path.display())))?;
        let len = file.metadata().map_err(io(format!("reading the length of {}", path.display())))?.len();
        if len < HEADER_LEN as u64 {
            return Err(damaged(format!("it ends at offset {len}, inside its {HEADER_LEN}-byte header")));
        }
        // SAFETY: snapshot files are written under a temporary name and never modified after
        // the rename that gives them this name, so the mapped bytes cannot change or shrink.
        let map = unsafe { Mmap::map(&file) }.map_err(io(format!("mapping {}", path.display())))?;
        let h = &map[..HEADER_LEN];
        if h[0..8] != MAGIC {
            return Err(damaged("bad magic at offset 0: not a snapshot file".into()));
        }
        if crc32fast::hash(&h[..HEADER_LEN - 4]) != le_u32(h, HEADER_LEN - 4) {
            return Err(damaged(format!(
                "header checksum mismatch: bytes 0..{} do not match the checksum at offset {}",
                HEADER_LEN - 4,
                HEADER_LEN - 4
            )));
        }
        if le_u32(h, 8) != FORMAT_VERSION {
            return Err(damaged(format!("unsupported format version {}", le_u32(h, 8))));
        }
        let meta_len = le_u32(h, 12) as usize;
        if meta_len > MAX_META_LEN {
            return Err(damaged(format!("meta length {meta_len} exceeds the header")));
        }
        let body_len = u64::from_le_bytes(h[16..24].try_into().unwrap_or([0xff; 8]));
        if HEADER_LEN as u64 + body_len != len {
            return Err(damaged(format!(
                "it ends at offset {len}, but its header describes {} bytes (truncated or extended)",
                HEADER_LEN as u64 + body_len
            )));
        }
        let body = &map[HEADER_LEN..];
        if crc32fast::hash(body) != le_u32(h, 24) {
            return Err(damaged(format!(
                "body checksum mismatch: bytes {HEADER_LEN}..{len} do not match the checksum at offset 24"
            )));
        }
        rkyv::access::<ArchivedEngineImage, rkyv::rancor::Error>(body)
            .map_err(|e| damaged(format!("archive fails validation: {e}")))?;
        Ok(Self { id, path: path.to_path_buf(), map, meta_len })
    }

    /// The archive: every byte after the header.
    pub fn body(&self) -> &[u8] {
        &self.map[HEADER_LEN..]
    }

    /// Which state it holds.
    pub fn id(&self) -> SnapshotId {
        self.id
    }

    /// Its file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The opaque snapshot meta written with it.
    pub fn meta(&self) -> &[u8] {
        &self.map[32..32 + self.meta_len]
    }

    /// The archived engine image, validated again (validation is cheap next to a restore).
    pub fn image(&self) -> Result<&ArchivedEngineImage, SnapshotError> {
        rkyv::access::<ArchivedEngineImage, rkyv::rancor::Error>(&self.map[HEADER_LEN..])
            .map_err(|e| SnapshotError::Damaged { file: self.path.clone(), reason: format!("archive: {e}") })
    }

    /// The whole file's bytes (for sending it to a follower).
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }
}

/// An engine restored from the file may read its vectors in place: the mapped bytes never
/// change (see the `Mmap::map` above).
impl crate::engine::Backing for MappedSnapshot {
    fn bytes(&self) -> &[u8] {
        &self.map
    }
}
