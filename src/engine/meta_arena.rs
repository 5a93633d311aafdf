//! The metadata of a store's entries, encoded back to back in shared byte chunks of about
//! 1 MiB, with a span per slot: no allocation per entry, and a snapshot capture shares the
//! chunks. Encodings are only appended, never written in place, so a write after a capture
//! copies at most the last chunk, to append to it. A snapshot writes the chunks as one block
//! and a restore reads that block back as one chunk (which is full: appends go to new ones).
//! Overwritten encodings become garbage, reclaimed by compacting when
//! garbage outweighs live bytes.
//!
//! Encoding of one entry's metadata (little-endian; pairs in key order, as `Metadata` iterates):
//!
//! | size | field                                              |
//! |-----:|----------------------------------------------------|
//! |    4 | pair count `n`                                     |
//! |      | then `n` times:                                    |
//! |    4 | key length `k`                                     |
//! |    k | key, UTF-8                                         |
//! |    1 | value kind: 1 text, 2 image, 3 audio               |
//! |    4 | value length `v`                                   |
//! |    v | value bytes (UTF-8 for text)                       |
//!
//! Decoding is total: bytes that do not follow the layout read as no metadata, never a panic.

use std::sync::Arc;

use super::chunked::{ChunkedVec, own};
use super::types::{Metadata, MetadataValue};

/// A metadata value borrowed from the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueRef<'a> {
    /// Text.
    Text(&'a str),
    /// Image bytes.
    Image(&'a [u8]),
    /// Audio bytes.
    Audio(&'a [u8]),
}

impl ValueRef<'_> {
    /// An owned copy.
    pub fn to_owned_value(self) -> MetadataValue {
        match self {
            ValueRef::Text(s) => MetadataValue::RawString(s.to_owned()),
            ValueRef::Image(b) => MetadataValue::Image(b.to_vec()),
            ValueRef::Audio(b) => MetadataValue::Audio(b.to_vec()),
        }
    }

    /// Whether it equals `v`.
    pub fn eq_value(self, v: &MetadataValue) -> bool {
        match (self, v) {
            (ValueRef::Text(a), MetadataValue::RawString(b)) => a == b,
            (ValueRef::Image(a), MetadataValue::Image(b)) | (ValueRef::Audio(a), MetadataValue::Audio(b)) => a == b,
            _ => false,
        }
    }
}

/// Where one slot's encoding is: `len` bytes at `offset` in chunk `chunk`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) offset: u64,
    pub(super) chunk: u32,
    pub(super) len: u32,
}

/// Compaction runs once garbage exceeds both this many bytes and the live bytes.
const COMPACT_MIN_GARBAGE: usize = 1 << 16;

/// The capacity of a new chunk (an encoding larger than this gets a chunk of its own size).
const CHUNK_BYTES: usize = 1 << 20;

/// Every slot's metadata.
#[derive(Clone, Debug, Default)]
pub struct MetaArena {
    chunks: Vec<Arc<Vec<u8>>>,
    spans: ChunkedVec<Option<Span>>,
    /// Bytes in `chunks` (their lengths, not their spare capacity).
    written: usize,
    garbage: usize,
}

/// A [`MetaArena`] as one block: the encodings, each slot's span as an offset into the block
/// and a length (`None` for a slot without an entry), and the bytes no span covers.
#[cfg(test)]
#[derive(Debug, PartialEq, Eq)]
pub(super) struct FlatArena {
    pub(super) bytes: Vec<u8>,
    pub(super) spans: Vec<Option<(u64, u32)>>,
    pub(super) garbage: usize,
}

/// Bytes of an encoding besides its pairs' keys and values: the pair count.
const COUNT_BYTES: usize = 4;

/// Bytes of each pair's encoding besides its key and value: their lengths and the kind.
const PAIR_OVERHEAD: usize = 4 + 1 + 4;

/// The length of the encoding of `pairs` pairs whose keys and values take
/// `key_and_value_bytes` in all.
fn encoded_len(pairs: usize, key_and_value_bytes: usize) -> usize {
    COUNT_BYTES + PAIR_OVERHEAD * pairs + key_and_value_bytes
}

/// The bytes of `m`'s keys and values: what a store charges for its metadata.
pub(super) fn key_and_value_bytes(m: &Metadata) -> usize {
    m.iter().map(|(k, v)| pair_bytes(k, v)).sum()
}

/// The bytes of one key and its value, as [`key_and_value_bytes`] counts them.
pub(super) fn pair_bytes(key: &str, value: &MetadataValue) -> usize {
    key.len() + value.accounted_bytes()
}

fn encode(m: &Metadata, out: &mut Vec<u8>) {
    out.extend_from_slice(&(m.len() as u32).to_le_bytes());
    for (k, v) in m {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k.as_bytes());
        let (kind, bytes) = match v {
            MetadataValue::RawString(s) => (1u8, s.as_bytes()),
            MetadataValue::Image(b) => (2, b.as_slice()),
            MetadataValue::Audio(b) => (3, b.as_slice()),
        };
        out.push(kind);
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    }
}

/// Reads pairs from one entry's encoding; stops at the first byte that breaks the layout.
struct Pairs<'a> {
    rest: &'a [u8],
    left: u32,
}

impl<'a> Pairs<'a> {
    fn new(encoded: &'a [u8]) -> Self {
        match encoded.split_first_chunk::<4>() {
            Some((n, rest)) => Self { rest, left: u32::from_le_bytes(*n) },
            None => Self { rest: &[], left: 0 },
        }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    fn take_u32(&mut self) -> Option<usize> {
        self.take(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn pair(&mut self) -> Option<(&'a str, ValueRef<'a>)> {
        let klen = self.take_u32()?;
        let key = std::str::from_utf8(self.take(klen)?).ok()?;
        let kind = *self.take(1)?.first()?;
        let vlen = self.take_u32()?;
        let raw = self.take(vlen)?;
        let value = match kind {
            1 => ValueRef::Text(std::str::from_utf8(raw).ok()?),
            2 => ValueRef::Image(raw),
            3 => ValueRef::Audio(raw),
            _ => return None,
        };
        Some((key, value))
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a str, ValueRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let pair = self.pair();
        if pair.is_none() {
            self.left = 0;
        }
        pair
    }
}

impl MetaArena {
    /// An arena over `bytes` (one chunk), with `spans` into it (`chunk` 0) and `garbage` bytes
    /// in it that no span covers. The caller has checked that every span lies inside `bytes`.
    pub(super) fn from_parts(bytes: Vec<u8>, spans: ChunkedVec<Option<Span>>, garbage: usize) -> Self {
        Self { written: bytes.len(), chunks: vec![Arc::new(bytes)], spans, garbage }
    }

    /// The arena as one block of bytes.
    #[cfg(test)]
    pub(super) fn flatten(&self) -> FlatArena {
        let mut bytes = Vec::with_capacity(self.written);
        self.chunks.iter().for_each(|c| bytes.extend_from_slice(c));
        FlatArena { bytes, spans: self.flat_spans(), garbage: self.garbage }
    }

    /// The encodings' chunks, shared: [`MetaArena::flatten`]'s block in parts.
    pub(super) fn shared_chunks(&self) -> Vec<Arc<Vec<u8>>> {
        self.chunks.clone()
    }

    /// Each slot's span in [`MetaArena::flatten`]'s block, without making the block.
    pub(super) fn flat_spans(&self) -> Vec<Option<(u64, u32)>> {
        let mut bases = Vec::with_capacity(self.chunks.len());
        let mut base = 0;
        for chunk in &self.chunks {
            bases.push(base);
            base += chunk.len() as u64;
        }
        self.spans.iter().map(|s| s.map(|s| (bases[s.chunk as usize] + s.offset, s.len))).collect()
    }

    /// Bytes no live span covers.
    pub(super) fn garbage(&self) -> usize {
        self.garbage
    }

    /// Adds an empty (not live) slot at the end.
    pub fn push_slot(&mut self) {
        self.spans.push(None);
    }

    /// Whether `slot` holds an entry.
    pub fn is_live(&self, slot: u32) -> bool {
        self.spans.get(slot as usize).is_some_and(Option::is_some)
    }

    /// The live slots, ascending.
    pub fn live_slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.spans.iter().enumerate().filter(|(_, s)| s.is_some()).map(|(i, _)| i as u32)
    }

    /// [`MetaArena::set_counted`], counting the bytes itself.
    #[cfg(test)]
    fn set(&mut self, slot: u32, m: &Metadata) {
        self.set_counted(slot, m, key_and_value_bytes(m));
    }

    /// Stores `m` as the metadata of `slot`, making it live. The caller has counted the bytes
    /// of `m`'s keys and values already (a store's accounting does: see `entry_bytes`), so
    /// that `m` is walked only to encode it; a wrong count costs a copy of a chunk, never a
    /// wrong encoding.
    pub fn set_counted(&mut self, slot: u32, m: &Metadata, key_and_value_bytes: usize) {
        let span = self.append(encoded_len(m.len(), key_and_value_bytes), |out| encode(m, out));
        if let Some(old) = self.spans[slot as usize].replace(span) {
            self.garbage += old.len as usize;
        }
        self.maybe_compact();
    }

    /// Appends what `write` puts at the end of the vector it is given, which has room for
    /// `room` more bytes: in the last chunk if it has that room (copied first if a capture
    /// shares it), else in a new one.
    fn append(&mut self, room: usize, write: impl FnOnce(&mut Vec<u8>)) -> Span {
        let fits = |c: &Arc<Vec<u8>>| c.capacity() - c.len() >= room;
        if !self.chunks.last().is_some_and(fits) {
            self.chunks.push(Arc::new(Vec::with_capacity(CHUNK_BYTES.max(room))));
        }
        let chunk = self.chunks.len() - 1;
        let last = &mut self.chunks[chunk];
        let capacity = last.capacity();
        let out = own(last, capacity);
        let offset = out.len();
        write(out);
        let len = out.len() - offset;
        self.written += len;
        Span { offset: offset as u64, chunk: chunk as u32, len: len as u32 }
    }

    /// Bytes the metadata of `slot` is charged (keys and values), without decoding it whole.
    pub fn accounted_bytes(&self, slot: u32) -> usize {
        self.pairs(slot)
            .map(|(k, v)| {
                k.len()
                    + match v {
                        ValueRef::Text(s) => s.len(),
                        ValueRef::Image(b) | ValueRef::Audio(b) => b.len(),
                    }
            })
            .sum()
    }

    /// Makes `slot` not live.
    pub fn clear(&mut self, slot: u32) {
        self.release(slot);
        self.maybe_compact();
    }

    fn release(&mut self, slot: u32) {
        if let Some(span) = self.spans.get_mut(slot as usize).and_then(Option::take) {
            self.garbage += span.len as usize;
        }
    }

    fn encoded(&self, slot: u32) -> Option<&[u8]> {
        let span = (*self.spans.get(slot as usize)?)?;
        let start = span.offset as usize;
        self.chunks.get(span.chunk as usize)?.get(start..start + span.len as usize)
    }

    /// The pairs of `slot`, borrowed, in key order (none if not live).
    pub fn pairs(&self, slot: u32) -> impl Iterator<Item = (&str, ValueRef<'_>)> {
        Pairs::new(self.encoded(slot).unwrap_or(&[]))
    }

    /// The value of `key` in `slot`, borrowed.
    pub fn value_of(&self, slot: u32, key: &str) -> Option<ValueRef<'_>> {
        self.pairs(slot).find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// An owned copy of the metadata of `slot`, if live.
    pub fn get(&self, slot: u32) -> Option<Metadata> {
        self.encoded(slot)?;
        Some(self.pairs(slot).map(|(k, v)| (k.to_owned(), v.to_owned_value())).collect())
    }

    /// Rewrites live encodings back to back, in slot order, into new chunks when garbage
    /// dominates.
    fn maybe_compact(&mut self) {
        if self.garbage < COMPACT_MIN_GARBAGE || self.garbage < self.written - self.garbage {
            return;
        }
        let old = std::mem::take(&mut self.chunks);
        self.written = 0;
        self.garbage = 0;
        for slot in 0..self.spans.len() {
            let Some(span) = self.spans[slot] else { continue };
            let start = span.offset as usize;
            let bytes = &old[span.chunk as usize][start..start + span.len as usize];
            let moved = self.append(bytes.len(), |out| out.extend_from_slice(bytes));
            self.spans[slot] = Some(moved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_lookups() {
        let mut a = MetaArena::default();
        for _ in 0..3 {
            a.push_slot();
        }
        let m: Metadata = Metadata::from([
            ("a".to_string(), MetadataValue::RawString("x".into())),
            ("b".to_string(), MetadataValue::Image(vec![1, 2])),
            ("c".to_string(), MetadataValue::Audio(vec![])),
        ]);
        a.set(1, &m);
        a.set(2, &Metadata::new());
        assert_eq!(a.get(1), Some(m));
        assert_eq!(a.get(2), Some(Metadata::new()));
        assert_eq!(a.get(0), None);
        assert_eq!(a.value_of(1, "b"), Some(ValueRef::Image(&[1, 2])));
        assert_eq!(a.value_of(1, "z"), None);
        assert_eq!(a.live_slots().collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn a_wrong_byte_count_still_stores_the_right_encoding() {
        let m = |i: usize| {
            Metadata::from([
                ("author".to_string(), MetadataValue::RawString(format!("author-{i}"))),
                ("blob".to_string(), MetadataValue::Image(vec![i as u8; i % 300])),
            ])
        };
        let mut right = MetaArena::default();
        let mut wrong = MetaArena::default();
        // Enough to fill a chunk, so that short counts overrun its room.
        let slots = 2 * CHUNK_BYTES / 200;
        for i in 0..slots {
            right.push_slot();
            wrong.push_slot();
            right.set(i as u32, &m(i));
            let counted = key_and_value_bytes(&m(i));
            wrong.set_counted(i as u32, &m(i), [0, counted / 2, counted * 3][i % 3]);
        }
        for i in 0..slots {
            assert_eq!(wrong.get(i as u32), Some(m(i)), "slot {i}");
            assert_eq!(wrong.encoded(i as u32), right.encoded(i as u32), "slot {i}");
        }
    }

    #[test]
    fn compaction_keeps_live_values() {
        let mut a = MetaArena::default();
        a.push_slot();
        a.push_slot();
        let big = |i: u8| Metadata::from([("k".to_string(), MetadataValue::Image(vec![i; 10_000]))]);
        a.set(0, &big(0));
        for i in 0..50 {
            a.set(1, &big(i));
        }
        a.clear(1);
        // 51 encodings of ~10 KB were written; garbage never exceeds the compaction threshold
        // plus one encoding before it is reclaimed.
        let one = 10_000 + 32;
        assert!(a.written <= one + COMPACT_MIN_GARBAGE + one, "{} bytes kept", a.written);
        assert_eq!(a.get(0), Some(big(0)));
        assert_eq!(a.get(1), None);
    }

    #[test]
    fn a_write_after_a_clone_copies_only_the_last_chunk_and_leaves_the_clone_as_it_was() {
        let mut a = MetaArena::default();
        let m = |i: u32| Metadata::from([("k".to_string(), MetadataValue::RawString(format!("value {i}")))]);
        for i in 0..50_000 {
            a.push_slot();
            a.set(i, &m(i));
        }
        assert!(a.chunks.len() > 1, "the test needs several chunks");
        let captured = a.clone();
        a.set(7, &m(1_000_007));
        a.clear(8);
        assert_eq!((captured.get(7), captured.get(8)), (Some(m(7)), Some(m(8))));
        assert_eq!((a.get(7), a.get(8)), (Some(m(1_000_007)), None));
        // Only the last chunk was copied, to append the new encoding to it.
        let shared = captured.chunks.iter().zip(&a.chunks).filter(|(x, y)| Arc::ptr_eq(x, y)).count();
        assert_eq!((shared, a.chunks.len()), (captured.chunks.len() - 1, captured.chunks.len()));
    }

    #[test]
    fn parts_round_trip_as_one_chunk() {
        let mut a = MetaArena::default();
        let big = Metadata::from([("k".to_string(), MetadataValue::Image(vec![9; CHUNK_BYTES + 1]))]);
        let small = Metadata::from([("k".to_string(), MetadataValue::RawString("s".into()))]);
        for _ in 0..4 {
            a.push_slot();
        }
        a.set(0, &small);
        a.set(1, &big);
        a.set(3, &small);
        a.set(0, &big);
        let FlatArena { bytes, spans, garbage } = a.flatten();
        assert_eq!(bytes.len(), a.written);
        let spans: ChunkedVec<Option<Span>> =
            spans.into_iter().map(|s| s.map(|(offset, len)| Span { offset, chunk: 0, len })).collect();
        let b = MetaArena::from_parts(bytes, spans, garbage);
        for slot in 0..4 {
            assert_eq!(b.get(slot), a.get(slot), "slot {slot}");
        }
        assert_eq!(b.flatten(), a.flatten());
    }

    #[test]
    fn garbage_never_panics() {
        for bytes in
            [&[][..], &[5, 0, 0, 0], &[1, 0, 0, 0, 255, 255, 255, 255], &[1, 0, 0, 0, 1, 0, 0, 0, b'a', 9, 0, 0, 0, 0]]
        {
            assert_eq!(Pairs::new(bytes).count(), 0, "{bytes:?}");
        }
    }
}
