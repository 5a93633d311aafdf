//! Bytes as everything a node decodes from a peer: the Raft transport's requests and replies,
//! and the commands inside replicated entries. Decoding never panics. A decoded command that
//! passes validation applies without panicking; one that fails validation is refused by
//! `apply` too and changes nothing.
#![no_main]

use ahnlich_raft::engine::{Command, Engine, Limits};
use ahnlich_raft::proto::raft as pb;
use ahnlich_raft::raft::codec::CommandCodec;
use ahnlich_raft::raft::wire;
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// Decodes `data` as each message type in turn and, where it decodes, converts it as the node
/// does; only panics matter, so the results are dropped.
macro_rules! decode_each {
    ($data:expr; $($message:ty => $convert:path),+ $(,)?) => {
        $(if let Ok(m) = <$message>::decode($data) {
            let _ = $convert(m);
        })+
    };
}

fuzz_target!(|data: &[u8]| {
    decode_each!(data;
        pb::AppendRequest => wire::append_in,
        pb::AppendReply => wire::append_reply_in,
        pb::StreamAppendReply => wire::stream_reply_in,
        pb::VoteRequest => wire::vote_in_req,
        pb::VoteReply => wire::vote_reply_in,
        pb::TransferLeaderRequest => wire::transfer_in,
        pb::TransferLeaderReply => wire::transfer_reply_in,
    );

    // The whole input as one command, then as a sequence of commands each prefixed by its
    // length (two bytes), applied to one engine.
    let engine = Engine::new(Limits { max_memory_bytes: Some(16 << 20), ..Limits::default() });
    check(&engine, data);
    let mut rest = data;
    while rest.len() >= 2 {
        let n = (usize::from(rest[0]) << 8 | usize::from(rest[1])).min(rest.len() - 2);
        let (bytes, tail) = rest[2..].split_at(n);
        rest = tail;
        check(&engine, bytes);
    }
});

fn check(engine: &Engine, bytes: &[u8]) {
    let Ok(cmd) = Command::decode_command(bytes) else { return };
    let before = engine.digest();
    match engine.validate(&cmd) {
        Ok(()) => {
            let _ = engine.apply(&cmd);
        }
        Err(_) => {
            assert!(engine.apply(&cmd).is_err(), "apply accepted what validate refused: {cmd:?}");
            assert_eq!(engine.digest(), before, "a refused command changed the state: {cmd:?}");
        }
    }
}
