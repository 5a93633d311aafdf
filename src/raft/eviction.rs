//! How a node learns that it was removed from the cluster.
//!
//! Raft sends a removed node nothing that says so: the leader simply stops replicating to it,
//! often before the configuration without it has reached it. Left alone, such a node would keep
//! answering local reads from a state nobody updates. So:
//!
//! - a node asked for a vote by a candidate outside its latest configuration refuses with a
//!   marked FAILED_PRECONDITION when that configuration is committed (so never undone) and the
//!   candidate's log ends before it. Such a candidate lacks a committed entry and could not win
//!   anyway. A candidate whose log reaches further may belong to a configuration this node has
//!   not seen yet, so it is always heard: a lagging node never stands in the way of an election;
//! - the candidate records the refusal in its [`Eviction`], and its DB API refuses requests;
//! - an append from a leader (the node was added back) clears it.
//!
//! A removed learner never asks for votes and so is not told; it stops receiving updates.

use std::sync::Mutex;

use openraft::Raft;
use openraft::async_runtime::watch::WatchReceiver;

use super::state_machine::StateMachine;
use super::types::TypeConfig;

/// Whether this node was told it is no longer a member, and by whom.
#[derive(Debug, Default)]
pub struct Eviction(Mutex<Option<String>>);

impl Eviction {
    /// Records the refusal a peer sent (its message says why).
    pub fn record(&self, why: String) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            tracing::error!("this node is no longer a member of the cluster: {why}");
        }
        *slot = Some(why);
    }

    /// Forgets any refusal: a leader replicates to this node, so it is a member again.
    pub fn clear(&self) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.take().is_some() {
            tracing::info!("a leader replicates to this node again; it is a member");
        }
    }

    /// Why this node is no longer a member, if it was told so.
    pub fn reason(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A vote refused because the candidate is outside this node's committed configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outsider {
    /// The node refusing.
    pub me: u64,
    /// The candidate.
    pub candidate: u64,
    /// The members of the configuration that leaves it out.
    pub members: Vec<u64>,
    /// The log index that configuration was written at.
    pub config_index: u64,
}

impl std::fmt::Display for Outsider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "node {} does not count node {} as a member: the cluster's configuration since log index {} is nodes {:?}",
            self.me, self.candidate, self.config_index, self.members
        )
    }
}

/// Why a vote from `candidate`, whose log ends at `candidate_last`, must be refused: `raft`'s
/// latest configuration is committed, does not include the candidate, and lies beyond the end
/// of its log. `None`: hear it.
pub fn outsider(
    raft: &Raft<TypeConfig, StateMachine>,
    me: u64,
    candidate: u64,
    candidate_last: Option<u64>,
) -> Option<Outsider> {
    let metrics = raft.metrics();
    let m = metrics.borrow_watched();
    let stored = &m.membership_config;
    let config_at = stored.log_id().as_ref()?;
    let committed = m.last_applied.as_ref().is_some_and(|applied| applied >= config_at);
    let candidate_behind = candidate_last.is_none_or(|last| last < config_at.index);
    if !committed || !candidate_behind || stored.membership().get_node(&candidate).is_some() {
        return None;
    }
    let members = stored.membership().nodes().map(|(id, _)| *id).collect();
    Some(Outsider { me, candidate, members, config_index: config_at.index })
}
