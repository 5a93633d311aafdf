//! openraft glue: the type configuration ([`types`]), the log store on [`crate::wal`]
//! ([`log_store`], [`codec`], [`logged`]), the state machine on [`crate::engine`] and
//! [`crate::snapshot`] ([`state_machine`], [`command`]), when to snapshot
//! ([`snapshot_schedule`]), log retention by bytes ([`retention`]), the Raft settings
//! ([`config`]), the gRPC network ([`network`], [`wire`]) and how a removed node learns it was
//! removed ([`eviction`]).

pub mod codec;
pub mod command;
pub mod config;
pub mod entry_cache;
pub mod eviction;
pub mod log_store;
pub mod logged;
#[cfg(any(test, feature = "testing"))]
pub mod net_faults;
pub mod network;
pub mod retention;
mod set_decoding;
mod set_encoding;
pub mod snapshot_schedule;
pub mod state_machine;
pub mod types;
pub mod wire;
