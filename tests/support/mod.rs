//! Test-only Raft pieces: a type configuration with a string command, and the smallest state
//! machine that satisfies openraft's storage suite. It is replaced by the real state machine
//! when the engine lands; it exists only so the log store can be checked now.
#![allow(dead_code)]

pub mod wal_util;

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::type_config::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::{BasicNode, EntryPayload, OptionalSend, RaftSnapshotBuilder, StoredMembership};

use ahnlich_raft::raft::codec::CommandCodec;
use ahnlich_raft::raft::types::DurableConfig;

/// A command that is a string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmd(pub String);

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl CommandCodec for Cmd {
    fn encode_command(&self) -> Vec<u8> {
        self.0.as_bytes().to_vec()
    }
    fn decode_command(bytes: &[u8]) -> Result<Self, String> {
        String::from_utf8(bytes.to_vec()).map(Cmd).map_err(|e| e.to_string())
    }
}

openraft::declare_raft_types!(
    pub TestConfig:
        D = Cmd,
        R = u64,
        Node = BasicNode,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, u64>,
);

impl DurableConfig for TestConfig {
    type Command = Cmd;
}

/// The last snapshot built or installed: its meta and bytes.
type StoredSnapshot = (SnapshotMetaOf<TestConfig>, Vec<u8>);

/// Counts applied entries; its snapshot is that count.
#[derive(Default)]
pub struct CountingStateMachine {
    last_applied: Option<LogIdOf<TestConfig>>,
    membership: StoredMembershipOf<TestConfig>,
    applied: u64,
    current: Arc<Mutex<Option<StoredSnapshot>>>,
}

impl RaftSnapshotBuilder<TestConfig> for CountingStateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TestConfig, Vec<u8>>, io::Error> {
        let meta =
            SnapshotMetaOf::<TestConfig> { last_log_id: self.last_applied, last_membership: self.membership.clone() };
        let data = self.applied.to_le_bytes().to_vec();
        *self.current.lock().expect("lock") = Some((meta.clone(), data.clone()));
        Ok(openraft::Snapshot { meta, snapshot: data })
    }
}

impl RaftStateMachine<TestConfig> for CountingStateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<TestConfig>>, StoredMembershipOf<TestConfig>), io::Error> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: futures_util::Stream<Item = Result<EntryResponder<TestConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            self.last_applied = Some(entry.log_id);
            if let EntryPayload::Membership(m) = &entry.payload {
                self.membership = StoredMembership::new(Some(entry.log_id), m.clone());
            }
            self.applied += 1;
            if let Some(r) = responder {
                r.send(self.applied);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        Self {
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            applied: self.applied,
            current: self.current.clone(),
        }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMetaOf<TestConfig>, data: Vec<u8>) -> Result<(), io::Error> {
        let count: [u8; 8] = data
            .as_slice()
            .try_into()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "snapshot is not 8 bytes"))?;
        self.applied = u64::from_le_bytes(count);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        *self.current.lock().expect("lock") = Some((meta.clone(), data));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<TestConfig, Vec<u8>>>, io::Error> {
        Ok(self.current.lock().expect("lock").clone().map(|(meta, snapshot)| openraft::Snapshot { meta, snapshot }))
    }
}
