//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod child;
pub mod cluster;
pub mod linearizability;
pub mod node;
pub mod procs;
pub mod python;
pub mod rust_client;
pub mod starvation;
pub mod wal_util;
