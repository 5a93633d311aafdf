//! Ahnlich's `keyval.StoreValue` (an entry's metadata in a DB API request or reply) with a
//! hand-written decoder for its map entries. Every entry of a bulk Set carries one, and prost's
//! derived code spent about 3.6k instructions per entry of three pairs reading it (field by field
//! through its generic map code, each string first reserved, then copied and checked).
//!
//! The type and its bytes are exactly what prost derives for
//! `map<string, metadata.MetadataValue> value = 1;` into a `BTreeMap`. Writing uses prost's own map
//! code. Reading takes a map entry in the form every protobuf writer produces (the key, if not
//! empty, then the value holding one arm, each field once) in one pass; any other entry (fields
//! in another order or repeated, an unknown field, a value with no arm or an unknown one, an
//! entry split across buffer chunks, malformed bytes) goes to prost's own map code, so it gets
//! the value or the error it always got. A key repeated across entries keeps its last value,
//! as with prost.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut};
use prost::DecodeError;
use prost::encoding::{DecodeContext, WireType, btree_map, check_wire_type, message, skip_field, string};

use super::ahnlich::metadata::MetadataValue;
use super::ahnlich::metadata::metadata_value::Value;
use super::fields::{length_prefixed, one_arm_map_entry, utf8};

/// Field number of the map.
const FIELD: u32 = 1;
/// Field numbers of the value's arms in `metadata.proto`.
const RAW_STRING: u32 = 2;
const IMAGE: u32 = 3;
const AUDIO: u32 = 4;

/// An entry's metadata: each key with its value.
#[derive(Clone, PartialEq, Default, Debug)]
pub struct StoreValue {
    /// The pairs, by key.
    pub value: BTreeMap<String, MetadataValue>,
}

impl prost::Message for StoreValue {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        btree_map::encode(
            string::encode,
            string::encoded_len,
            message::encode,
            message::encoded_len,
            FIELD,
            &self.value,
            buf,
        );
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        if tag != FIELD {
            return skip_field(wire_type, tag, buf, ctx);
        }
        if wire_type == WireType::LengthDelimited
            && let Some((read, key, value)) = plain_entry(buf.chunk())
        {
            self.value.insert(key, value);
            buf.advance(read);
            return Ok(());
        }
        check_wire_type(WireType::LengthDelimited, wire_type)
            .and_then(|()| btree_map::merge(string::merge, message::merge, &mut self.value, buf, ctx))
            .map_err(|mut e| {
                e.push("StoreValue", "value");
                e
            })
    }

    fn encoded_len(&self) -> usize {
        btree_map::encoded_len(string::encoded_len, message::encoded_len, FIELD, &self.value)
    }

    fn clear(&mut self) {
        self.value.clear();
    }
}

/// The bytes read, key and value of a map entry (its length, then its body) at the start of
/// `chunk`, if it is whole there and in the plain form described above.
fn plain_entry(chunk: &[u8]) -> Option<(usize, String, MetadataValue)> {
    let (read, body) = length_prefixed(chunk)?;
    let (key, arm, bytes) = one_arm_map_entry(body)?;
    let value = match arm {
        RAW_STRING => Value::RawString(utf8(bytes)?),
        IMAGE => Value::Image(bytes.to_vec()),
        AUDIO => Value::Audio(bytes.to_vec()),
        _ => return None,
    };
    Some((read, key, MetadataValue { value: Some(value) }))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use prost::Message;

    use super::*;
    use crate::proto::fields::damage;

    /// Field numbers of a map entry: the key, and the value.
    const ENTRY_KEY: u32 = 1;
    const ENTRY_VALUE: u32 = 2;

    /// What prost derives for the same field (under the same name, which its errors quote).
    mod derived {
        use super::*;

        #[derive(Clone, PartialEq, prost::Message)]
        pub struct StoreValue {
            #[prost(btree_map = "string, message", tag = "1")]
            pub value: BTreeMap<String, MetadataValue>,
        }
    }
    use derived::StoreValue as Derived;

    fn arb_value() -> impl Strategy<Value = MetadataValue> {
        let arm = prop_oneof![
            ".{0,12}".prop_map(Value::RawString),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(Value::Image),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(Value::Audio),
        ];
        proptest::option::weighted(0.9, arm).prop_map(|value| MetadataValue { value })
    }

    fn arb_map() -> impl Strategy<Value = BTreeMap<String, MetadataValue>> {
        proptest::collection::btree_map(".{0,5}", arb_value(), 0..5)
    }

    /// One decoding of some bytes: the map, or the error's text.
    type Decoded = Result<BTreeMap<String, MetadataValue>, String>;

    /// Both decodings of `bytes`: ours, then prost's.
    fn both(bytes: &[u8]) -> (Decoded, Decoded) {
        (
            StoreValue::decode(bytes).map(|v| v.value).map_err(|e| e.to_string()),
            Derived::decode(bytes).map(|v| v.value).map_err(|e| e.to_string()),
        )
    }

    proptest! {
        #[test]
        fn it_writes_what_prost_writes_and_reads_it_back(map in arb_map()) {
            let ours = StoreValue { value: map.clone() }.encode_to_vec();
            prop_assert_eq!(&ours, &Derived { value: map.clone() }.encode_to_vec());
            prop_assert_eq!(StoreValue { value: map.clone() }.encoded_len(), ours.len());
            prop_assert_eq!(StoreValue::decode(&ours[..]).expect("decode").value, map);
        }

        #[test]
        fn any_bytes_decode_as_prost_decodes_them(
            map in arb_map(),
            edits in damage::edits(3),
        ) {
            let bytes = damage::apply(Derived { value: map }.encode_to_vec(), edits);
            let (ours, derived) = both(&bytes);
            prop_assert_eq!(ours, derived);
        }

        #[test]
        fn concatenated_messages_merge_as_prost_merges_them(a in arb_map(), b in arb_map()) {
            let mut bytes = Derived { value: a }.encode_to_vec();
            bytes.extend(Derived { value: b }.encode_to_vec());
            let (ours, derived) = both(&bytes);
            prop_assert_eq!(ours, derived);
        }
    }

    #[test]
    fn entries_in_other_forms_read_as_prost_reads_them() {
        let field = |number: u32, body: &[u8]| [&[(number << 3 | 2) as u8, body.len() as u8][..], body].concat();
        let text_value = |s: &str| field(RAW_STRING, s.as_bytes());
        let entry = |body: &[u8]| field(FIELD, body);
        let cases = [
            // Value before key.
            entry(&[field(ENTRY_VALUE, &text_value("v")), field(ENTRY_KEY, b"k")].concat()),
            // Key repeated: the last one counts.
            entry(&[field(ENTRY_KEY, b"a"), field(ENTRY_KEY, b"b"), field(ENTRY_VALUE, &text_value("v"))].concat()),
            // No value at all, and a value with no arm.
            entry(&field(ENTRY_KEY, b"k")),
            entry(&[field(ENTRY_KEY, b"k"), field(ENTRY_VALUE, &[])].concat()),
            // Two arms: the last one counts.
            entry(
                &[field(ENTRY_KEY, b"k"), field(ENTRY_VALUE, &[text_value("x"), field(IMAGE, b"y")].concat())].concat(),
            ),
            // An unknown field in the entry.
            entry(&[field(ENTRY_KEY, b"k"), field(ENTRY_VALUE, &text_value("v")), field(3, b"?")].concat()),
            // A key that is not UTF-8.
            entry(&[field(ENTRY_KEY, &[0xff]), field(ENTRY_VALUE, &text_value("v"))].concat()),
            // The same key in two entries: the last one counts.
            [
                entry(&[field(ENTRY_KEY, b"k"), field(ENTRY_VALUE, &text_value("1"))].concat()),
                entry(&[field(ENTRY_KEY, b"k"), field(ENTRY_VALUE, &text_value("2"))].concat()),
            ]
            .concat(),
        ];
        for bytes in cases {
            let (ours, derived) = both(&bytes);
            assert_eq!(ours, derived, "{bytes:?}");
        }
    }

    #[test]
    fn an_entry_split_across_chunks_reads_as_one() {
        let map =
            BTreeMap::from([("author".to_string(), MetadataValue { value: Some(Value::RawString("x".repeat(40))) })]);
        let bytes = Derived { value: map.clone() }.encode_to_vec();
        let (front, back) = bytes.split_at(bytes.len() / 2);
        let split = bytes::Buf::chain(front, back);
        assert_eq!(StoreValue::decode(split).expect("decode").value, map);
    }
}
