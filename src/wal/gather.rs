//! The bytes of a write batch until they are written: record headers and small payloads are
//! copied into one buffer, large payloads stay where they are and are written from there, so
//! a batch of large entries costs no copy before the kernel's own.

use std::io;

use bytes::Bytes;

use super::fs::FsFile;

/// Payloads at least this long are written from where they are rather than copied. Below it,
/// one more part per entry costs the kernel more than the copy saves. The WAL tests' and
/// `wal_ops`' payloads of a few KiB are sized to cross it: raise it, and raise them.
pub(crate) const IN_PLACE_MIN: usize = 2048;

/// The unwritten bytes of the open batch, in order.
pub(crate) struct Gathered {
    /// Everything but the payloads kept in place.
    buffer: Vec<u8>,
    /// Each payload kept in place, after the first `.0` bytes of `buffer`.
    in_place: Vec<(usize, Bytes)>,
    in_place_len: usize,
}

impl Gathered {
    /// Nothing gathered, with room for `capacity` buffered bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self { buffer: Vec::with_capacity(capacity), in_place: Vec::new(), in_place_len: 0 }
    }

    /// How many bytes are gathered.
    pub(crate) fn len(&self) -> usize {
        self.buffer.len() + self.in_place_len
    }

    /// Whether nothing is gathered.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer that bytes to copy are appended to; they follow everything gathered so far.
    pub(crate) fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buffer
    }

    /// Gathers `payload` after everything gathered so far, without copying it.
    pub(crate) fn push_in_place(&mut self, payload: Bytes) {
        self.in_place_len += payload.len();
        self.in_place.push((self.buffer.len(), payload));
    }

    /// Writes everything gathered at `offset` of `file`, in order, and forgets it.
    pub(crate) fn write_at(&mut self, file: &dyn FsFile, offset: u64) -> io::Result<()> {
        if self.in_place.is_empty() {
            file.write_all_at(&self.buffer, offset)?;
        } else {
            let mut parts: Vec<&[u8]> = Vec::with_capacity(2 * self.in_place.len() + 1);
            let mut copied_from = 0;
            for (at, payload) in &self.in_place {
                parts.push(&self.buffer[copied_from..*at]);
                parts.push(payload);
                copied_from = *at;
            }
            parts.push(&self.buffer[copied_from..]);
            file.write_all_gathered_at(&parts, offset)?;
        }
        self.clear();
        Ok(())
    }

    /// Forgets everything gathered.
    pub(crate) fn clear(&mut self) {
        self.buffer.clear();
        self.in_place.clear();
        self.in_place_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::fs::{Fs, OsFs};

    #[test]
    fn gathered_bytes_are_written_in_the_order_they_were_gathered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = OsFs.create(&dir.path().join("f")).expect("create");
        let mut gathered = Gathered::with_capacity(16);
        gathered.buffer().extend_from_slice(b"ab");
        gathered.push_in_place(Bytes::from_static(b"CDE"));
        gathered.push_in_place(Bytes::from_static(b"FG"));
        gathered.buffer().extend_from_slice(b"h");
        gathered.push_in_place(Bytes::from_static(b"IJ"));
        assert_eq!(gathered.len(), 10);
        gathered.write_at(&*file, 1).expect("write");
        assert!(gathered.is_empty(), "written bytes are forgotten");
        let mut back = [0u8; 11];
        file.read_exact_at(&mut back, 0).expect("read");
        assert_eq!(&back, b"\0abCDEFGhIJ");
    }
}
