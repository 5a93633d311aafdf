//! Generates the Rust types for `proto/` with a vendored `protoc`, so a fresh machine needs
//! nothing but a Rust toolchain.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto");
    prost_build::Config::new()
        .compile_protos(&["proto/ahnlich_raft/log.proto", "proto/ahnlich_raft/command.proto"], &["proto"])?;
    Ok(())
}
