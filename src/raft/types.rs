//! The shape of this project's Raft configuration, shared by the log store and (later) the
//! state machine, network and server.
//!
//! Node ids and terms are `u64`; nodes are addressed by [`BasicNode`]; leader ids follow
//! standard Raft (at most one leader per term), so a log id is exactly `(term, index)` and fits
//! the WAL record header with nothing left over. The application command type `D` is left open
//! so the log store can be tested before the engine's command exists.

use openraft::vote::leader_id_std::{CommittedLeaderId, LeaderId};
use openraft::{BasicNode, Entry, RaftTypeConfig, Vote};

use super::codec::{CommandCodec, PayloadStd};

/// A Raft type configuration the log store can persist: `u64` ids and terms, standard leader
/// ids, [`BasicNode`] nodes, openraft's own entry type, and a command with a stable encoding.
pub trait DurableConfig:
    RaftTypeConfig<
        NodeId = u64,
        Term = u64,
        Node = BasicNode,
        LeaderId = LeaderId<u64, u64>,
        Vote = Vote<LeaderId<u64, u64>>,
        Entry = Entry<CommittedLeaderId<u64>, PayloadStd<<Self as RaftTypeConfig>::D>>,
        D = <Self as DurableConfig>::Command,
    >
{
    /// The replicated application command (cheap to clone: the log store keeps the newest
    /// entries in memory as well as on disk).
    type Command: CommandCodec + Clone;
}

/// What applying a command answers: the engine's response, or the user error it produced
/// (the same on every replica; never a storage error).
pub type CommandResult = Result<crate::engine::Response, crate::engine::EngineError>;

openraft::declare_raft_types!(
    /// The Raft type configuration of ahnlich-raft: engine commands in, with their log
    /// encoding made once (shared, so the entries openraft copies between its log, replication
    /// and apply copy a pointer, not the data), their results out.
    pub TypeConfig:
        D = std::sync::Arc<super::logged::LoggedCommand>,
        R = CommandResult,
        Node = BasicNode,
        LeaderId = LeaderId<u64, u64>,
);

impl DurableConfig for TypeConfig {
    type Command = std::sync::Arc<super::logged::LoggedCommand>;
}
