//! openraft's RPC messages as the protobuf messages of `proto/ahnlich_raft/raft.proto`, both
//! ways. Decoding never trusts its input: a missing required part or an undecodable payload is
//! an error naming what is wrong, which the server answers as `INVALID_ARGUMENT`.

use openraft::Entry;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, StreamAppendError, StreamAppendResult, TransferLeaderError,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use prost::Message;

use super::codec::{
    LogIdStd, VoteStd, decode_payload, encode_payload, log_id_from_pb, pb_log_id, vote_from_pb, vote_to_pb,
};
use super::types::TypeConfig;
use crate::proto::log as logpb;
use crate::proto::raft as pb;

/// Why a message from a peer cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("malformed Raft message: {0}")]
pub struct WireError(pub String);

fn missing(what: &str) -> WireError {
    WireError(format!("{what} is missing"))
}

fn vote_in(v: Option<logpb::Vote>, what: &str) -> Result<VoteStd, WireError> {
    v.map(vote_from_pb).ok_or_else(|| missing(what))
}

fn log_id_out(l: Option<&LogIdStd>) -> Option<logpb::LogId> {
    l.map(pb_log_id)
}

fn log_id_in(l: Option<logpb::LogId>) -> Option<LogIdStd> {
    l.map(log_id_from_pb)
}

/// The encoded size of one entry on the wire, for splitting appends that would exceed a limit.
pub fn entry_wire_len(e: &pb::Entry) -> usize {
    e.encoded_len() + 8
}

/// An entry as sent to a follower.
pub fn entry_out(e: &openraft::type_config::alias::EntryOf<TypeConfig>) -> pb::Entry {
    pb::Entry { term: e.log_id.leader_id.term, index: e.log_id.index, payload: encode_payload(&e.payload) }
}

/// An append request as sent: `entries` (already in wire form) following `prev`.
pub fn append_parts(
    vote: &VoteStd,
    prev: Option<LogIdStd>,
    leader_commit: Option<LogIdStd>,
    entries: Vec<pb::Entry>,
) -> pb::AppendRequest {
    pb::AppendRequest {
        vote: Some(vote_to_pb(vote)),
        prev_log_id: log_id_out(prev.as_ref()),
        entries,
        leader_commit: log_id_out(leader_commit.as_ref()),
    }
}

/// An append request as received from a leader.
pub fn append_in(r: pb::AppendRequest) -> Result<AppendEntriesRequest<TypeConfig>, WireError> {
    let entries = r
        .entries
        .into_iter()
        .map(|e| {
            // The bytes stay with the command they decode to, for this node's log: a slice of
            // the transport's buffer, neither copied nor encoded again.
            let payload = decode_payload(&e.payload).map_err(|err| WireError(format!("entry {}: {err}", e.index)))?;
            Ok(Entry { log_id: super::codec::log_id(e.term, e.index), payload })
        })
        .collect::<Result<Vec<_>, WireError>>()?;
    Ok(AppendEntriesRequest {
        vote: vote_in(r.vote, "the leader's vote")?,
        prev_log_id: log_id_in(r.prev_log_id),
        entries,
        leader_commit: log_id_in(r.leader_commit),
    })
}

/// An append response as sent back.
pub fn append_reply_out(r: AppendEntriesResponse<TypeConfig>) -> pb::AppendReply {
    use pb::append_reply::Result as R;
    let result = match r {
        AppendEntriesResponse::Success => R::Success(pb::Empty {}),
        AppendEntriesResponse::PartialSuccess(m) => R::PartialSuccess(pb::Matching { log_id: log_id_out(m.as_ref()) }),
        AppendEntriesResponse::Conflict => R::Conflict(pb::Empty {}),
        AppendEntriesResponse::HigherVote(v) => R::HigherVote(vote_to_pb(&v)),
    };
    pb::AppendReply { result: Some(result) }
}

/// An append response as received.
pub fn append_reply_in(r: pb::AppendReply) -> Result<AppendEntriesResponse<TypeConfig>, WireError> {
    use pb::append_reply::Result as R;
    Ok(match r.result.ok_or_else(|| missing("the append result"))? {
        R::Success(_) => AppendEntriesResponse::Success,
        R::PartialSuccess(m) => AppendEntriesResponse::PartialSuccess(log_id_in(m.log_id)),
        R::Conflict(_) => AppendEntriesResponse::Conflict,
        R::HigherVote(v) => AppendEntriesResponse::HigherVote(vote_from_pb(v)),
    })
}

/// One streamed append result as sent back.
pub fn stream_reply_out(r: StreamAppendResult<TypeConfig>) -> pb::StreamAppendReply {
    use pb::stream_append_reply::Result as R;
    let result = match r {
        Ok(m) => R::Flushed(pb::Matching { log_id: log_id_out(m.as_ref()) }),
        Err(StreamAppendError::Conflict(l)) => R::Conflict(pb_log_id(&l)),
        Err(StreamAppendError::HigherVote(v)) => R::HigherVote(vote_to_pb(&v)),
    };
    pb::StreamAppendReply { result: Some(result) }
}

/// One streamed append result as received.
pub fn stream_reply_in(r: pb::StreamAppendReply) -> Result<StreamAppendResult<TypeConfig>, WireError> {
    use pb::stream_append_reply::Result as R;
    Ok(match r.result.ok_or_else(|| missing("the stream append result"))? {
        R::Flushed(m) => Ok(log_id_in(m.log_id)),
        R::Conflict(l) => Err(StreamAppendError::Conflict(log_id_from_pb(l))),
        R::HigherVote(v) => Err(StreamAppendError::HigherVote(vote_from_pb(v))),
    })
}

/// A vote request as sent.
pub fn vote_out(r: &VoteRequest<TypeConfig>) -> pb::VoteRequest {
    pb::VoteRequest {
        vote: Some(vote_to_pb(&r.vote)),
        last_log_id: log_id_out(r.last_log_id.as_ref()),
        leadership_transfer: r.leadership_transfer,
    }
}

/// A vote request as received.
pub fn vote_in_req(r: pb::VoteRequest) -> Result<VoteRequest<TypeConfig>, WireError> {
    let mut req = VoteRequest::new(vote_in(r.vote, "the candidate's vote")?, log_id_in(r.last_log_id));
    req.leadership_transfer = r.leadership_transfer;
    Ok(req)
}

/// A vote response as sent back.
pub fn vote_reply_out(r: &VoteResponse<TypeConfig>) -> pb::VoteReply {
    pb::VoteReply {
        vote: Some(vote_to_pb(&r.vote)),
        granted: r.vote_granted,
        last_log_id: log_id_out(r.last_log_id.as_ref()),
    }
}

/// A vote response as received.
pub fn vote_reply_in(r: pb::VoteReply) -> Result<VoteResponse<TypeConfig>, WireError> {
    Ok(VoteResponse::new(vote_in(r.vote, "the voter's vote")?, log_id_in(r.last_log_id), r.granted))
}

/// A leadership transfer request as sent.
pub fn transfer_out(r: &TransferLeaderRequest<TypeConfig>) -> pb::TransferLeaderRequest {
    pb::TransferLeaderRequest {
        from_leader: Some(vote_to_pb(r.from_leader())),
        to_node_id: *r.to_node_id(),
        last_log_id: log_id_out(r.last_log_id()),
    }
}

/// A leadership transfer request as received.
pub fn transfer_in(r: pb::TransferLeaderRequest) -> Result<TransferLeaderRequest<TypeConfig>, WireError> {
    Ok(TransferLeaderRequest::new(
        vote_in(r.from_leader, "the transferring leader's vote")?,
        r.to_node_id,
        log_id_in(r.last_log_id),
    ))
}

/// A leadership transfer answer as sent back.
pub fn transfer_reply_out(r: TransferLeaderResponse<TypeConfig>) -> pb::TransferLeaderReply {
    use pb::transfer_leader_reply::Result as R;
    let result = match r {
        Ok(()) => R::Accepted(pb::Empty {}),
        Err(TransferLeaderError::VoteChanged { expected, actual }) => R::VoteChanged(pb::VoteMismatch {
            expected: Some(vote_to_pb(&expected)),
            actual: Some(vote_to_pb(&actual)),
        }),
        Err(TransferLeaderError::LogNotFlushed { expected, actual }) => R::LogNotFlushed(pb::LogNotFlushed {
            expected: log_id_out(expected.as_ref()),
            actual: log_id_out(actual.as_ref()),
        }),
    };
    pb::TransferLeaderReply { result: Some(result) }
}

/// A leadership transfer answer as received.
pub fn transfer_reply_in(r: pb::TransferLeaderReply) -> Result<TransferLeaderResponse<TypeConfig>, WireError> {
    use pb::transfer_leader_reply::Result as R;
    Ok(match r.result.ok_or_else(|| missing("the transfer result"))? {
        R::Accepted(_) => Ok(()),
        R::VoteChanged(m) => Err(TransferLeaderError::VoteChanged {
            expected: vote_in(m.expected, "the expected vote")?,
            actual: vote_in(m.actual, "the actual vote")?,
        }),
        R::LogNotFlushed(m) => {
            Err(TransferLeaderError::LogNotFlushed { expected: log_id_in(m.expected), actual: log_id_in(m.actual) })
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::vote::leader_id_std::LeaderId;
    use openraft::{BasicNode, EntryPayload, Membership, Vote};

    use super::*;
    use crate::engine::Command;
    use crate::raft::codec::log_id;
    use crate::raft::logged::LoggedCommand;

    fn vote(term: u64, node: u64, committed: bool) -> VoteStd {
        Vote { leader_id: LeaderId { term, voted_for: node }, committed }
    }

    #[test]
    fn append_requests_and_replies_round_trip() {
        let nodes = BTreeMap::from([(1, BasicNode { addr: "a:1".into() })]);
        let m = Membership::new(vec![BTreeSet::from([1])], nodes).expect("membership");
        let entries = vec![
            Entry { log_id: log_id(2, 5), payload: EntryPayload::Blank },
            Entry {
                log_id: log_id(2, 6),
                payload: EntryPayload::Normal(LoggedCommand::shared(Command::DropSchema { schema: "s".into() })),
            },
            Entry { log_id: log_id(2, 7), payload: EntryPayload::Membership(m) },
        ];
        let req = AppendEntriesRequest::<TypeConfig> {
            vote: vote(2, 1, true),
            prev_log_id: Some(log_id(1, 4)),
            entries,
            leader_commit: Some(log_id(1, 3)),
        };
        let wire =
            append_parts(&req.vote, req.prev_log_id, req.leader_commit, req.entries.iter().map(entry_out).collect());
        let back = append_in(pb::AppendRequest::decode(wire.encode_to_vec().as_slice()).expect("decodes")).expect("ok");
        assert_eq!((back.vote, back.prev_log_id, back.leader_commit), (req.vote, req.prev_log_id, req.leader_commit));
        assert_eq!(back.entries, req.entries);
        for r in [
            AppendEntriesResponse::Success,
            AppendEntriesResponse::PartialSuccess(Some(log_id(2, 6))),
            AppendEntriesResponse::PartialSuccess(None),
            AppendEntriesResponse::Conflict,
            AppendEntriesResponse::HigherVote(vote(9, 3, false)),
        ] {
            assert_eq!(append_reply_in(append_reply_out(r.clone())).expect("ok"), r);
        }
        for r in [Ok(Some(log_id(3, 3))), Ok(None), Err(StreamAppendError::Conflict(log_id(1, 1)))] {
            assert_eq!(stream_reply_in(stream_reply_out(r.clone())).expect("ok"), r);
        }
    }

    #[test]
    fn votes_and_transfers_round_trip() {
        let mut req = VoteRequest::<TypeConfig>::new(vote(4, 2, false), Some(log_id(3, 10)));
        req.leadership_transfer = true;
        assert_eq!(vote_in_req(vote_out(&req)).expect("ok"), req);
        let reply = VoteResponse::<TypeConfig>::new(vote(4, 2, false), None, true);
        assert_eq!(vote_reply_in(vote_reply_out(&reply)).expect("ok"), reply);
        let t = TransferLeaderRequest::<TypeConfig>::new(vote(4, 2, true), 3, Some(log_id(4, 11)));
        assert_eq!(transfer_in(transfer_out(&t)).expect("ok"), t);
        let nf: TransferLeaderResponse<TypeConfig> =
            Err(TransferLeaderError::LogNotFlushed { expected: Some(log_id(4, 11)), actual: None });
        assert_eq!(transfer_reply_in(transfer_reply_out(nf.clone())).expect("ok"), nf);
    }

    #[test]
    fn missing_parts_and_bad_payloads_are_errors() {
        assert!(append_in(pb::AppendRequest::default()).is_err(), "no vote");
        let bad = pb::AppendRequest {
            vote: Some(vote_to_pb(&vote(1, 1, true))),
            entries: vec![pb::Entry { term: 1, index: 1, payload: vec![0xff, 0xff].into() }],
            ..Default::default()
        };
        let err = append_in(bad).expect_err("garbage payload");
        assert!(err.to_string().contains("entry 1"), "{err}");
        assert!(append_reply_in(pb::AppendReply::default()).is_err());
        assert!(vote_in_req(pb::VoteRequest::default()).is_err());
    }
}
