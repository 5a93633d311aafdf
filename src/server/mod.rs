//! The gRPC face of a node and its assembly: the Ahnlich DB API ([`db_service`]) over Raft,
//! and [`node`], which opens a data directory, starts Raft and serves.

pub mod convert;
pub mod db_service;
pub mod node;
