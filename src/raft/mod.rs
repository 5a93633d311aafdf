//! openraft glue: the type configuration and the log storage on top of [`crate::wal`].

pub mod codec;
pub mod command;
pub mod config;
pub mod log_store;
pub mod network;
pub mod state_machine;
pub mod types;
