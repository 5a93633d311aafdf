//! The integration tests, one module per subject, in a single test binary: the modules share
//! the server, client and Raft code they instantiate, and one binary compiles it once where
//! one binary per subject compiled it again for each.
//!
//! Run one subject with `cargo test --release --test suite <module>::`, e.g.
//! `cargo test --release --test suite wal_recovery::`.

mod support;

mod admin_limits;
mod backup_restore;
mod client_cluster;
mod client_compat;
mod cluster;
mod cluster_faults;
mod command_codec;
mod disk_failure;
mod disk_full;
mod engine_hnsw;
mod engine_image;
mod engine_ops;
mod engine_props;
mod eviction;
mod hostile_peers;
mod linearizable;
mod local_cluster;
mod log_store_reopen;
mod log_store_suite;
mod observability;
mod process_settings;
mod proposals;
mod raft_crash;
mod raft_single_node;
mod request_sizes;
mod security;
mod server_api;
mod snapshot_files;
mod snapshot_receive;
mod snapshot_schedule;
mod starvation;
mod state_machine_files;
mod upstream_errors;
mod wal_power_loss;
mod wal_process_crash;
mod wal_recovery;
mod wal_spares;
