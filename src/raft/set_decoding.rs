//! The fast way back from a Set's log encoding: a follower reads the bytes that
//! [`super::set_encoding`] writes straight into the engine's types, without prost's generated
//! messages in between (a `Vec` of entry messages per Set, one of metadata pairs per entry, and
//! each pair's map built from a sorted copy). A Set is most of what a follower decodes.
//!
//! It reads only the canonical form: every field in the order the writer puts it, each once
//! (but the repeated ones), metadata keys strictly ascending, and nothing it does not know. For
//! any other bytes it answers `None`, and the caller decodes them with prost's generated types,
//! so those bytes get exactly the value or the error they always got. For the bytes it does
//! read, prost's decoding gives the same command (tested below, also on mutated encodings).
//! A batch of concurrent writes is read the same way when every command in it is such a Set;
//! a batch holding anything else goes to prost whole, so its value or error is prost's.

use super::set_encoding::{
    BATCH_COMMANDS, COMMAND_BATCH, COMMAND_SET, ENTRY_KEY, ENTRY_VALUE, METADATA_ENTRIES, SET_ENTRIES, SET_STORE,
    STORE_REF_NAME, STORE_REF_SCHEMA, VALUE_AUDIO, VALUE_IMAGE, VALUE_RAW_STRING,
};
use crate::engine::{Command, Entry, Metadata, MetadataValue, StoreRef};
use crate::proto::fields::{Fields, one_arm_map_entry, utf8};
use crate::proto::packed;

/// The Set or the batch of Sets that `bytes` (a whole encoded `Command`) hold, if they are in
/// the canonical form; `None` for anything prost must read.
pub(super) fn read_direct(bytes: &[u8]) -> Option<Command> {
    read_set(bytes).or_else(|| read_batch(bytes))
}

/// The Set that `bytes` (a whole encoded `Command`) holds, if they are in the canonical form.
fn read_set(bytes: &[u8]) -> Option<Command> {
    let mut command = Fields(bytes);
    let set = command.next_body(COMMAND_SET)?;
    if !command.is_done() {
        return None;
    }
    let mut set = Fields(set);
    let store = store_ref(set.next_body(SET_STORE)?)?;
    let mut entries = Vec::new();
    while !set.is_done() {
        entries.push(entry(set.next_body(SET_ENTRIES)?)?);
    }
    Some(Command::Set { store, entries })
}

/// The batch that `bytes` (a whole encoded `Command`) holds, if it is in the canonical form
/// and every command in it is a Set that [`read_set`] reads.
fn read_batch(bytes: &[u8]) -> Option<Command> {
    let mut command = Fields(bytes);
    let batch = command.next_body(COMMAND_BATCH)?;
    if !command.is_done() {
        return None;
    }
    let mut members = Fields(batch);
    let mut commands = Vec::new();
    while !members.is_done() {
        commands.push(read_set(members.next_body(BATCH_COMMANDS)?)?);
    }
    Some(Command::Batch { commands })
}

fn store_ref(body: &[u8]) -> Option<StoreRef> {
    let mut fields = Fields(body);
    let schema = match fields.optional_body(STORE_REF_SCHEMA)? {
        Some(body) => Some(utf8(body)?),
        None => None,
    };
    let name = fields.optional_body(STORE_REF_NAME)?.map_or(Some(String::new()), utf8)?;
    fields.is_done().then_some(StoreRef { schema, name })
}

fn entry(body: &[u8]) -> Option<Entry> {
    let mut fields = Fields(body);
    let key = packed::exact_floats(fields.next_body(ENTRY_KEY)?)?;
    let value = metadata(fields.next_body(ENTRY_VALUE)?)?;
    fields.is_done().then_some(Entry { key, value })
}

fn metadata(body: &[u8]) -> Option<Metadata> {
    let mut pairs = Fields(body);
    let mut metadata = Metadata::new();
    while !pairs.is_done() {
        let (key, arm, bytes) = one_arm_map_entry(pairs.next_body(METADATA_ENTRIES)?)?;
        // Ascending keys make each insert an append, and leave no duplicate whose winner the
        // two decoders might pick differently.
        if metadata.last_key_value().is_some_and(|(last, _)| *last >= key) {
            return None;
        }
        metadata.insert(key, value(arm, bytes)?);
    }
    Some(metadata)
}

fn value(arm: u32, bytes: &[u8]) -> Option<MetadataValue> {
    match arm {
        VALUE_RAW_STRING => utf8(bytes).map(MetadataValue::RawString),
        VALUE_IMAGE => Some(MetadataValue::Image(bytes.to_vec())),
        VALUE_AUDIO => Some(MetadataValue::Audio(bytes.to_vec())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::proto::fields::damage;
    use crate::raft::codec::CommandCodec;
    use crate::raft::command::decode_with_prost;

    fn bytes_of(cmd: &Command) -> Vec<u8> {
        cmd.encode_command()
    }

    fn arb_value() -> impl Strategy<Value = MetadataValue> {
        prop_oneof![
            ".{0,12}".prop_map(MetadataValue::RawString),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(MetadataValue::Image),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(MetadataValue::Audio),
        ]
    }

    fn arb_set() -> impl Strategy<Value = Command> {
        let store = (proptest::option::of(".{0,6}"), ".{0,6}").prop_map(|(schema, name)| StoreRef { schema, name });
        let entry = (
            proptest::collection::vec(any::<u32>().prop_map(f32::from_bits), 0..6),
            proptest::collection::btree_map(".{0,5}", arb_value(), 0..4),
        )
            .prop_map(|(key, value)| Entry { key, value });
        (store, proptest::collection::vec(entry, 0..5)).prop_map(|(store, entries)| Command::Set { store, entries })
    }

    fn arb_batch() -> impl Strategy<Value = Command> {
        proptest::collection::vec(arb_set(), 0..5).prop_map(|commands| Command::Batch { commands })
    }

    /// A Set or a batch of Sets: what [`read_direct`] reads.
    fn arb_direct() -> impl Strategy<Value = Command> {
        prop_oneof![arb_set(), arb_batch()]
    }

    /// What prost's path makes of `bytes`, in bytes (NaN keys compare unequal as values).
    fn prost_reading(bytes: &[u8]) -> Result<Vec<u8>, String> {
        decode_with_prost(bytes).map(|cmd| bytes_of(&cmd))
    }

    proptest! {
        #[test]
        fn every_set_or_batch_of_sets_written_is_read_back_as_prost_reads_it(cmd in arb_direct()) {
            let bytes = bytes_of(&cmd);
            let read = read_direct(&bytes).expect("the canonical form is read");
            prop_assert_eq!(bytes_of(&read), bytes.clone());
            prop_assert_eq!(prost_reading(&bytes), Ok(bytes));
        }

        #[test]
        fn whatever_it_reads_of_damaged_bytes_prost_reads_the_same(
            cmd in arb_direct(),
            edits in damage::edits(3),
        ) {
            let bytes = damage::apply(bytes_of(&cmd), edits);
            if let Some(read) = read_direct(&bytes) {
                prop_assert_eq!(prost_reading(&bytes), Ok(bytes_of(&read)));
            }
        }

        #[test]
        fn a_batch_holding_any_other_command_is_left_to_prost(
            cmd in arb_batch(),
            at in any::<prop::sample::Index>(),
            schema in ".{0,6}",
        ) {
            let Command::Batch { mut commands } = cmd else { unreachable!() };
            commands.insert(at.index(commands.len() + 1), Command::DropSchema { schema });
            let bytes = bytes_of(&Command::Batch { commands });
            prop_assert!(read_direct(&bytes).is_none());
            let decoded = Command::decode_command(&bytes).map(|c| bytes_of(&c));
            prop_assert_eq!(decoded, prost_reading(&bytes));
            prop_assert_eq!(prost_reading(&bytes), Ok(bytes));
        }

        #[test]
        fn whatever_it_reads_of_random_bytes_prost_reads_the_same(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            if let Some(read) = read_direct(&bytes) {
                prop_assert_eq!(prost_reading(&bytes), Ok(bytes_of(&read)));
            }
        }
    }

    #[test]
    fn bytes_prost_accepts_in_another_form_are_left_to_prost() {
        use crate::proto::command as pb;
        use prost::Message;
        let pair = |key: &str, text: &str| pb::MetadataEntry {
            key: key.into(),
            value: Some(pb::MetadataValue { value: Some(pb::metadata_value::Value::RawString(text.into())) }),
        };
        let set = |pairs: Vec<pb::MetadataEntry>| {
            pb::Command {
                kind: Some(pb::command::Kind::Set(pb::Set {
                    store: Some(pb::StoreRef { schema: None, name: "s".into() }),
                    entries: vec![pb::Entry {
                        key: Some(pb::Key { components: vec![1.0] }),
                        value: Some(pb::Metadata { entries: pairs }),
                    }],
                })),
            }
            .encode_to_vec()
        };
        // Keys out of order and a repeated key: prost sorts, and the last of equal keys wins.
        for bytes in [set(vec![pair("b", "1"), pair("a", "2")]), set(vec![pair("a", "1"), pair("a", "2")])] {
            assert!(read_set(&bytes).is_none());
            assert!(Command::decode_command(&bytes).is_ok());
        }
        // A key written as a single float (tag 0x0d) rather than a packed run.
        let field = |number: u8, body: &[u8]| [&[number << 3 | 2, body.len() as u8][..], body].concat();
        let key = [&[0x0d][..], &1.0f32.to_le_bytes()].concat();
        let entry = [field(1, &key), field(2, &[])].concat();
        let unpacked = field(4, &[field(1, &field(2, b"s")), field(2, &entry)].concat());
        assert!(read_set(&unpacked).is_none());
        let Ok(Command::Set { entries, .. }) = Command::decode_command(&unpacked) else {
            panic!("prost reads a single float")
        };
        assert_eq!(entries[0].key, vec![1.0]);
        // Errors stay prost's: a pair with no value.
        let no_value = set(vec![pb::MetadataEntry { key: "a".into(), value: None }]);
        assert!(read_set(&no_value).is_none());
        assert_eq!(Command::decode_command(&no_value).unwrap_err(), "metadata value is missing");
    }
}
