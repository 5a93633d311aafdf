//! Snapshot files: the engine's state as an `rkyv` archive in one file, written once under a
//! temporary name and then renamed into place, opened again by mapping it and checking it.
//!
//! # Assumptions about the medium
//! As for the WAL: `fsync` of a file makes its bytes durable, of a directory its renames; a
//! rename is atomic. A snapshot file is never changed after it gets its final name, so mapping
//! it is safe (no other writer can truncate it underneath).
//!
//! # Layout (`HEADER_LEN` = 4096 bytes of header, then the body)
//!
//! | offset | size | field                                                        |
//! |-------:|-----:|--------------------------------------------------------------|
//! |      0 |    8 | magic `b"AHRSNAP\x01"` (`MAGIC`)                             |
//! |      8 |    4 | format version (`FORMAT_VERSION` = 1)                        |
//! |     12 |    4 | length `M` of the opaque snapshot meta (the Raft meta)       |
//! |     16 |    8 | body length `B`                                              |
//! |     24 |    4 | CRC32 of the body                                            |
//! |     28 |    4 | reserved, zero                                               |
//! |     32 |    M | snapshot meta bytes (at most `MAX_META_LEN`)                 |
//! | 32 + M |      | zero up to offset 4092                                       |
//! |   4092 |    4 | CRC32 of header bytes 0..4092                                |
//! |   4096 |    B | the `rkyv` archive of an `EngineImage`                       |
//!
//! The body starts on a page boundary, so the archive is aligned in the map. A file is loaded
//! only if its header checks, its length is exactly `4096 + B`, its body checks, and `rkyv`
//! validates the archive; nothing in it is trusted before that.
//!
//! # Files and retention
//! `{index:020}-{term:020}.snap` (the last log id the snapshot covers), `*.tmp` while being
//! written (removed on open). After a new snapshot is durable, all but the newest two are
//! deleted: the predecessor stays as a fallback should the newest be damaged.

mod file;
mod streamed;

pub use self::file::{MappedSnapshot, SnapshotError, SnapshotId, SnapshotStore};
pub use self::streamed::StreamedFile;

/// First eight bytes of every snapshot file.
pub const MAGIC: [u8; 8] = *b"AHRSNAP\x01";
/// Format version written by this code; others are refused.
pub const FORMAT_VERSION: u32 = 1;
/// Header length; the body starts here.
pub const HEADER_LEN: usize = 4096;
/// Largest snapshot meta that fits the header.
pub const MAX_META_LEN: usize = HEADER_LEN - 32 - 4;
