//! Reading protobuf message bodies field by field in their plain form, for the hand-written
//! decoders of the write path (`store_value`, and the log's Set in `raft::set_decoding`). Each
//! answers `None` for anything outside that form, and its caller then hands the bytes to prost.

use prost::encoding::decode_varint;

/// The length-delimited fields of a message body, front to back.
pub(crate) struct Fields<'a>(pub(crate) &'a [u8]);

impl<'a> Fields<'a> {
    /// Whether every byte has been read.
    #[inline]
    pub(crate) fn is_done(&self) -> bool {
        self.0.is_empty()
    }

    /// The next field's number and body, if it is a length-delimited field with a one-byte key
    /// (field numbers below 16) whose body lies whole in the input.
    #[inline]
    pub(crate) fn next(&mut self) -> Option<(u32, &'a [u8])> {
        let (&key, rest) = self.0.split_first()?;
        if key & 0x07 != 2 || key & 0x80 != 0 {
            return None;
        }
        let (used, body) = length_prefixed(rest)?;
        self.0 = &rest[used..];
        Some((u32::from(key >> 3), body))
    }

    /// The body of the next field, which must be number `field`.
    #[inline]
    pub(crate) fn next_body(&mut self, field: u32) -> Option<&'a [u8]> {
        self.next().and_then(|(number, body)| (number == field).then_some(body))
    }

    /// The body of the next field if it is number `field` (`Some(None)` when another field, or
    /// nothing, comes next; `None` when the bytes are not fields).
    #[inline]
    pub(crate) fn optional_body(&mut self, field: u32) -> Option<Option<&'a [u8]>> {
        let before = self.0;
        match self.next() {
            Some((number, body)) if number == field => Some(Some(body)),
            Some(_) => {
                self.0 = before;
                Some(None)
            }
            None if before.is_empty() => Some(None),
            None => None,
        }
    }
}

/// A map entry with a string key and a message value that holds exactly one length-delimited
/// field, in the plain form (the key if not empty, then the value, nothing else): the key, and
/// the value's field number and body.
#[inline]
pub(crate) fn one_arm_map_entry(body: &[u8]) -> Option<(String, u32, &[u8])> {
    /// Field numbers protobuf gives a map entry's key and value.
    const KEY: u32 = 1;
    const VALUE: u32 = 2;
    let mut entry = Fields(body);
    let key = entry.optional_body(KEY)?.map_or(Some(String::new()), utf8)?;
    let mut value = Fields(entry.next_body(VALUE)?);
    let (arm, bytes) = value.next()?;
    (entry.is_done() && value.is_done()).then_some((key, arm, bytes))
}

/// The bytes used by a varint length and the body it announces at the start of `bytes`, and
/// that body, if it lies whole there.
#[inline]
pub(crate) fn length_prefixed(bytes: &[u8]) -> Option<(usize, &[u8])> {
    // The lengths on the write path (names, values, keys, entries) nearly all take one or two
    // bytes: those are read here, anything longer by prost's varint decoder.
    let (header, len) = match *bytes {
        [b0, ..] if b0 < 0x80 => (1, usize::from(b0)),
        [b0, b1, ..] if b1 < 0x80 => (2, usize::from(b0 & 0x7f) | usize::from(b1) << 7),
        _ => return long_length_prefixed(bytes),
    };
    let body = bytes.get(header..header + len)?;
    Some((header + len, body))
}

/// [`length_prefixed`] for any varint length.
#[inline(never)]
fn long_length_prefixed(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let mut rest = bytes;
    let len = usize::try_from(decode_varint(&mut rest).ok()?).ok()?;
    let header = bytes.len() - rest.len();
    // The body is taken first: a length near `usize::MAX` ends here instead of in the sum.
    let body = rest.get(..len)?;
    Some((header + body.len(), body))
}

/// `bytes` as an owned string, if they are UTF-8.
#[inline]
pub(crate) fn utf8(bytes: &[u8]) -> Option<String> {
    // Names and values are short and nearly always ASCII, which the general check spends
    // several times longer on than this one.
    if bytes.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8.
        return Some(unsafe { std::str::from_utf8_unchecked(bytes) }.to_owned());
    }
    std::str::from_utf8(bytes).ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_length_prefix_reads_only_a_body_that_lies_whole_in_the_input() {
        assert_eq!(length_prefixed(&[3, b'a', b'b', b'c', 9]), Some((4, &b"abc"[..])));
        assert_eq!(length_prefixed(&[4, b'a', b'b', b'c']), None);
        assert_eq!(length_prefixed(&[0x80]), None, "a varint cut short");
        // The largest length a varint holds: refused without arithmetic on it (the fuzz smoke
        // found the sum overflowing in a build with overflow checks).
        let mut huge = vec![0xff; 9];
        huge.extend([0x01, b'a']);
        assert_eq!(length_prefixed(&huge), None);
    }

    #[test]
    fn short_lengths_read_as_the_general_varint_reader_reads_them() {
        let mut inputs: Vec<Vec<u8>> = vec![
            vec![],
            vec![0x80],
            vec![0x80, 0x00],
            vec![0xff, 0x00, 1],
            vec![0x80, 0x80, 0x00],
            vec![0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00],
        ];
        for len in [0usize, 1, 2, 126, 127, 128, 129, 300, 16_383, 16_384, 16_385, 70_000] {
            let mut header = Vec::new();
            prost::encoding::encode_varint(len as u64, &mut header);
            for body_len in [len.saturating_sub(1), len, len + 3] {
                let mut bytes = header.clone();
                bytes.extend((0..body_len).map(|i| i as u8));
                inputs.push(bytes);
            }
        }
        for bytes in &inputs {
            assert_eq!(length_prefixed(bytes), long_length_prefixed(bytes), "{:02x?}", &bytes[..bytes.len().min(12)]);
        }
        assert_eq!(length_prefixed(&[0x80, 0x00]), Some((2, &[][..])), "a two-byte zero is still a length");
        assert_eq!(length_prefixed(&[0xac, 0x02]), None, "300 bytes announced, none there");
    }

    #[test]
    fn strings_are_checked_as_utf8_whether_ascii_or_not() {
        assert_eq!(utf8(b"author-42").as_deref(), Some("author-42"));
        assert_eq!(utf8("Ẹ̀kọ́ ilé".as_bytes()).as_deref(), Some("Ẹ̀kọ́ ilé"));
        assert_eq!(utf8(b""), Some(String::new()));
        assert_eq!(utf8(&[b'a', 0xff]), None);
        assert_eq!(utf8(&[0xc3]), None, "a sequence cut short");
        assert_eq!(utf8(&[0xed, 0xa0, 0x80]), None, "a surrogate");
    }

    #[test]
    fn fields_are_read_in_order_and_anything_else_ends_the_reading() {
        let bytes = [0x0a, 1, b'x', 0x12, 2, b'y', b'z'];
        let mut fields = Fields(&bytes);
        assert_eq!(fields.optional_body(2), Some(None), "field 1 comes first: 2 is absent here");
        assert_eq!(fields.next_body(1), Some(&b"x"[..]));
        assert_eq!(fields.optional_body(2), Some(Some(&b"yz"[..])));
        assert!(fields.is_done());
        assert_eq!(fields.optional_body(2), Some(None), "nothing left: absent");

        assert_eq!(Fields(&[0x08, 1]).next(), None, "a varint field is not length-delimited");
        assert_eq!(Fields(&[0x82, 0x01, 0]).next(), None, "a two-byte key (field 16)");
        assert_eq!(Fields(&[0x0a, 5, b'x']).optional_body(1), None, "a body cut short");
        assert_eq!(Fields(&bytes).next_body(2), None, "the wrong field first");
    }
}

/// Damaging encoded bytes in tests, to check a fast decoder against prost on what it rejects.
#[cfg(test)]
pub(crate) mod damage {
    use proptest::prelude::*;

    /// Up to `max` edits: where, which byte, and how (overwrite, truncate, insert).
    pub(crate) fn edits(max: usize) -> impl Strategy<Value = Vec<(prop::sample::Index, u8, u8)>> {
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..=max)
    }

    /// `bytes` with `edits` applied in order.
    pub(crate) fn apply(mut bytes: Vec<u8>, edits: Vec<(prop::sample::Index, u8, u8)>) -> Vec<u8> {
        for (at, byte, how) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match how {
                0 => bytes[i] = byte,
                1 => bytes.truncate(i),
                _ => bytes.insert(i, byte),
            }
        }
        bytes
    }
}
