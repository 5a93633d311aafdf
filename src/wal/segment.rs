//! Segment files: their names, their creation, and the spare that a background thread keeps
//! ready so that rotation never waits on zero-filling a file.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::format::SegmentHeader;
use super::fs::{Fs, FsFile};

/// File name suffix of segments: `00000000000000000001.wal`.
const SEGMENT_SUFFIX: &str = ".wal";
/// Name of the ready, zero-filled, synced spare segment.
pub(crate) const SPARE_NAME: &str = "spare.wal";
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

/// A random salt for a new segment's record checksums.
pub(crate) fn random_salt() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now()) as u32
}

/// Creates `path` durably filled with `len` zero bytes: written under a temporary name, synced,
/// renamed into place, directory synced.
pub(crate) fn create_zeroed(fs: &dyn Fs, dir: &Path, name: &str, len: u64) -> io::Result<()> {
    let tmp = dir.join(format!("{name}{TEMP_SUFFIX}"));
    if fs.list(dir)?.iter().any(|n| dir.join(n) == tmp) {
        fs.remove(&tmp)?;
    }
    let file = fs.create(&tmp)?;
    let zeros = vec![0u8; ZERO_CHUNK];
    let mut off = 0;
    while off < len {
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

#[derive(Default)]
struct PreallocState {
    ready: bool,
    wanted: bool,
    stop: bool,
}

/// Keeps one zero-filled spare segment ready on a background thread.
pub(crate) struct Preallocator {
    dir: PathBuf,
    state: Arc<(Mutex<PreallocState>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Preallocator {
    /// Starts the thread; `spare_exists` says whether a spare survived from an earlier run. If
    /// none did, the first spare is made before returning, so that even the first segment is
    /// written over zeroed blocks rather than grown.
    pub(crate) fn start(fs: Arc<dyn Fs>, dir: PathBuf, len: u64, spare_exists: bool) -> io::Result<Self> {
        if !spare_exists {
            create_zeroed(&*fs, &dir, SPARE_NAME, len)?;
        }
        let state = Arc::new((Mutex::new(PreallocState { ready: true, ..Default::default() }), Condvar::new()));
        let thread_state = state.clone();
        let thread_dir = dir.clone();
        let thread = std::thread::Builder::new().name("wal-prealloc".into()).spawn(move || {
            let (lock, cvar) = &*thread_state;
            loop {
                {
                    let mut st = lock.lock().unwrap_or_else(|p| p.into_inner());
                    while !st.stop && (!st.wanted || st.ready) {
                        st = cvar.wait(st).unwrap_or_else(|p| p.into_inner());
                    }
                    if st.stop {
                        return;
                    }
                }
                let result = create_zeroed(&*fs, &thread_dir, SPARE_NAME, len);
                let mut st = lock.lock().unwrap_or_else(|p| p.into_inner());
                st.wanted = false;
                match result {
                    Ok(()) => st.ready = true,
                    // Rotation falls back to creating a file inline; the next rotation asks again.
                    Err(e) => tracing::warn!("could not preallocate a WAL segment in {}: {e}", thread_dir.display()),
                }
            }
        })?;
        Ok(Self { dir, state, thread: Some(thread) })
    }

    /// Takes the ready spare's path, if one is ready. The next spare is made only after
    /// [`Preallocator::want_next`], so it never replaces one still being activated.
    fn take(&self) -> Option<PathBuf> {
        let (lock, _) = &*self.state;
        let mut st = lock.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut st.ready).then(|| self.dir.join(SPARE_NAME))
    }

    /// Asks the thread for a new spare if none is ready.
    fn want_next(&self) {
        let (lock, cvar) = &*self.state;
        let mut st = lock.lock().unwrap_or_else(|p| p.into_inner());
        st.wanted = !st.ready;
        cvar.notify_all();
    }
}

impl Drop for Preallocator {
    fn drop(&mut self) {
        {
            let (lock, cvar) = &*self.state;
            lock.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
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
    }
}
