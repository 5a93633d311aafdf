//! Segment files: their names, their creation, and the pool of spare files that rotation takes
//! from. A spare is either a purged segment kept for reuse (its old records fail every check of
//! the segment it becomes, whose salt is new) or a zero-filled file made by a background thread
//! when the pool is empty. Either way, rotation overwrites allocated blocks instead of growing a
//! file, which syncs several times faster, and never waits on zero-filling.

use prometheus_client::metrics::gauge::Gauge;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::format::SegmentHeader;
use super::fs::{Fs, FsFile};

/// File name suffix of segments: `00000000000000000001.wal`.
const SEGMENT_SUFFIX: &str = ".wal";
/// File name prefix of spares: `spare-00000000000000000001.wal`.
const SPARE_PREFIX: &str = "spare-";
/// Suffix of files that may be incomplete; removed on open.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";
/// Zero-fill in chunks of this size.
const ZERO_CHUNK: usize = 1 << 20;

/// The file name of segment `seq`.
pub(crate) fn segment_name(seq: u64) -> String {
    format!("{seq:020}{SEGMENT_SUFFIX}")
}

/// The sequence number in a segment file name, or `None` if `name` is not a segment's.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The file name of spare number `n`.
pub(crate) fn spare_name(n: u64) -> String {
    format!("{SPARE_PREFIX}{n:020}{SEGMENT_SUFFIX}")
}

/// The number in a spare's file name, or `None` if `name` is not a spare's.
pub(crate) fn parse_spare_name(name: &str) -> Option<u64> {
    parse_segment_name(name.strip_prefix(SPARE_PREFIX)?)
}

/// A random salt for a new segment's record checksums.
pub(crate) fn random_salt() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now()) as u32
}

/// Creates `path` durably filled with `len` zero bytes: written under a temporary name, synced,
/// renamed into place, directory synced. Gives up with `Interrupted`, leaving only the temporary
/// file (removed on the next open), as soon as `keep_going` says no between two chunks.
pub(crate) fn create_zeroed(
    fs: &dyn Fs,
    dir: &Path,
    name: &str,
    len: u64,
    keep_going: &dyn Fn() -> bool,
) -> io::Result<()> {
    let tmp = dir.join(format!("{name}{TEMP_SUFFIX}"));
    if fs.list(dir)?.iter().any(|n| dir.join(n) == tmp) {
        fs.remove(&tmp)?;
    }
    let file = fs.create(&tmp)?;
    // Blocks reserved in one call are only overwritten by the zeros below: on ext4 that takes
    // about a third less CPU than allocating them block by block as the writes arrive. The
    // zeros are still written, so the segment's later syncs find written blocks.
    if let Err(e) = file.allocate(len) {
        tracing::debug!("reserving {len} bytes for a spare segment: {e}; zero-filling without");
    }
    let zeros = vec![0u8; ZERO_CHUNK];
    let mut off = 0;
    while off < len {
        if !keep_going() {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "zero-filling a spare was stopped"));
        }
        let n = (len - off).min(ZERO_CHUNK as u64) as usize;
        file.write_all_at(&zeros[..n], off)?;
        off += n as u64;
    }
    file.sync_data()?;
    fs.rename(&tmp, &dir.join(name))?;
    fs.sync_dir(dir)
}

/// Makes segment `header.seq` durable and returns its open file: the header and the `head`
/// records are written and synced into the spare (if one is ready) or a new file, then the file
/// is renamed to its segment name and the directory synced. A segment is thus never seen under
/// its name without its whole head.
pub(crate) fn activate(
    fs: &dyn Fs,
    dir: &Path,
    header: &SegmentHeader,
    head: &[u8],
    spare: Option<&Preallocator>,
) -> io::Result<Arc<dyn FsFile>> {
    let final_path = dir.join(segment_name(header.seq));
    let source = match spare.and_then(Preallocator::take) {
        Some(path) => path,
        None => {
            let tmp = dir.join(format!("{}{TEMP_SUFFIX}", segment_name(header.seq)));
            if fs.list(dir)?.iter().any(|n| dir.join(n) == tmp) {
                fs.remove(&tmp)?;
            }
            fs.create(&tmp)?;
            tmp
        }
    };
    let file = fs.open(&source)?;
    let mut start = header.encode().to_vec();
    start.extend_from_slice(head);
    file.write_all_at(&start, 0)?;
    file.sync_data()?;
    fs.rename(&source, &final_path)?;
    fs.sync_dir(dir)?;
    if let Some(spare) = spare {
        spare.want_next();
    }
    Ok(file)
}

struct PoolState {
    ready: Vec<PathBuf>,
    next_name: u64,
    wanted: bool,
    stop: bool,
    /// Shows how many spares are ready.
    count: Gauge,
}

impl PoolState {
    fn counted(&mut self) {
        self.count.set(self.ready.len() as i64);
    }
}

/// The pool of spare segment files, refilled with a zero-filled file by a background thread
/// whenever rotation finds it empty.
pub(crate) struct Preallocator {
    dir: PathBuf,
    /// Most spares kept by [`Preallocator::recycle`].
    max_spares: usize,
    state: Arc<(Mutex<PoolState>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

fn lock_pool(m: &Mutex<PoolState>) -> std::sync::MutexGuard<'_, PoolState> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Preallocator {
    /// Starts the pool with the spares `spares` (numbers) found on open. If there are none, the
    /// first is made before returning, so that even the first segment is written over
    /// allocated blocks rather than grown.
    /// `count` shows how many are ready; [`Preallocator::recycle`] keeps at most `max_spares`.
    pub(crate) fn start(
        fs: Arc<dyn Fs>,
        dir: PathBuf,
        len: u64,
        max_spares: usize,
        spares: &[u64],
        count: Gauge,
    ) -> io::Result<Self> {
        let mut next_name = spares.iter().max().map_or(1, |m| m + 1);
        let mut ready: Vec<PathBuf> = spares.iter().map(|n| dir.join(spare_name(*n))).collect();
        if ready.is_empty() {
            let name = spare_name(next_name);
            next_name += 1;
            create_zeroed(&*fs, &dir, &name, len, &|| true)?;
            ready.push(dir.join(name));
        }
        count.set(ready.len() as i64);
        let state =
            Arc::new((Mutex::new(PoolState { ready, next_name, wanted: false, stop: false, count }), Condvar::new()));
        let thread_state = state.clone();
        let thread_dir = dir.clone();
        let thread = std::thread::Builder::new().name("wal-prealloc".into()).spawn(move || {
            lower_this_threads_priority();
            let (lock, cvar) = &*thread_state;
            loop {
                let name = {
                    let mut st = lock_pool(lock);
                    while !st.stop && (!st.wanted || !st.ready.is_empty()) {
                        st = cvar.wait(st).unwrap_or_else(|p| p.into_inner());
                    }
                    if st.stop {
                        return;
                    }
                    st.next_name += 1;
                    spare_name(st.next_name - 1)
                };
                // A stopping log does not wait for a spare it will not use.
                let result = create_zeroed(&*fs, &thread_dir, &name, len, &|| !lock_pool(lock).stop);
                let mut st = lock_pool(lock);
                if st.stop {
                    return;
                }
                st.wanted = false;
                match result {
                    Ok(()) => {
                        st.ready.push(thread_dir.join(name));
                        st.counted();
                    }
                    // Rotation falls back to creating a file inline; the next rotation asks again.
                    Err(e) => tracing::warn!("could not preallocate a WAL segment in {}: {e}", thread_dir.display()),
                }
            }
        })?;
        Ok(Self { dir, max_spares, state, thread: Some(thread) })
    }

    /// Takes a spare's path, if one is ready.
    fn take(&self) -> Option<PathBuf> {
        let mut st = lock_pool(&self.state.0);
        let spare = st.ready.pop();
        st.counted();
        spare
    }

    /// Asks the thread for a new spare if the pool is empty.
    fn want_next(&self) {
        let (lock, cvar) = &*self.state;
        let mut st = lock_pool(lock);
        st.wanted = st.ready.is_empty();
        cvar.notify_all();
    }

    /// Keeps the purged segment at `segment` as a spare instead of deleting it, if the pool has
    /// room: renamed, directory synced. Returns whether it did.
    pub(crate) fn recycle(&self, fs: &dyn Fs, segment: &Path) -> io::Result<bool> {
        let mut st = lock_pool(&self.state.0);
        if st.ready.len() >= self.max_spares {
            return Ok(false);
        }
        let spare = self.dir.join(spare_name(st.next_name));
        st.next_name += 1;
        fs.rename(segment, &spare)?;
        fs.sync_dir(&self.dir)?;
        st.ready.push(spare);
        st.counted();
        Ok(true)
    }
}

/// Makes the calling thread yield the CPU to every normal thread (nice 19), so that zero-filling
/// spares runs in the time the writes leave over. Under a load that keeps the CPUs busy, a spare
/// may then not be ready at rotation, and the segment is made by growing a new file instead:
/// slower syncs for that segment, but no CPU taken from the writes that fill it. Best effort.
fn lower_this_threads_priority() {
    // On Linux the nice value is per thread, and `who = 0` names the calling thread.
    // SAFETY: a plain system call on the calling thread; it touches no memory of ours.
    let failed = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) } != 0;
    if failed {
        tracing::debug!("could not lower the WAL preallocation thread's priority: {}", io::Error::last_os_error());
    }
}

impl Drop for Preallocator {
    fn drop(&mut self) {
        {
            let (lock, cvar) = &*self.state;
            lock_pool(lock).stop = true;
            cvar.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strangers_are_ignored() {
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        for stranger in ["spare.wal", "1.wal", "00000000000000000001.wal.tmp", "0000000000000000000x.wal", "LOCK"] {
            assert_eq!(parse_segment_name(stranger), None, "{stranger}");
        }
        assert_eq!(parse_spare_name(&spare_name(7)), Some(7));
        assert_eq!(parse_spare_name(&segment_name(7)), None);
        assert_eq!(parse_segment_name(&spare_name(7)), None);
    }

    #[test]
    fn a_zero_fill_told_to_stop_gives_up_between_chunks_and_leaves_no_spare() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = super::super::fs::OsFs;
        let checks = std::cell::Cell::new(0);
        let keep_going = || {
            checks.set(checks.get() + 1);
            checks.get() <= 2
        };
        let len = 8 * ZERO_CHUNK as u64;
        let err = create_zeroed(&fs, dir.path(), &spare_name(1), len, &keep_going).expect_err("stopped");
        assert_eq!(err.kind(), io::ErrorKind::Interrupted);
        assert_eq!(checks.get(), 3, "asked once per chunk, and no further once told to stop");
        assert!(!dir.path().join(spare_name(1)).exists(), "no spare under its name");
        let tmp = dir.path().join(format!("{}{TEMP_SUFFIX}", spare_name(1)));
        assert!(tmp.exists(), "the temporary file is left for the next open to remove");

        create_zeroed(&fs, dir.path(), &spare_name(1), len, &|| true).expect("a fill left to finish");
        assert_eq!(std::fs::metadata(dir.path().join(spare_name(1))).expect("spare").len(), len);
        assert!(!tmp.exists(), "the leftover temporary file was replaced");
    }
}
