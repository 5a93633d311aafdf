//! An in-memory file system that models power loss, for crash tests and fuzzing.
//!
//! It remembers, per file, which bytes were made durable by `sync_data`, and which directory
//! operations (create, rename, remove) were made durable by `sync_dir`. [`SimFs::crash`] stops
//! every later call with an error (as if the machine lost power at that instant);
//! [`SimFs::reboot`] then builds the image a disk could hold afterwards: every synced byte plus
//! a random subset of the unsynced ones, a file length between the synced and the written one,
//! and the synced directory plus a random prefix of the unsynced directory operations (a
//! journaling file system commits metadata in order, and a rename is atomic). It can also
//! fail one `sync_data` with `EIO` (dropping that sync's unsynced bytes, as Linux does) and run
//! out of space (`ENOSPC`) after a number of written bytes.
//!
//! For file contents it assumes nothing about write ordering at all, which is the weakest (and
//! so the safest) assumption for the code under test.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::fs::{DirLock, Fs, FsFile};

/// A deterministic pseudo-random generator (SplitMix64), so a failing seed reproduces.
#[derive(Clone, Debug)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A fair coin.
    pub fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
}

#[derive(Default)]
struct Inode {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// Byte ranges written since the last successful sync.
    dirty: Vec<(usize, usize)>,
}

type InodeRef = Arc<Mutex<Inode>>;

/// A directory operation not yet made durable.
enum DirOp {
    Create(PathBuf, InodeRef),
    Rename(PathBuf, PathBuf),
    Remove(PathBuf),
}

struct SimState {
    rng: SimRng,
    generation: u64,
    crashed: bool,
    names: BTreeMap<PathBuf, InodeRef>,
    durable_names: BTreeMap<PathBuf, InodeRef>,
    pending_dir_ops: Vec<DirOp>,
    locks: BTreeSet<PathBuf>,
    fail_sync_in: Option<u64>,
    space_left: Option<u64>,
    crash_in_ops: Option<u64>,
}

/// The simulated file system; clones share one state.
#[derive(Clone)]
pub struct SimFs {
    state: Arc<Mutex<SimState>>,
}

impl std::fmt::Debug for SimFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimFs")
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn crashed_error() -> io::Error {
    io::Error::other("simulated power loss: the file system is gone until reboot")
}

/// What a mutating call should do after the fault plan has been consulted.
enum Gate {
    Proceed,
    /// Crash now; a write may still leave a random prefix behind.
    CrashNow,
}

impl SimFs {
    /// An empty file system whose random choices follow `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: Arc::new(Mutex::new(SimState {
                rng: SimRng::new(seed),
                generation: 0,
                crashed: false,
                names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                pending_dir_ops: Vec::new(),
                locks: BTreeSet::new(),
                fail_sync_in: None,
                space_left: None,
                crash_in_ops: None,
            })),
        }
    }

    /// Loses power now: every later call fails until [`SimFs::reboot`].
    pub fn crash(&self) {
        lock(&self.state).crashed = true;
    }

    /// Loses power during the `n`-th mutating call from now (1 = the next one). A write caught by
    /// it leaves a random prefix of its bytes behind, unsynced.
    pub fn crash_after_ops(&self, n: u64) {
        lock(&self.state).crash_in_ops = Some(n.max(1));
    }

    /// Makes the `n`-th `sync_data` from now (1 = the next one) fail with `EIO`; the bytes it
    /// should have synced stay readable but are not durable.
    pub fn fail_sync_after(&self, n: u64) {
        lock(&self.state).fail_sync_in = Some(n.max(1));
    }

    /// Lets only `bytes` more bytes be written; the write that crosses the limit writes what fits
    /// and fails with `ENOSPC`, as does every write after it.
    pub fn limit_space(&self, bytes: u64) {
        lock(&self.state).space_left = Some(bytes);
    }

    /// Whether the file system has crashed and awaits a reboot.
    pub fn is_crashed(&self) -> bool {
        lock(&self.state).crashed
    }

    /// Powers back on with what a disk could hold after the crash (also usable without a crash,
    /// as a sudden power cut). Clears every fault and lock; handles opened before are dead.
    pub fn reboot(&self) {
        let mut st = lock(&self.state);
        let st = &mut *st;
        let mut names = std::mem::take(&mut st.durable_names);
        let kept = st.rng.below(st.pending_dir_ops.len() as u64 + 1) as usize;
        for op in st.pending_dir_ops.drain(..).take(kept) {
            match op {
                DirOp::Create(path, inode) => {
                    names.insert(path, inode);
                }
                DirOp::Rename(from, to) => {
                    if let Some(inode) = names.remove(&from) {
                        names.insert(to, inode);
                    }
                }
                DirOp::Remove(path) => {
                    names.remove(&path);
                }
            }
        }
        let mut images: Vec<(*const Mutex<Inode>, InodeRef)> = Vec::new();
        let mut survivors = BTreeMap::new();
        for (path, inode) in names {
            let key = Arc::as_ptr(&inode);
            let image = match images.iter().find(|(k, _)| *k == key) {
                Some((_, img)) => img.clone(),
                None => {
                    let img = Arc::new(Mutex::new(power_loss_image(&lock(&inode), &mut st.rng)));
                    images.push((key, img.clone()));
                    img
                }
            };
            survivors.insert(path, image);
        }
        st.durable_names = survivors.clone();
        st.names = survivors;
        st.generation += 1;
        st.crashed = false;
        st.locks.clear();
        st.fail_sync_in = None;
        st.space_left = None;
        st.crash_in_ops = None;
    }

    /// The current bytes of a file (as reads see them), for tests.
    pub fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let st = lock(&self.state);
        let inode = st.names.get(path).ok_or_else(|| not_found(path))?;
        let data = lock(inode).current.clone();
        Ok(data)
    }

    /// Replaces a file's bytes durably, for tests that damage a file between runs.
    pub fn write_file_durable(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let st = lock(&self.state);
        let inode = st.names.get(path).ok_or_else(|| not_found(path))?;
        let mut ino = lock(inode);
        ino.current = bytes.to_vec();
        ino.durable = bytes.to_vec();
        ino.dirty.clear();
        Ok(())
    }

    fn gate(st: &mut SimState) -> io::Result<Gate> {
        if st.crashed {
            return Err(crashed_error());
        }
        if let Some(n) = st.crash_in_ops.as_mut() {
            *n -= 1;
            if *n == 0 {
                st.crash_in_ops = None;
                st.crashed = true;
                return Ok(Gate::CrashNow);
            }
        }
        Ok(Gate::Proceed)
    }

    fn mutate(&self) -> io::Result<MutexGuard<'_, SimState>> {
        let mut st = lock(&self.state);
        match Self::gate(&mut st)? {
            Gate::Proceed => Ok(st),
            Gate::CrashNow => Err(crashed_error()),
        }
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file", path.display()))
}

/// What survives of one file: its synced bytes, a random subset of unsynced ones, and a length
/// somewhere between the synced and the current one. The subset is drawn per byte, per 512-byte
/// sector or per 4 KiB page (chosen at random per file): bytes test torn records, whole sectors
/// and pages let a later record survive intact while an earlier one is lost.
fn power_loss_image(ino: &Inode, rng: &mut SimRng) -> Inode {
    let (lo, hi) = (ino.durable.len().min(ino.current.len()), ino.durable.len().max(ino.current.len()));
    let len = if ino.dirty.is_empty() { ino.durable.len() } else { lo + rng.below((hi - lo) as u64 + 1) as usize };
    let unit = [1usize, 512, 4096][rng.below(3) as usize];
    let mut out = ino.durable.clone();
    out.resize(len, 0);
    for &(start, end) in &ino.dirty {
        let mut at = start;
        while at < end.min(len) {
            let block_end = ((at / unit + 1) * unit).min(end).min(len);
            if rng.coin() {
                for (i, b) in out.iter_mut().enumerate().take(block_end).skip(at) {
                    *b = ino.current.get(i).copied().unwrap_or(0);
                }
            }
            at = block_end;
        }
    }
    Inode { current: out.clone(), durable: out, dirty: Vec::new() }
}

impl Fs for SimFs {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        if lock(&self.state).crashed {
            return Err(crashed_error());
        }
        Ok(())
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock> {
        let mut st = lock(&self.state);
        if !st.locks.insert(dir.to_path_buf()) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is locked by another process", dir.join("LOCK").display()),
            ));
        }
        Ok(Box::new(SimLock { fs: self.clone(), dir: dir.to_path_buf(), generation: st.generation }))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = lock(&self.state);
        if st.crashed {
            return Err(crashed_error());
        }
        Ok(st
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        let st = lock(&self.state);
        if st.crashed {
            return Err(crashed_error());
        }
        let inode = st.names.get(path).ok_or_else(|| not_found(path))?.clone();
        Ok(Arc::new(SimFile { fs: self.clone(), inode, generation: st.generation }))
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        let mut st = self.mutate()?;
        if st.names.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", path.display())));
        }
        let inode = InodeRef::default();
        st.names.insert(path.to_path_buf(), inode.clone());
        st.pending_dir_ops.push(DirOp::Create(path.to_path_buf(), inode.clone()));
        Ok(Arc::new(SimFile { fs: self.clone(), inode, generation: st.generation }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.mutate()?;
        let inode = st.names.remove(from).ok_or_else(|| not_found(from))?;
        st.names.insert(to.to_path_buf(), inode);
        st.pending_dir_ops.push(DirOp::Rename(from.to_path_buf(), to.to_path_buf()));
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.mutate()?;
        st.names.remove(path).ok_or_else(|| not_found(path))?;
        st.pending_dir_ops.push(DirOp::Remove(path.to_path_buf()));
        Ok(())
    }

    /// Commits every pending directory operation, like a journal commit (not only `dir`'s).
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        let mut st = self.mutate()?;
        st.durable_names = st.names.clone();
        st.pending_dir_ops.clear();
        Ok(())
    }
}

struct SimLock {
    fs: SimFs,
    dir: PathBuf,
    generation: u64,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut st = lock(&self.fs.state);
        if st.generation == self.generation {
            st.locks.remove(&self.dir);
        }
    }
}

struct SimFile {
    fs: SimFs,
    inode: InodeRef,
    generation: u64,
}

impl SimFile {
    fn live(&self, st: &SimState) -> io::Result<()> {
        if st.crashed || st.generation != self.generation {
            return Err(crashed_error());
        }
        Ok(())
    }
}

impl FsFile for SimFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.live(&lock(&self.fs.state))?;
        let ino = lock(&self.inode);
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let src = ino.current.get(start..start.saturating_add(buf.len())).ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut st = lock(&self.fs.state);
        self.live(&st)?;
        let gate = SimFs::gate(&mut st)?;
        let mut n = buf.len();
        let mut result = Ok(());
        if let Gate::CrashNow = gate {
            n = st.rng.below(n as u64 + 1) as usize;
            result = Err(crashed_error());
        }
        if let Some(left) = st.space_left.as_mut() {
            if (n as u64) > *left {
                n = *left as usize;
                result = Err(io::Error::from_raw_os_error(28));
            }
            *left -= n as u64;
        }
        let start = offset as usize;
        let mut ino = lock(&self.inode);
        if ino.current.len() < start + n {
            ino.current.resize(start + n, 0);
        }
        ino.current[start..start + n].copy_from_slice(&buf[..n]);
        if n > 0 {
            ino.dirty.push((start, start + n));
        }
        result
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut st = lock(&self.fs.state);
        self.live(&st)?;
        if let Gate::CrashNow = SimFs::gate(&mut st)? {
            return Err(crashed_error());
        }
        let mut ino = lock(&self.inode);
        if let Some(n) = st.fail_sync_in.as_mut() {
            *n -= 1;
            if *n == 0 {
                st.fail_sync_in = None;
                // Linux reports the error once and marks the pages clean: the bytes stay
                // readable but were never made durable.
                ino.dirty.clear();
                return Err(io::Error::from_raw_os_error(5));
            }
        }
        let ino = &mut *ino;
        ino.durable.resize(ino.current.len(), 0);
        for (start, end) in ino.dirty.drain(..) {
            let end = end.min(ino.current.len());
            if start < end {
                ino.durable[start..end].copy_from_slice(&ino.current[start..end]);
            }
        }
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        self.live(&lock(&self.fs.state))?;
        Ok(lock(&self.inode).current.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut st = lock(&self.fs.state);
        self.live(&st)?;
        if let Gate::CrashNow = SimFs::gate(&mut st)? {
            return Err(crashed_error());
        }
        let mut ino = lock(&self.inode);
        let old = ino.current.len();
        let len = len as usize;
        ino.current.resize(len, 0);
        if len > old {
            ino.dirty.push((old, len));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synced_bytes_survive_and_unsynced_may_not() {
        let fs = SimFs::new(1);
        let dir = Path::new("/d");
        let f = fs.create(&dir.join("a")).expect("create");
        f.write_all_at(b"durable", 0).expect("write");
        f.sync_data().expect("sync");
        fs.sync_dir(dir).expect("sync dir");
        f.write_all_at(&[0xff; 4096], 7).expect("write");
        fs.reboot();
        let data = fs.read_file(&dir.join("a")).expect("read");
        assert_eq!(&data[..7], b"durable");
        assert!(data.len() <= 7 + 4096);
        let kept = data[7..].iter().filter(|&&b| b == 0xff).count();
        assert!(kept < 4096 || data.len() == 7, "some unsynced byte should be lost");
    }

    #[test]
    fn unsynced_create_may_vanish_and_failed_sync_loses_data() {
        let fs = SimFs::new(3);
        let dir = Path::new("/d");
        let f = fs.create(&dir.join("a")).expect("create");
        f.write_all_at(b"xyz", 0).expect("write");
        fs.fail_sync_after(1);
        assert_eq!(f.sync_data().expect_err("EIO").raw_os_error(), Some(5));
        assert!(f.sync_data().is_ok(), "the error is reported once");
        fs.sync_dir(dir).expect("sync dir");
        fs.reboot();
        let data = fs.read_file(&dir.join("a")).expect("read");
        assert!(data.iter().all(|&b| b == 0), "the failed sync's bytes were lost, got {data:?}");
        assert!(f.write_all_at(b"x", 0).is_err(), "handles from before the reboot are dead");
    }
}
