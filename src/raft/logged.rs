//! The replicated command as the log carries it: the engine's [`Command`] together with the
//! bytes of its entry payload, made once.
//!
//! The leader encodes a command once, where it is proposed (off the Raft core), and the same
//! bytes go to its own log and to every follower. A follower, and a read back from the log,
//! keeps the bytes it decoded the command from, so nothing is encoded again on the way to the
//! disk. Those bytes decode to the command by construction, and they are what the log already
//! held or the leader sent.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use bytes::Bytes;

use super::codec::{self, CommandCodec};
use super::command::payload_of;
use crate::engine::Command;

/// An engine command and its entry payload bytes ([`codec::encode_payload`] of it).
pub struct LoggedCommand {
    command: Command,
    payload: Bytes,
}

impl LoggedCommand {
    /// `command`, encoded now.
    pub fn new(command: Command) -> Self {
        let payload = payload_of(&command);
        Self { command, payload }
    }

    /// `command`, encoded now, shared as the log's command type.
    pub fn shared(command: Command) -> Arc<Self> {
        Arc::new(Self::new(command))
    }

    /// The command.
    pub fn command(&self) -> &Command {
        &self.command
    }

    /// The bytes of its entry payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }
}

impl Deref for LoggedCommand {
    type Target = Command;

    fn deref(&self) -> &Command {
        &self.command
    }
}

/// Two logged commands are equal when their commands are.
impl PartialEq for LoggedCommand {
    fn eq(&self, other: &Self) -> bool {
        self.command == other.command
    }
}

impl fmt::Debug for LoggedCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.command, f)
    }
}

impl fmt::Display for LoggedCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.command, f)
    }
}

/// The log's command type: shared, so the entries openraft copies between its log,
/// replication and apply copy a pointer.
impl CommandCodec for Arc<LoggedCommand> {
    fn encode_command(&self) -> Vec<u8> {
        self.command.encode_command()
    }

    fn decode_command(bytes: &[u8]) -> Result<Self, String> {
        let command = Command::decode_command(bytes)?;
        Ok(Arc::new(LoggedCommand { command, payload: codec::normal_payload(bytes.to_vec()).into() }))
    }

    fn payload_bytes(&self) -> Bytes {
        self.payload.clone()
    }

    fn decode_from_payload(command: &[u8], payload: &Bytes) -> Result<Self, String> {
        let command = Command::decode_command(command)?;
        Ok(Arc::new(LoggedCommand { command, payload: payload.clone() }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::EntryPayload;

    use super::*;
    use crate::engine::{Entry, MetadataValue, StoreRef};
    use crate::raft::codec::{PayloadStd, decode_payload, encode_payload};

    fn set() -> Command {
        let entries = (0..50)
            .map(|i| Entry {
                key: vec![i as f32; 128],
                value: [("k".to_string(), MetadataValue::RawString(format!("v{i}")))].into(),
            })
            .collect();
        Command::Set { store: StoreRef { schema: None, name: "s".into() }, entries }
    }

    #[test]
    fn its_payload_is_the_one_the_command_encodes_to_and_decoding_keeps_it() {
        let logged = LoggedCommand::shared(set());
        let fresh = codec::normal_payload(set().encode_command());
        assert_eq!(logged.payload()[..], fresh[..]);
        let payload = encode_payload(&EntryPayload::Normal(logged.clone()));
        assert_eq!(payload.as_ptr(), logged.payload().as_ptr(), "the kept bytes, not a new encoding");
        let back: PayloadStd<Arc<LoggedCommand>> = decode_payload(&payload).expect("decodes");
        let EntryPayload::Normal(back) = back else { panic!("not a command: {back:?}") };
        assert_eq!(back.command(), &set());
        assert_eq!(back.payload().as_ptr(), payload.as_ptr(), "decoding shares the bytes it read");
        let direct = <Arc<LoggedCommand>>::decode_command(&set().encode_command()).expect("decodes");
        assert_eq!(direct.payload()[..], fresh[..]);
    }
}
