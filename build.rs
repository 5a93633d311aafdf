//! Generates the Rust types for `proto/` with a vendored `protoc`, so a fresh machine needs
//! nothing but a Rust toolchain: our own log and command encodings (prost), and Ahnlich's DB
//! API with its gRPC service (tonic).

const AHNLICH: &[&str] = &[
    "proto/ahnlich/metadata.proto",
    "proto/ahnlich/keyval.proto",
    "proto/ahnlich/predicates.proto",
    "proto/ahnlich/similarity.proto",
    "proto/ahnlich/client.proto",
    "proto/ahnlich/server_types.proto",
    "proto/ahnlich/algorithm/algorithms.proto",
    "proto/ahnlich/algorithm/nonlinear.proto",
    "proto/ahnlich/shared/info.proto",
    "proto/ahnlich/shared/cluster.proto",
    "proto/ahnlich/db/query.proto",
    "proto/ahnlich/db/server.proto",
    "proto/ahnlich/db/pipeline.proto",
    "proto/ahnlich/services/db_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto");
    prost_build::Config::new()
        // A command's bytes inside an entry payload as `Bytes`: decoded as a slice of the
        // payload, never copied out of it.
        .bytes([".ahnlich_raft.log.EntryPayload"])
        // Vectors through the hand-written codec of `src/proto/packed.rs` (same bytes, one pass).
        .extern_path(".ahnlich_raft.command.Key", "crate::proto::packed::Key")
        .compile_protos(&["proto/ahnlich_raft/log.proto", "proto/ahnlich_raft/command.proto"], &["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .extern_path(".keyval.StoreKey", "crate::proto::packed::StoreKey")
        // An entry's metadata through the hand-written decoder of `src/proto/store_value.rs`,
        // into the ordered map the engine keeps (same bytes).
        .extern_path(".keyval.StoreValue", "crate::proto::store_value::StoreValue")
        .compile_protos(AHNLICH, &["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .extern_path(".ahnlich_raft.log", "crate::proto::log")
        // Snapshot bytes as `Bytes`: sent straight from the mapped file, received as slices of
        // the transport's buffer (no copy into a `Vec` at either end).
        .bytes(".ahnlich_raft.raft.SnapshotChunk")
        // Entry payloads likewise: the leader sends the bytes its log holds, and a follower
        // decodes the command straight from the transport's buffer.
        .bytes(".ahnlich_raft.raft.Entry")
        .compile_protos(&["proto/ahnlich_raft/raft.proto", "proto/ahnlich_raft/admin.proto"], &["proto"])?;
    Ok(())
}
