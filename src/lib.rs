//! ahnlich-raft: a durable, Raft-replicated server for the Ahnlich vector database.
//!
//! The layers, each depending only on those below it (see `ARCHITECTURE.md`):
//! - [`engine`]: the Ahnlich data model and every DB operation, pure and deterministic;
//! - [`wal`]: the segmented, checksummed, group-committed write-ahead log;
//! - [`snapshot`]: engine state as rkyv snapshot files, mapped back and checked;
//! - [`raft`]: openraft's storage traits on top of [`wal`].

#![deny(missing_docs)]

pub mod engine;
pub mod raft;
pub mod snapshot;
pub mod wal;

/// Types generated from `proto/` at build time.
pub mod proto {
    /// The stable encoding of what the Raft log stores (`proto/ahnlich_raft/log.proto`).
    #[allow(missing_docs, clippy::all)]
    pub mod log {
        include!(concat!(env!("OUT_DIR"), "/ahnlich_raft.log.rs"));
    }

    /// The stable encoding of engine commands (`proto/ahnlich_raft/command.proto`).
    #[allow(missing_docs, clippy::all)]
    pub mod command {
        include!(concat!(env!("OUT_DIR"), "/ahnlich_raft.command.rs"));
    }
}
