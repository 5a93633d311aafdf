//! The stable byte encoding of what the log store keeps: entry payloads, the vote and the
//! committed log id, as the protobuf messages of `proto/ahnlich_raft/log.proto`.
//!
//! Decoding never trusts its input: a message that is not valid protobuf, lacks a required
//! part, or names an arm this version does not know is an `InvalidData` error.

use bytes::{Bytes, BytesMut};
use std::collections::{BTreeMap, BTreeSet};
use std::io;

use openraft::vote::leader_id_std::{CommittedLeaderId, LeaderId};
use openraft::{BasicNode, EntryPayload, LogId, Membership, SnapshotMeta, StoredMembership, Vote};
use prost::Message;

use crate::proto::log as pb;

/// The application command's own stable encoding, used for `EntryPayload::Normal`.
pub trait CommandCodec: openraft::AppData + Sized {
    /// The command's bytes.
    fn encode_command(&self) -> Vec<u8>;
    /// The command from its bytes, or why they are not one.
    fn decode_command(bytes: &[u8]) -> Result<Self, String>;
    /// The bytes of `EntryPayload::Normal(self)` ([`encode_payload`]). A command that keeps
    /// them returns them without encoding again.
    fn payload_bytes(&self) -> Bytes {
        normal_payload(self.encode_command()).into()
    }
    /// The command from `command`, the command part of the entry payload `payload`. A command
    /// that keeps its payload bytes keeps these (shared, not copied).
    fn decode_from_payload(command: &[u8], _payload: &Bytes) -> Result<Self, String> {
        Self::decode_command(command)
    }
}

/// The log id type of this project's Raft configuration.
pub type LogIdStd = LogId<CommittedLeaderId<u64>>;
/// The vote type of this project's Raft configuration.
pub type VoteStd = Vote<LeaderId<u64, u64>>;
/// The payload type of this project's Raft configuration over command type `D`.
pub type PayloadStd<D> = EntryPayload<D, u64, BasicNode>;

fn invalid(what: &str, why: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("cannot decode {what}: {why}"))
}

/// Encodes an entry payload (a command's own bytes if it keeps them).
pub fn encode_payload<D: CommandCodec>(payload: &PayloadStd<D>) -> Bytes {
    let kind = match payload {
        EntryPayload::Normal(cmd) => return cmd.payload_bytes(),
        EntryPayload::Blank => pb::entry_payload::Kind::Blank(pb::Blank {}),
        EntryPayload::Membership(m) => pb::entry_payload::Kind::Membership(encode_membership(m)),
    };
    pb::EntryPayload { kind: Some(kind) }.encode_to_vec().into()
}

/// The entry payload holding the command whose bytes are `command`.
pub fn normal_payload(command: Vec<u8>) -> Vec<u8> {
    pb::EntryPayload { kind: Some(pb::entry_payload::Kind::Normal(Bytes::from(command))) }.encode_to_vec()
}

/// The entry payload holding the command `command` encodes to, written in one pass straight
/// into a buffer of its final size (the same bytes as [`normal_payload`] of its encoding).
pub fn normal_payload_of(command: &impl Message) -> Bytes {
    normal_payload_from(command.encoded_len(), |buf| command.encode_raw(buf))
}

/// The entry payload holding the `len` bytes of a command that `write` writes, written in one
/// pass straight into a buffer of its final size.
pub fn normal_payload_from(len: usize, write: impl FnOnce(&mut BytesMut)) -> Bytes {
    /// `EntryPayload.normal`'s field number in `log.proto`.
    const NORMAL_FIELD: u32 = 2;
    let mut buf = BytesMut::with_capacity(1 + prost::encoding::encoded_len_varint(len as u64) + len);
    prost::encoding::encode_key(NORMAL_FIELD, prost::encoding::WireType::LengthDelimited, &mut buf);
    prost::encoding::encode_varint(len as u64, &mut buf);
    let start = buf.len();
    write(&mut buf);
    debug_assert_eq!(buf.len() - start, len, "a command writes as many bytes as it said");
    buf.freeze()
}

/// Decodes an entry payload; a command that keeps its payload bytes shares `bytes`.
pub fn decode_payload<D: CommandCodec>(bytes: &Bytes) -> io::Result<PayloadStd<D>> {
    let msg = pb::EntryPayload::decode(bytes.clone()).map_err(|e| invalid("entry payload", e))?;
    Ok(match msg.kind {
        Some(pb::entry_payload::Kind::Blank(_)) => EntryPayload::Blank,
        Some(pb::entry_payload::Kind::Normal(b)) => {
            EntryPayload::Normal(D::decode_from_payload(&b, bytes).map_err(|e| invalid("command", e))?)
        }
        Some(pb::entry_payload::Kind::Membership(m)) => EntryPayload::Membership(decode_membership(m)?),
        None => {
            return Err(invalid("entry payload", "no payload kind set (written by a newer version?)"));
        }
    })
}

fn encode_membership(m: &Membership<u64, BasicNode>) -> pb::Membership {
    pb::Membership {
        configs: m
            .get_joint_config()
            .iter()
            .map(|set| pb::VoterSet { node_ids: set.iter().copied().collect() })
            .collect(),
        nodes: m.nodes().map(|(id, n)| pb::Node { node_id: *id, addr: n.addr.clone() }).collect(),
    }
}

fn decode_membership(m: pb::Membership) -> io::Result<Membership<u64, BasicNode>> {
    let configs: Vec<BTreeSet<u64>> = m.configs.into_iter().map(|c| c.node_ids.into_iter().collect()).collect();
    let nodes: BTreeMap<u64, BasicNode> =
        m.nodes.into_iter().map(|n| (n.node_id, BasicNode { addr: n.addr })).collect();
    Membership::new(configs, nodes).map_err(|e| invalid("membership", e))
}

/// A vote as its protobuf message.
pub fn vote_to_pb(v: &VoteStd) -> pb::Vote {
    pb::Vote { term: v.leader_id.term, voted_for: v.leader_id.voted_for, committed: v.committed }
}

/// A vote from its protobuf message.
pub fn vote_from_pb(v: pb::Vote) -> VoteStd {
    Vote { leader_id: LeaderId { term: v.term, voted_for: v.voted_for }, committed: v.committed }
}

/// Encodes a vote.
pub fn encode_vote(v: &VoteStd) -> Vec<u8> {
    vote_to_pb(v).encode_to_vec()
}

/// Decodes a vote.
pub fn decode_vote(bytes: &[u8]) -> io::Result<VoteStd> {
    Ok(vote_from_pb(pb::Vote::decode(bytes).map_err(|e| invalid("vote", e))?))
}

/// Encodes an optional committed log id.
pub fn encode_committed(c: Option<&LogIdStd>) -> Vec<u8> {
    pb::Committed { log_id: c.map(|l| pb::LogId { term: l.leader_id.term, index: l.index }) }.encode_to_vec()
}

/// Decodes an optional committed log id.
pub fn decode_committed(bytes: &[u8]) -> io::Result<Option<LogIdStd>> {
    let c = pb::Committed::decode(bytes).map_err(|e| invalid("committed log id", e))?;
    Ok(c.log_id.map(|l| log_id(l.term, l.index)))
}

/// The snapshot meta type of this project's Raft configuration.
pub type SnapshotMetaStd = SnapshotMeta<CommittedLeaderId<u64>, u64, BasicNode>;

/// A log id as its protobuf message.
pub fn pb_log_id(l: &LogIdStd) -> pb::LogId {
    pb::LogId { term: l.leader_id.term, index: l.index }
}

/// A log id from its protobuf message.
pub fn log_id_from_pb(l: pb::LogId) -> LogIdStd {
    log_id(l.term, l.index)
}

/// Encodes a snapshot's Raft meta.
pub fn encode_snapshot_meta(m: &SnapshotMetaStd) -> Vec<u8> {
    pb::SnapshotMeta {
        last_log_id: m.last_log_id.as_ref().map(pb_log_id),
        membership_log_id: m.last_membership.log_id().as_ref().map(pb_log_id),
        membership: Some(encode_membership(m.last_membership.membership())),
    }
    .encode_to_vec()
}

/// Decodes a snapshot's Raft meta.
pub fn decode_snapshot_meta(bytes: &[u8]) -> io::Result<SnapshotMetaStd> {
    let m = pb::SnapshotMeta::decode(bytes).map_err(|e| invalid("snapshot meta", e))?;
    let membership = match m.membership {
        Some(pm) if !pm.configs.is_empty() => decode_membership(pm)?,
        _ => Membership::default(),
    };
    Ok(SnapshotMeta {
        last_log_id: m.last_log_id.map(|l| log_id(l.term, l.index)),
        last_membership: StoredMembership::new(m.membership_log_id.map(|l| log_id(l.term, l.index)), membership),
    })
}

/// A log id from its term and index.
pub fn log_id(term: u64, index: u64) -> LogIdStd {
    LogId::new(CommittedLeaderId::new(term), index)
}

#[cfg(test)]
mod tests {
    use super::*;

    impl CommandCodec for String {
        fn encode_command(&self) -> Vec<u8> {
            self.as_bytes().to_vec()
        }
        fn decode_command(bytes: &[u8]) -> Result<Self, String> {
            String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string())
        }
    }

    #[test]
    fn payloads_round_trip() {
        let nodes = BTreeMap::from([(1, BasicNode { addr: "a:1".into() }), (2, BasicNode { addr: "b:2".into() })]);
        let m = Membership::new(vec![BTreeSet::from([1, 2])], nodes).expect("membership");
        for p in [EntryPayload::Blank, EntryPayload::Normal("set k".to_string()), EntryPayload::Membership(m)] {
            let back: PayloadStd<String> = decode_payload(&encode_payload(&p)).expect("decodes");
            assert_eq!(back, p);
        }
    }

    #[test]
    fn a_payload_written_in_one_pass_equals_the_wrapped_encoding() {
        let big = pb::Membership {
            configs: vec![pb::VoterSet { node_ids: (0..2000).collect() }],
            nodes: (0..2000).map(|i| pb::Node { node_id: i, addr: format!("node-{i}:5000") }).collect(),
        };
        assert!(big.encoded_len() >= 1 << 14, "the length needs a three-byte varint");
        assert_eq!(normal_payload_of(&big), normal_payload(big.encode_to_vec()));
        let empty = pb::Blank {};
        assert_eq!(normal_payload_of(&empty), normal_payload(Vec::new()));
        let back: PayloadStd<String> = decode_payload(&normal_payload(b"set k".to_vec()).into()).expect("decodes");
        assert_eq!(back, EntryPayload::Normal("set k".to_string()));
    }

    #[test]
    fn garbage_is_invalid_data_not_a_panic() {
        for bytes in [&b""[..], b"\xff\xff\xff", b"\x12\x02\xff\xfe"] {
            let err = decode_payload::<String>(&Bytes::copy_from_slice(bytes)).expect_err("must fail");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{bytes:?}");
        }
        let v = Vote { leader_id: LeaderId { term: 3, voted_for: 9 }, committed: true };
        assert_eq!(decode_vote(&encode_vote(&v)).expect("vote"), v);
        assert_eq!(decode_committed(&encode_committed(Some(&log_id(2, 7)))).expect("c"), Some(log_id(2, 7)));
        assert_eq!(decode_committed(&encode_committed(None)).expect("c"), None);
    }
}
