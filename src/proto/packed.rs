//! The message the write path carries most: a vector of `f32` in field 1 (Ahnlich's
//! `keyval.StoreKey` and this project's `command.Key`), with a hand-written protobuf codec.
//!
//! prost's derived code reads a packed float field one value at a time into a growing `Vec`
//! (six reallocations and copies for a 128-d key) and writes it one value at a time; measured with
//! `benches/command_codec_cost.rs`, that was most of a command's decoding and encoding. This codec
//! reads a packed run in one pass into an allocation of its exact size and writes it in blocks.
//!
//! The bytes are the derived code's: field 1 as a packed run (tag `0x0a`, varint length, then
//! each value as 4 little-endian bytes), nothing for an empty vector. Reading accepts what any
//! protobuf writer may send for a repeated float: packed runs, single values (tag `0x0d`, 4
//! bytes), or both, concatenated; other fields are skipped. Malformed input fails as it does for
//! prost's derived messages (it is handed to prost's own code).

use bytes::{Buf, BufMut};
use prost::DecodeError;
use prost::encoding::{
    DecodeContext, WireType, decode_varint, encode_key, encode_varint, encoded_len_varint, skip_field,
};

/// Field number of the vector in both messages.
const FIELD: u32 = 1;
/// The key byte of field 1 as a packed run (length-delimited).
const FIELD_KEY: u8 = 0x0a;
/// Bytes per value.
const FLOAT: usize = 4;
/// Values converted per block when writing.
const BLOCK: usize = 64;

/// Defines a message holding one `Vec<f32>` in field 1 under the name `$field`, encoded as above.
macro_rules! packed_floats_message {
    ($(#[$doc:meta])* $name:ident, $field:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Default, Debug)]
        pub struct $name {
            /// The vector's components, in order.
            pub $field: Vec<f32>,
        }

        impl prost::Message for $name {
            fn encode_raw(&self, buf: &mut impl BufMut) {
                encode_floats(&self.$field, buf);
            }

            fn merge_field(
                &mut self,
                tag: u32,
                wire_type: WireType,
                buf: &mut impl Buf,
                ctx: DecodeContext,
            ) -> Result<(), DecodeError> {
                if tag == FIELD {
                    merge_floats(&mut self.$field, wire_type, buf, ctx).map_err(|mut e| {
                        e.push(stringify!($name), stringify!($field));
                        e
                    })
                } else {
                    skip_field(wire_type, tag, buf, ctx)
                }
            }

            fn encoded_len(&self) -> usize {
                floats_len(&self.$field)
            }

            fn clear(&mut self) {
                self.$field.clear();
            }
        }
    };
}

packed_floats_message!(
    /// Ahnlich's `keyval.StoreKey`: a store key (a vector) in a DB API request or reply.
    StoreKey,
    key
);

packed_floats_message!(
    /// This project's `command.Key`: a key inside a replicated command.
    Key,
    components
);

/// The encoded length of `values` as field 1 (0 when empty).
pub(crate) fn floats_len(values: &[f32]) -> usize {
    if values.is_empty() {
        return 0;
    }
    let body = values.len() * FLOAT;
    1 + encoded_len_varint(body as u64) + body
}

/// Writes `values` as a packed field 1 (nothing when empty).
pub(crate) fn encode_floats(values: &[f32], buf: &mut impl BufMut) {
    if values.is_empty() {
        return;
    }
    encode_key(FIELD, WireType::LengthDelimited, buf);
    encode_varint((values.len() * FLOAT) as u64, buf);
    let mut block = [0u8; BLOCK * FLOAT];
    for chunk in values.chunks(BLOCK) {
        for (out, v) in block.chunks_exact_mut(FLOAT).zip(chunk) {
            out.copy_from_slice(&v.to_le_bytes());
        }
        buf.put_slice(&block[..chunk.len() * FLOAT]);
    }
}

/// The vector of a message body that is exactly what [`encode_floats`] writes (nothing, or one
/// packed run of whole floats), or `None` for any other body, which prost's own code then reads.
pub(crate) fn exact_floats(body: &[u8]) -> Option<Vec<f32>> {
    let Some((&tag, rest)) = body.split_first() else { return Some(Vec::new()) };
    if tag != FIELD_KEY {
        return None;
    }
    let (header, len) = packed_run_in(rest)?;
    let run = rest.get(header..)?;
    (run.len() == len).then(|| {
        let mut values = Vec::new();
        extend_from_run(&mut values, run);
        values
    })
}

/// Appends field 1's values from `buf`. A packed run that lies whole in the buffer's current
/// chunk (always, for a message decoded from one slice) is read in one pass; anything else
/// (single values, a run split across chunks, a malformed run) goes through prost's own code, so
/// malformed input fails exactly as it does for derived messages.
fn merge_floats(
    values: &mut Vec<f32>,
    wire_type: WireType,
    buf: &mut impl Buf,
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    if wire_type == WireType::LengthDelimited
        && let Some((header, len)) = packed_run_in(buf.chunk())
    {
        let run = &buf.chunk()[header..header + len];
        extend_from_run(values, run);
        buf.advance(header + len);
        return Ok(());
    }
    prost::encoding::float::merge_repeated(wire_type, values, buf, ctx)
}

/// Appends the floats of `run`, a packed run of whole floats, growing `values` once. A fill of
/// zeros, then a loop over fixed-size slices, which compiles to block copies; collecting the
/// same values from an iterator into a new vector took about seven instructions per float.
fn extend_from_run(values: &mut Vec<f32>, run: &[u8]) {
    let start = values.len();
    values.reserve_exact(run.len() / FLOAT);
    values.resize(start + run.len() / FLOAT, 0.0);
    for (value, bytes) in values[start..].iter_mut().zip(run.chunks_exact(FLOAT)) {
        *value = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
}

/// The length of the varint and of the run it announces, if `chunk` starts with a packed run
/// of whole floats that `chunk` holds entirely.
fn packed_run_in(chunk: &[u8]) -> Option<(usize, usize)> {
    let mut rest = chunk;
    let len = decode_varint(&mut rest).ok()?;
    let header = chunk.len() - rest.len();
    let len = usize::try_from(len).ok()?;
    (len % FLOAT == 0 && len <= rest.len()).then_some((header, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// What prost derives for `repeated float components = 1;`, packed as proto3 writes it.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Derived {
        #[prost(float, repeated, tag = "1")]
        components: Vec<f32>,
    }

    /// The same field written unpacked, one fixed32 field per value (legal for any writer).
    #[derive(Clone, PartialEq, prost::Message)]
    struct Unpacked {
        #[prost(float, repeated, packed = "false", tag = "1")]
        components: Vec<f32>,
    }

    /// A message with the vector and a field this codec does not know.
    #[derive(Clone, PartialEq, prost::Message)]
    struct WithExtra {
        #[prost(float, repeated, tag = "1")]
        components: Vec<f32>,
        #[prost(string, tag = "2")]
        note: String,
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|f| f.to_bits()).collect()
    }

    fn odd_values(n: usize) -> Vec<f32> {
        let specials =
            [0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::from_bits(0x7fc0_0001), f32::MIN_POSITIVE / 2.0];
        (0..n).map(|i| if i < specials.len() { specials[i] } else { i as f32 * -1.25 + 0.1 }).collect()
    }

    #[test]
    fn writes_the_bytes_prost_derives_and_reads_them_back_bit_for_bit() {
        // Lengths around the write block and the one-byte varint limit (127 bytes = 31.75 floats).
        for n in [0, 1, 31, 32, 33, 63, 64, 65, 128, 1000] {
            let values = odd_values(n);
            let ours = Key { components: values.clone() }.encode_to_vec();
            let derived = Derived { components: values.clone() }.encode_to_vec();
            assert_eq!(ours, derived, "{n} values");
            assert_eq!(Key { components: values.clone() }.encoded_len(), derived.len());
            let back = Key::decode(&derived[..]).expect("decodes");
            assert_eq!(bits(&back.components), bits(&values), "{n} values");
            assert_eq!(back.components.capacity(), n, "one allocation of the exact size");
        }
    }

    #[test]
    fn reads_unpacked_values_mixed_runs_and_skips_unknown_fields() {
        let values = odd_values(10);
        let unpacked = Unpacked { components: values.clone() }.encode_to_vec();
        assert_eq!(bits(&StoreKey::decode(&unpacked[..]).expect("unpacked").key), bits(&values));

        // Two packed runs and single values, concatenated, read in order.
        let mut mixed = Derived { components: values[..4].to_vec() }.encode_to_vec();
        mixed.extend(Unpacked { components: values[4..6].to_vec() }.encode_to_vec());
        mixed.extend(Derived { components: values[6..].to_vec() }.encode_to_vec());
        assert_eq!(bits(&StoreKey::decode(&mixed[..]).expect("mixed").key), bits(&values));

        let extra = WithExtra { components: values.clone(), note: "kept by newer writers".into() }.encode_to_vec();
        assert_eq!(bits(&Key::decode(&extra[..]).expect("extra field").components), bits(&values));
    }

    #[test]
    fn a_run_split_across_buffer_chunks_reads_the_same() {
        let values = odd_values(100);
        let bytes = Derived { components: values.clone() }.encode_to_vec();
        // Split inside the varint, inside a float and between floats.
        for cut in [1, 2, 3, 5, 6, 7, 8, 200, bytes.len() - 1] {
            let chained = (&bytes[..cut]).chain(&bytes[cut..]);
            let back = Key::decode(chained).expect("chained buffer decodes");
            assert_eq!(bits(&back.components), bits(&values), "cut at {cut}");
        }
    }

    #[test]
    fn malformed_runs_fail_as_they_do_for_derived_messages() {
        let whole = Derived { components: odd_values(8) }.encode_to_vec();
        let mut cases: Vec<Vec<u8>> = (1..whole.len()).map(|cut| whole[..cut].to_vec()).collect();
        cases.push(vec![0x0a, 0x05, 1, 2, 3, 4, 5]); // a run that is not a whole number of floats
        cases.push(vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]); // a huge run
        cases.push(vec![0x08, 0x01]); // field 1 as a varint
        cases.push(vec![0x0d, 1, 2]); // a single value cut short
        for bytes in cases {
            let derived = Derived::decode(&bytes[..]);
            let ours = Key::decode(&bytes[..]);
            assert!(derived.is_err(), "{bytes:?} is malformed");
            assert!(ours.is_err(), "{bytes:?} is refused: {ours:?}");
        }
    }
}
