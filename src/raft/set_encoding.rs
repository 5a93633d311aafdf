//! A Set command's log encoding written straight from the engine's types: the very bytes prost
//! writes for `command::message` of it (`Command { set: Set { store, entries } }` in
//! `proto/ahnlich_raft/command.proto`), without first copying every key and metadata string into
//! the generated message types. A Set is the command that carries the bulk of all written bytes.
//! So does a batch of concurrent writes (`Command { batch: Batch { commands } }`), written here
//! around its members' own encodings.
//!
//! Presence follows proto3 as prost applies it: a message field that is set is written even
//! when empty; a plain string or packed field is left out when empty; `StoreRef.schema` is
//! `optional`, so it is written whenever it is set; a oneof arm is always written.

use bytes::BufMut;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

use crate::engine::{Entry, Metadata, MetadataValue, StoreRef};
use crate::proto::packed;

// Field numbers, from `command.proto` (read back by `set_decoding`).
pub(super) const COMMAND_SET: u32 = 4;
pub(super) const COMMAND_BATCH: u32 = 13;
pub(super) const BATCH_COMMANDS: u32 = 1;
pub(super) const SET_STORE: u32 = 1;
pub(super) const SET_ENTRIES: u32 = 2;
pub(super) const STORE_REF_SCHEMA: u32 = 1;
pub(super) const STORE_REF_NAME: u32 = 2;
pub(super) const ENTRY_KEY: u32 = 1;
pub(super) const ENTRY_VALUE: u32 = 2;
pub(super) const METADATA_ENTRIES: u32 = 1;
pub(super) const METADATA_ENTRY_KEY: u32 = 1;
pub(super) const METADATA_ENTRY_VALUE: u32 = 2;
pub(super) const VALUE_RAW_STRING: u32 = 1;
pub(super) const VALUE_IMAGE: u32 = 2;
pub(super) const VALUE_AUDIO: u32 = 3;

/// The encoding of one Set, its length worked out once when made.
pub(super) struct SetEncoding<'a> {
    store: &'a StoreRef,
    entries: &'a [Entry],
    set_len: usize,
}

impl<'a> SetEncoding<'a> {
    /// The encoding of the Set of `entries` into `store`.
    pub(super) fn new(store: &'a StoreRef, entries: &'a [Entry]) -> Self {
        Self { store, entries, set_len: set_len(store, entries) }
    }

    /// The length of the whole `Command` holding the Set.
    pub(super) fn len(&self) -> usize {
        field_len(self.set_len)
    }

    /// Writes the whole `Command` holding the Set (`len` bytes).
    pub(super) fn write(&self, buf: &mut impl BufMut) {
        let store = self.store;
        put_header(COMMAND_SET, self.set_len, buf);
        put_header(SET_STORE, store_ref_len(store), buf);
        if let Some(schema) = &store.schema {
            put_bytes(STORE_REF_SCHEMA, schema.as_bytes(), buf);
        }
        put_nonempty(STORE_REF_NAME, store.name.as_bytes(), buf);
        for e in self.entries {
            let metadata_len = metadata_len(&e.value);
            put_header(SET_ENTRIES, entry_len_from(&e.key, metadata_len), buf);
            put_header(ENTRY_KEY, packed::floats_len(&e.key), buf);
            packed::encode_floats(&e.key, buf);
            put_header(ENTRY_VALUE, metadata_len, buf);
            for (key, value) in &e.value {
                let (arm, bytes) = value_arm(value);
                put_header(METADATA_ENTRIES, metadata_entry_len(key, bytes), buf);
                put_nonempty(METADATA_ENTRY_KEY, key.as_bytes(), buf);
                put_header(METADATA_ENTRY_VALUE, field_len(bytes.len()), buf);
                put_bytes(arm, bytes, buf);
            }
        }
    }
}

/// One command of a batch, as it is encoded.
pub(super) enum Member<'a> {
    /// A Set, written as [`SetEncoding`] writes it.
    Set(SetEncoding<'a>),
    /// Any other command, already encoded as a whole `Command` message.
    Encoded(Vec<u8>),
}

impl Member<'_> {
    fn len(&self) -> usize {
        match self {
            Member::Set(set) => set.len(),
            Member::Encoded(bytes) => bytes.len(),
        }
    }

    fn write(&self, buf: &mut impl BufMut) {
        match self {
            Member::Set(set) => set.write(buf),
            Member::Encoded(bytes) => buf.put_slice(bytes),
        }
    }
}

/// The encoding of one batch: the bytes prost writes for `command::message` of it, each member
/// written as it is encoded alone; its length worked out once when made.
pub(super) struct BatchEncoding<'a> {
    members: Vec<Member<'a>>,
    batch_len: usize,
}

impl<'a> BatchEncoding<'a> {
    /// The encoding of the batch of `members`, in order.
    pub(super) fn new(members: Vec<Member<'a>>) -> Self {
        let batch_len = members.iter().map(|m| field_len(m.len())).sum();
        Self { members, batch_len }
    }

    /// The length of the whole `Command` holding the batch.
    pub(super) fn len(&self) -> usize {
        field_len(self.batch_len)
    }

    /// Writes the whole `Command` holding the batch (`len` bytes).
    pub(super) fn write(&self, buf: &mut impl BufMut) {
        put_header(COMMAND_BATCH, self.batch_len, buf);
        for member in &self.members {
            put_header(BATCH_COMMANDS, member.len(), buf);
            member.write(buf);
        }
    }
}

/// A length-delimited field (field number below 16) holding `len` bytes.
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// A plain string or packed field: absent when empty.
fn nonempty_field_len(len: usize) -> usize {
    if len == 0 { 0 } else { field_len(len) }
}

fn set_len(store: &StoreRef, entries: &[Entry]) -> usize {
    field_len(store_ref_len(store)) + entries.iter().map(|e| field_len(entry_len(e))).sum::<usize>()
}

fn store_ref_len(r: &StoreRef) -> usize {
    r.schema.as_ref().map_or(0, |s| field_len(s.len())) + nonempty_field_len(r.name.len())
}

fn entry_len(e: &Entry) -> usize {
    entry_len_from(&e.key, metadata_len(&e.value))
}

/// The length of an entry with `key` and metadata of `metadata_len` bytes.
fn entry_len_from(key: &[f32], metadata_len: usize) -> usize {
    field_len(packed::floats_len(key)) + field_len(metadata_len)
}

fn metadata_len(m: &Metadata) -> usize {
    m.iter().map(|(key, value)| field_len(metadata_entry_len(key, value_arm(value).1))).sum()
}

fn metadata_entry_len(key: &str, value: &[u8]) -> usize {
    nonempty_field_len(key.len()) + field_len(field_len(value.len()))
}

/// The `MetadataValue` arm of `v` and its bytes.
fn value_arm(v: &MetadataValue) -> (u32, &[u8]) {
    match v {
        MetadataValue::RawString(s) => (VALUE_RAW_STRING, s.as_bytes()),
        MetadataValue::Image(b) => (VALUE_IMAGE, b),
        MetadataValue::Audio(b) => (VALUE_AUDIO, b),
    }
}

/// Writes the key of length-delimited field `field` and the length `len`, as prost does; the
/// common case (a one-byte key and a length under 16 KiB) in one write to `buf`.
fn put_header(field: u32, len: usize, buf: &mut impl BufMut) {
    if field < 16 {
        let key = (field << 3) as u8 | WireType::LengthDelimited as u8;
        if len < 0x80 {
            return buf.put_slice(&[key, len as u8]);
        }
        if len < 0x4000 {
            return buf.put_slice(&[key, len as u8 | 0x80, (len >> 7) as u8]);
        }
    }
    encode_key(field, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

fn put_bytes(field: u32, bytes: &[u8], buf: &mut impl BufMut) {
    put_header(field, bytes.len(), buf);
    buf.put_slice(bytes);
}

fn put_nonempty(field: u32, bytes: &[u8], buf: &mut impl BufMut) {
    if !bytes.is_empty() {
        put_bytes(field, bytes, buf);
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::engine::Command;
    use crate::raft::command::message;

    fn set(store: StoreRef, entries: Vec<Entry>) -> Command {
        Command::Set { store, entries }
    }

    fn entry(key: Vec<f32>, value: &[(&str, MetadataValue)]) -> Entry {
        Entry { key, value: value.iter().map(|(k, v)| (k.to_string(), v.clone())).collect() }
    }

    #[test]
    fn a_set_is_written_as_the_bytes_prost_writes_for_its_message() {
        let long = "x".repeat(300); // lengths needing two-byte varints
        let schema_store = StoreRef { schema: Some("tenant".into()), name: "s".into() };
        let empty_schema = StoreRef { schema: Some(String::new()), name: String::new() };
        let sets = [
            set(StoreRef::public("s"), vec![]),
            set(empty_schema, vec![entry(vec![], &[])]),
            set(
                schema_store,
                vec![
                    entry(vec![1.0, -0.0, f32::NAN], &[("", MetadataValue::RawString(String::new()))]),
                    entry(
                        (0..200).map(|i| i as f32 / 7.0).collect(),
                        &[
                            ("author", MetadataValue::RawString(long.clone())),
                            ("cover", MetadataValue::Image(vec![0, 1, 2, 255])),
                            ("voice", MetadataValue::Audio(vec![])),
                            (long.as_str(), MetadataValue::RawString("v".into())),
                        ],
                    ),
                ],
            ),
            set(
                StoreRef::public(&long),
                (0..1000)
                    .map(|i| entry(vec![i as f32; 128], &[("id", MetadataValue::RawString(i.to_string()))]))
                    .collect(),
            ),
        ];
        for cmd in &sets {
            let Command::Set { store, entries } = cmd else { unreachable!() };
            let derived = message(cmd).encode_to_vec();
            let encoding = SetEncoding::new(store, entries);
            let mut ours = Vec::new();
            encoding.write(&mut ours);
            assert_eq!(ours, derived, "{}", cmd);
            assert_eq!(encoding.len(), derived.len(), "{}", cmd);
        }
    }

    #[test]
    fn a_field_header_is_the_key_and_length_prost_writes() {
        for field in [1, 2, 13, 15, 16, 200] {
            for len in [0usize, 1, 127, 128, 129, 16_383, 16_384, 16_385, 1 << 21, 1 << 35] {
                let mut ours = Vec::new();
                put_header(field, len, &mut ours);
                let mut derived = Vec::new();
                encode_key(field, WireType::LengthDelimited, &mut derived);
                encode_varint(len as u64, &mut derived);
                assert_eq!(ours, derived, "field {field}, length {len}");
            }
        }
    }

    #[test]
    fn a_batch_is_written_as_the_bytes_prost_writes_for_its_message() {
        use crate::raft::codec::{self, CommandCodec};
        use crate::raft::command::{encoded_len, payload_of};
        let one = |i: u32| {
            set(
                StoreRef::public("s"),
                vec![entry(vec![i as f32; 3], &[("id", MetadataValue::RawString(i.to_string()))])],
            )
        };
        let big = set(
            StoreRef { schema: Some("tenant".into()), name: "x".repeat(200) },
            (0..100).map(|i| entry(vec![i as f32; 128], &[])).collect(),
        );
        let batches = [
            vec![],
            vec![set(StoreRef::public("s"), vec![])],
            (0..64).map(one).collect(),
            vec![big.clone(), one(1), big],
            // Members other than Sets are written by prost, in their place.
            vec![
                one(1),
                Command::DropSchema { schema: "tenant".into() },
                Command::DelKey { store: StoreRef::public("s"), keys: vec![vec![1.0; 3]] },
                Command::Batch { commands: vec![one(2)] },
                one(3),
            ],
        ];
        for commands in batches {
            let batch = Command::Batch { commands };
            let derived = message(&batch).encode_to_vec();
            assert_eq!(batch.encode_command(), derived, "{batch}");
            assert_eq!(encoded_len(&batch), derived.len(), "{batch}");
            assert_eq!(payload_of(&batch)[..], codec::normal_payload(derived)[..], "{batch}");
        }
    }
}
