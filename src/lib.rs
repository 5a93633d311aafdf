//! ahnlich-raft: a durable, Raft-replicated server for the Ahnlich vector database.
//!
//! The layers, each depending only on those below it (see `ARCHITECTURE.md`):
//! - [`engine`]: the Ahnlich data model and every DB operation, pure and deterministic;
//! - [`wal`]: the segmented, checksummed, group-committed write-ahead log;
//! - [`snapshot`]: engine state as rkyv snapshot files, mapped back and checked;
//! - [`raft`]: openraft glue: the log store on [`wal`], the state machine on [`engine`] and
//!   [`snapshot`], the command and message encodings, the Raft settings and the gRPC network;
//! - [`server`]: the Ahnlich DB API, the Raft transport and cluster admin over gRPC, and the
//!   node that serves them;
//! - [`cli`]: what the `ahnlich-raft` commands do; [`certs`]: the certificates `cert` makes;
//!   [`process`]: settings `serve` applies to its own process.

#![deny(missing_docs)]

pub mod backup;
pub mod certs;
pub mod cli;
pub mod config_file;
pub mod engine;
pub mod local_cluster;
pub mod logging;
pub mod metrics;
pub mod process;
pub mod progress;
pub mod raft;
pub mod server;
pub mod snapshot;
pub mod wal;

/// Types generated from `proto/` at build time.
pub mod proto {
    pub(crate) mod fields;
    pub mod packed;
    pub mod store_value;

    /// The stable encoding of what the Raft log stores (`proto/ahnlich_raft/log.proto`).
    #[allow(missing_docs, clippy::all)]
    pub mod log {
        include!(concat!(env!("OUT_DIR"), "/ahnlich_raft.log.rs"));
    }

    /// The stable encoding of engine commands (`proto/ahnlich_raft/command.proto`).
    #[allow(missing_docs, clippy::all)]
    pub mod command {
        pub use super::packed::Key;
        include!(concat!(env!("OUT_DIR"), "/ahnlich_raft.command.rs"));
    }

    /// The Raft transport between nodes (`proto/ahnlich_raft/raft.proto`).
    #[allow(missing_docs, clippy::all)]
    pub mod raft {
        include!(concat!(env!("OUT_DIR"), "/ahnlich_raft.raft.rs"));
    }

    /// Cluster administration (`proto/ahnlich_raft/admin.proto`).
    #[allow(missing_docs, clippy::all)]
    pub mod admin {
        include!(concat!(env!("OUT_DIR"), "/ahnlich_raft.admin.rs"));
    }

    /// Ahnlich's public DB API (`proto/ahnlich/`), one module per protobuf package.
    #[allow(missing_docs, clippy::all)]
    pub mod ahnlich {
        macro_rules! package {
            ($name:ident, $file:literal $(, $extra:item)*) => {
                pub mod $name {
                    $($extra)*
                    include!(concat!(env!("OUT_DIR"), "/", $file));
                }
            };
        }
        package!(metadata, "metadata.rs");
        package!(
            keyval,
            "keyval.rs",
            pub use crate::proto::packed::StoreKey;,
            pub use crate::proto::store_value::StoreValue;
        );
        package!(predicates, "predicates.rs");
        package!(similarity, "similarity.rs");
        package!(client, "client.rs");
        package!(server_types, "server_types.rs");
        pub mod algorithm {
            package!(algorithms, "algorithm.algorithms.rs");
            package!(nonlinear, "algorithm.nonlinear.rs");
        }
        pub mod shared {
            package!(info, "shared.info.rs");
            package!(cluster, "shared.cluster.rs");
        }
        pub mod db {
            package!(query, "db.query.rs");
            package!(server, "db.server.rs");
            package!(pipeline, "db.pipeline.rs");
        }
        pub mod services {
            package!(db_service, "services.db_service.rs");
        }
    }
}
