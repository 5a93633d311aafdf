//! The file-system calls the WAL makes, behind a small trait so that tests can run the same
//! code over a file system that loses unsynced bytes and fails on demand (`sim_fs`).

use std::any::Any;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use fs2::FileExt as _;

/// A handle that holds a data directory's exclusive lock until dropped.
pub type DirLock = Box<dyn Any + Send + Sync>;

/// The directory operations the WAL needs.
pub trait Fs: std::fmt::Debug + Send + Sync + 'static {
    /// Creates `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Takes the exclusive lock of `dir`; fails with `WouldBlock` if another holder keeps it
    /// (for more than a moment).
    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock>;
    /// The names of the regular files in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens an existing file for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn FsFile>>;
    /// Creates a new, empty file for reading and writing; fails if it exists.
    fn create(&self, path: &Path) -> io::Result<Arc<dyn FsFile>>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes every earlier create, rename and remove in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The file operations the WAL needs. All offsets are absolute; no call moves a cursor.
pub trait FsFile: Send + Sync {
    /// Fills `buf` from `offset`; fails with `UnexpectedEof` if the file ends first.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`, growing the file if needed.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Writes `parts` one after another from `offset`: the same bytes, and the same outcome
    /// on a crash, as writing their concatenation with [`Self::write_all_at`], which is what
    /// the default does.
    fn write_all_gathered_at(&self, parts: &[&[u8]], offset: u64) -> io::Result<()> {
        match parts {
            [one] => self.write_all_at(one, offset),
            _ => self.write_all_at(&parts.concat(), offset),
        }
    }
    /// Makes every earlier write to this file durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Sets the length, cutting or extending with zeros.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Reserves disk blocks for the first `len` bytes, growing the file to `len` if it is
    /// shorter; what reads return does not change. An error says only that nothing was reserved;
    /// the default reserves nothing.
    fn allocate(&self, _len: u64) -> io::Result<()> {
        Ok(())
    }
}

/// How many times (10 ms apart) taking a held directory lock is retried before giving up.
const LOCK_RETRIES: u32 = 50;

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsFs;

impl Fs for OsFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock> {
        let path = dir.join("LOCK");
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        // A process this one spawns shares the lock's descriptor between fork and exec, so a
        // lock just released here can look held for a moment: wait that out, not longer.
        let mut tries = 0;
        loop {
            match file.try_lock_exclusive() {
                Ok(()) => return Ok(Box::new(file)),
                Err(_) if tries < LOCK_RETRIES => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        format!("{} is locked by another process ({e})", path.display()),
                    ));
                }
            }
        }
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file()
                && let Some(name) = entry.file_name().to_str()
            {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        Ok(Arc::new(OpenOptions::new().read(true).write(true).open(path)?))
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        Ok(Arc::new(OpenOptions::new().read(true).write(true).create_new(true).open(path)?))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

impl FsFile for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }

    /// One `pwritev` per `IOV_MAX` parts, so the parts are never copied into one buffer.
    #[cfg(target_os = "linux")]
    fn write_all_gathered_at(&self, parts: &[&[u8]], mut offset: u64) -> io::Result<()> {
        use std::io::IoSlice;
        use std::os::fd::AsRawFd;
        const IOV_MAX: usize = 1024;
        let mut slices: Vec<IoSlice<'_>> = parts.iter().filter(|p| !p.is_empty()).map(|p| IoSlice::new(p)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let count = rest.len().min(IOV_MAX);
            let at = libc::off_t::try_from(offset)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
            // SAFETY: `IoSlice` has the layout of `iovec` on Unix, and the first `count` slices
            // borrow live buffers for the duration of the call, which only reads them.
            let written = unsafe { libc::pwritev(self.as_raw_fd(), rest.as_ptr().cast(), count as libc::c_int, at) };
            match written {
                n if n > 0 => {
                    offset += n as u64;
                    IoSlice::advance_slices(&mut rest, n as usize);
                }
                0 => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }

    #[cfg(target_os = "linux")]
    fn allocate(&self, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let len =
            libc::off_t::try_from(len).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
        // SAFETY: a system call on a descriptor this `File` owns; it reads and writes no memory of ours.
        let status = unsafe { libc::fallocate(self.as_raw_fd(), 0, 0, len) };
        if status == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gathered_write_lands_its_parts_in_order_past_the_system_limit_on_parts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = OsFs.create(&dir.path().join("f")).expect("create");
        file.write_all_at(b"head", 0).expect("write");
        // More parts than one `pwritev` takes, some empty, of uneven sizes.
        let parts: Vec<Vec<u8>> = (0..2500usize).map(|i| vec![(i % 251) as u8; i % 7]).collect();
        let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        file.write_all_gathered_at(&slices, 4).expect("gathered write");
        let expected: Vec<u8> = b"head".iter().copied().chain(parts.concat()).collect();
        assert_eq!(file.len().expect("len"), expected.len() as u64);
        let mut back = vec![0u8; expected.len()];
        file.read_exact_at(&mut back, 0).expect("read");
        assert_eq!(back, expected);
    }

    #[test]
    fn allocating_grows_a_file_with_zeros_and_keeps_what_it_holds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = OsFs.create(&dir.path().join("f")).expect("create");
        file.write_all_at(b"kept", 0).expect("write");
        file.allocate(1 << 20).expect("fallocate");
        assert_eq!(file.len().expect("len"), 1 << 20);
        let mut head = [0u8; 8];
        file.read_exact_at(&mut head, 0).expect("read");
        assert_eq!(&head, b"kept\0\0\0\0");
        let mut tail = vec![1u8; 4096];
        file.read_exact_at(&mut tail, (1 << 20) - 4096).expect("read");
        assert!(tail.iter().all(|&b| b == 0), "the reserved range reads as zeros");
        file.allocate(16).expect("a shorter reservation");
        assert_eq!(file.len().expect("len"), 1 << 20, "a reservation never shortens a file");
    }
}
