//! The gRPC face of a node and its assembly. One server per node serves three services on one
//! address: the Ahnlich DB API ([`db_service`]), the Raft transport ([`raft_service`]) and
//! cluster administration ([`admin`]); [`node`] opens a data directory, starts Raft and serves.

pub mod admin;
pub mod context;
pub mod convert;
pub mod db_service;
pub mod node;
pub mod raft_service;
