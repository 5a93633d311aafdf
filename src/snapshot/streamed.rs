//! Writing a file whose bytes arrive over time (a snapshot streamed from the leader) while
//! keeping the disk busy:
//! - each piece is written on tokio's blocking pool while the next one arrives (one write in
//!   flight, the piece moved there, not copied);
//! - rather than leaving every byte dirty in the page cache for one long sync at the end, a
//!   sync of what has been written so far starts after every [`SYNC_EVERY_BYTES`]. The disk
//!   then writes while the network delivers, and the final sync has only the tail left.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinHandle;

/// Bytes written between the starts of two background syncs. At most one sync runs at a time,
/// so the unsynced bytes stay near twice this.
pub const SYNC_EVERY_BYTES: u64 = 32 << 20;

/// A new file being written front to back; [`StreamedFile::finish`] makes it durable.
pub struct StreamedFile {
    path: PathBuf,
    file: Arc<std::fs::File>,
    writing: Option<JoinHandle<io::Result<()>>>,
    syncing: Option<JoinHandle<io::Result<()>>>,
    unsynced: u64,
}

impl StreamedFile {
    /// Creates (or truncates) the file at `path`.
    pub async fn create(path: &Path) -> io::Result<Self> {
        let file = tokio::fs::File::create(path).await.map_err(|e| at(path, "creating", e))?.into_std().await;
        Ok(Self { path: path.to_path_buf(), file: Arc::new(file), writing: None, syncing: None, unsynced: 0 })
    }

    /// Appends `bytes` (the write may still be under way when this returns; the next call, or
    /// [`StreamedFile::finish`], waits for it and reports its error).
    pub async fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        self.wait_for_write().await?;
        self.unsynced += bytes.len() as u64;
        if self.unsynced >= SYNC_EVERY_BYTES {
            // Everything up to here is written: sync it while later pieces are written.
            self.wait_for_sync().await?;
            let file = self.file.clone();
            self.syncing = Some(tokio::task::spawn_blocking(move || file.sync_data()));
            self.unsynced = 0;
        }
        let file = self.file.clone();
        self.writing = Some(tokio::task::spawn_blocking(move || (&*file).write_all(&bytes)));
        Ok(())
    }

    /// Makes every byte written durable.
    pub async fn finish(mut self) -> io::Result<()> {
        self.wait_for_write().await?;
        self.wait_for_sync().await?;
        let file = self.file.clone();
        let synced = tokio::task::spawn_blocking(move || file.sync_all()).await;
        self.joined(synced, "syncing")
    }

    async fn wait_for_write(&mut self) -> io::Result<()> {
        let Some(writing) = self.writing.take() else { return Ok(()) };
        let written = writing.await;
        self.joined(written, "writing")
    }

    async fn wait_for_sync(&mut self) -> io::Result<()> {
        let Some(syncing) = self.syncing.take() else { return Ok(()) };
        let synced = syncing.await;
        self.joined(synced, "syncing")
    }

    fn joined(&self, r: Result<io::Result<()>, tokio::task::JoinError>, doing: &str) -> io::Result<()> {
        r.map_err(|e| io::Error::other(format!("{doing} {}: the task failed: {e}", self.path.display())))?
            .map_err(|e| at(&self.path, doing, e))
    }
}

fn at(path: &Path, doing: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{doing} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_file_holds_every_byte_written_in_order() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let path = dir.path().join("f");
        let mut file = StreamedFile::create(&path).await.expect("create");
        let mut want = Vec::new();
        // Uneven pieces, enough to start several background syncs.
        for i in 0..(3 * SYNC_EVERY_BYTES / 999_983 + 2) {
            let piece: Vec<u8> = (0..999_983u64).map(|j| (i * 7 + j) as u8).collect();
            want.extend_from_slice(&piece);
            file.write(piece.into()).await.expect("write");
        }
        file.finish().await.expect("finish");
        assert_eq!(std::fs::read(&path).expect("read"), want);
    }
}
