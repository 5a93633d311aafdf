//! Settings `serve` applies to its own process before it starts any work.

use std::io;

/// Stops the kernel from backing this process's memory with transparent huge pages, as Redis
/// (`disable-thp`) does and as TiKV and MongoDB ask of their hosts. The server's heap turns over
/// large short-lived buffers (a bulk Set or a Raft append of hundreds of kilobytes, decoded and
/// dropped each time); with huge pages, the allocator's reuse of that memory can keep faulting
/// in fresh 2 MiB pages that the kernel zeroes whole. On one day here that zeroing took over a
/// third of the machine's CPU in 3-node bulk ingest; on another it was a twentieth (README,
/// "Where performance stands"): the cost depends on the host. Huge pages already in place
/// stay; the setting holds for every thread, now and later, and is inherited by child
/// processes.
///
/// Linux only (`PR_SET_THP_DISABLE`, kernel 3.15 or newer); elsewhere it returns
/// [`io::ErrorKind::Unsupported`] and changes nothing.
pub fn disable_transparent_huge_pages() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a plain system call with integer arguments; it reads and writes no memory of ours.
        let status = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if status == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(io::Error::new(io::ErrorKind::Unsupported, "transparent huge pages are a Linux setting"))
    }
}
