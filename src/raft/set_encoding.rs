//! A Set command's log encoding written straight from the engine's types: the very bytes prost
//! writes for `command::message` of it (`Command { set: Set { store, entries } }` in
//! `proto/ahnlich_raft/command.proto`), without first copying every key and metadata string into
//! the generated message types. A Set is the command that carries the bulk of all written bytes.
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
            put_header(SET_ENTRIES, entry_len(e), buf);
            put_header(ENTRY_KEY, packed::floats_len(&e.key), buf);
            packed::encode_floats(&e.key, buf);
            put_header(ENTRY_VALUE, metadata_len(&e.value), buf);
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
    field_len(packed::floats_len(&e.key)) + field_len(metadata_len(&e.value))
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

fn put_header(field: u32, len: usize, buf: &mut impl BufMut) {
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
}
