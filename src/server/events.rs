//! The Raft events an operator wants in the log, one info line each, naming the node:
//! elections started, won and lost, leaders followed, and membership changes. They are read
//! off openraft's metrics, and counted in the node's [`Metrics`].

use std::collections::BTreeSet;
use std::sync::Arc;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::{Raft, RaftMetrics, ServerState};

use crate::metrics::Metrics;
use crate::raft::codec::LogIdStd;
use crate::raft::state_machine::StateMachine;
use crate::raft::types::TypeConfig;

/// What the last look at the metrics showed.
#[derive(Default, PartialEq)]
struct Seen {
    term: u64,
    state: Option<ServerState>,
    leader: Option<u64>,
    membership: Option<LogIdStd>,
}

/// A Raft event worth a log line.
#[derive(Debug, PartialEq)]
enum RaftEvent {
    ElectionStarted { term: u64 },
    Won { term: u64 },
    Lost { leader: u64, term: u64 },
    Follows { leader: u64, term: u64 },
    NoLongerLeads { term: u64 },
    Membership { index: u64, voters: BTreeSet<u64>, learners: BTreeSet<u64> },
}

impl RaftEvent {
    fn line(&self, id: u64) -> String {
        match self {
            Self::ElectionStarted { term } => format!("node {id} starts an election for term {term}"),
            Self::Won { term } => format!("node {id} won the election for term {term} and leads"),
            Self::Lost { leader, term } => format!("node {id} lost the election: node {leader} leads in term {term}"),
            Self::Follows { leader, term } => format!("node {id} follows node {leader}, the leader in term {term}"),
            Self::NoLongerLeads { term } => format!("node {id} no longer leads (term {term})"),
            Self::Membership { index, voters, learners } => {
                format!("node {id}: membership at log index {index}: voters {voters:?}, learners {learners:?}")
            }
        }
    }
}

/// The events in the step from `before` to `m`, as seen by node `id`.
fn events(id: u64, before: &Seen, m: &RaftMetrics<TypeConfig>) -> Vec<RaftEvent> {
    let mut events = Vec::new();
    let term = m.current_term;
    if m.state == ServerState::Candidate && (before.state != Some(ServerState::Candidate) || before.term != term) {
        events.push(RaftEvent::ElectionStarted { term });
    }
    if (m.current_leader, term) != (before.leader, before.term) && m.state != ServerState::Candidate {
        let was_candidate = before.state == Some(ServerState::Candidate);
        match m.current_leader {
            Some(leader) if leader == id => events.push(RaftEvent::Won { term }),
            Some(leader) if was_candidate => events.push(RaftEvent::Lost { leader, term }),
            Some(leader) => events.push(RaftEvent::Follows { leader, term }),
            None if before.leader == Some(id) => events.push(RaftEvent::NoLongerLeads { term }),
            None => {}
        }
    }
    let membership = m.membership_config.log_id();
    if membership.is_some() && *membership != before.membership {
        let c = m.membership_config.membership();
        events.push(RaftEvent::Membership {
            index: membership.map_or(0, |l| l.index),
            voters: c.voter_ids().collect(),
            learners: c.learner_ids().collect(),
        });
    }
    events
}

/// Logs and counts node `id`'s Raft events until its Raft stops.
pub async fn watch_raft(raft: Raft<TypeConfig, StateMachine>, id: u64, metrics: Arc<Metrics>) {
    let mut watch = raft.metrics();
    let mut seen = Seen::default();
    // The last term this node is known to have stood for election in: a candidacy can be too
    // short to be seen (a single voter wins at once), but a win implies one.
    let mut stood_in = 0;
    loop {
        let m = watch.borrow_watched().clone();
        for event in events(id, &seen, &m) {
            match event {
                RaftEvent::ElectionStarted { term } | RaftEvent::Won { term } if stood_in != term => {
                    stood_in = term;
                    metrics.elections_started.inc();
                }
                RaftEvent::Membership { .. } => {
                    metrics.membership_changes.inc();
                }
                _ => {}
            }
            tracing::info!("{}", event.line(id));
        }
        seen = Seen {
            term: m.current_term,
            state: Some(m.state),
            leader: m.current_leader,
            membership: *m.membership_config.log_id(),
        };
        if watch.changed().await.is_err() {
            return;
        }
    }
}
