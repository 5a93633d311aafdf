//! The gRPC face of a node and its assembly. One server per node serves three services on one
//! address: the Ahnlich DB API ([`db_service`]), the Raft transport ([`raft_service`]) and
//! cluster administration ([`admin`]); [`node`] opens a data directory, starts Raft and serves.
//! Who may call which service is decided before any of them runs: [`security`] reads the TLS
//! and auth settings, [`gate`] applies them to each call, [`auth`] checks DB-API users and
//! [`identity`] keeps the node and cluster ids.

pub mod admin;
pub mod auth;
pub mod backup;
pub mod connections;
pub mod context;
pub mod convert;
pub mod db_metrics;
pub mod db_service;
pub mod events;
pub mod gate;
pub mod identity;
pub mod metrics_endpoint;
pub mod node;
pub mod proposer;
pub mod raft_service;
pub mod security;
pub mod state_metrics;
