//! The bytes of a segment: its header and its records, encoded and checked in one place.
//!
//! Every integer is little-endian. Search for a field's constant (`HEADER_MAGIC`,
//! `RECORD_HEADER_LEN`, …) to find both where it is written and where it is checked.
//!
//! # Segment header (`SEGMENT_HEADER_LEN` = 64 bytes, at offset 0)
//!
//! | offset | size | field                                                              |
//! |-------:|-----:|--------------------------------------------------------------------|
//! |      0 |    8 | magic `b"AHRWAL\0\x01"` (`HEADER_MAGIC`)                            |
//! |      8 |    4 | format version (`FORMAT_VERSION` = 1)                               |
//! |     12 |    8 | segment sequence number (equals the number in the file name)        |
//! |     20 |    8 | first entry index the segment was opened for (informational)        |
//! |     28 |    4 | salt: the CRC seed of every record in this segment                  |
//! |     32 |   28 | reserved, zero                                                      |
//! |     60 |    4 | CRC32 of bytes 0..60                                                |
//!
//! # Record (`RECORD_HEADER_LEN` = 32 bytes, then the payload)
//!
//! | offset | size | field                                                                 |
//! |-------:|-----:|-----------------------------------------------------------------------|
//! |      0 |    4 | CRC32 seeded with the segment salt, over bytes 4..32+len              |
//! |      4 |    4 | payload length `len` (at most `MAX_PAYLOAD_LEN`)                      |
//! |      8 |    8 | index (entry index; first removed index; purge index; meta slot)      |
//! |     16 |    8 | term (entry term; purge term; zero otherwise)                         |
//! |     24 |    4 | batch start: segment offset of the first record of this write batch   |
//! |     28 |    1 | kind: 1 entry, 2 truncate, 3 purge, 4 meta, 5 seal                    |
//! |     29 |    3 | the low 24 bits of the segment salt (`salt_tag`)                      |
//! |     32 |  len | payload                                                               |
//!
//! Records follow each other with no padding. A segment's unused space is zero; a zero
//! record header fails its check (kind 0 is not a kind), so the first zero byte after the last
//! record ends the scan.
//!
//! The salt is chosen at random when a segment is opened, so a record left behind by an earlier
//! use of the same bytes (a recycled segment file) fails the check of the current segment: first
//! cheaply, by its salt tag (1 in 2^24 to pass), then by its checksum (1 in 2^32). The batch start lets
//! recovery tell a torn write (damage inside the last, unsynced batch) from corruption (damage
//! in a batch that a later batch follows, which the writer only starts after the earlier batch
//! was synced): see `recovery`.

use std::fmt;

/// First eight bytes of every segment file.
pub const HEADER_MAGIC: [u8; 8] = *b"AHRWAL\0\x01";
/// On-disk format version written by this code; other versions are refused.
pub const FORMAT_VERSION: u32 = 1;
/// Length of the segment header; the first record starts here.
pub const SEGMENT_HEADER_LEN: usize = 64;
/// Length of a record's fixed header.
pub const RECORD_HEADER_LEN: usize = 32;
/// Largest payload a record may carry. Bounds every allocation made for a record read from disk.
pub const MAX_PAYLOAD_LEN: usize = 256 << 20;
/// Largest offset a segment may reach: batch starts are stored in 32 bits.
pub const MAX_SEGMENT_LEN: u64 = u32::MAX as u64;

/// What a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// A log entry: `index`, `term`, opaque payload.
    Entry = 1,
    /// Every entry with an index ≥ `index` is removed; payload empty.
    Truncate = 2,
    /// Every entry with an index ≤ `index` is purged; `term` is that entry's term.
    Purge = 3,
    /// The latest value of metadata slot `index`; payload is the value.
    Meta = 4,
    /// The segment is closed: nothing follows in this file.
    Seal = 5,
}

impl RecordKind {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Entry,
            2 => Self::Truncate,
            3 => Self::Purge,
            4 => Self::Meta,
            5 => Self::Seal,
            _ => return None,
        })
    }
}

/// A segment header as decoded from disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Sequence number of the segment.
    pub seq: u64,
    /// Next entry index at the time the segment was opened.
    pub first_index: u64,
    /// CRC seed of the segment's records.
    pub salt: u32,
}

impl SegmentHeader {
    /// The 64 header bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(&HEADER_MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..20].copy_from_slice(&self.seq.to_le_bytes());
        b[20..28].copy_from_slice(&self.first_index.to_le_bytes());
        b[28..32].copy_from_slice(&self.salt.to_le_bytes());
        let crc = crc32fast::hash(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a header; the error says which check failed.
    pub fn decode(b: &[u8]) -> Result<Self, &'static str> {
        if b.len() < SEGMENT_HEADER_LEN {
            return Err("file is shorter than a segment header");
        }
        if b[0..8] != HEADER_MAGIC {
            return Err("bad segment magic");
        }
        if crc32fast::hash(&b[0..60]) != u32_at(b, 60) {
            return Err("segment header checksum mismatch");
        }
        let version = u32_at(b, 8);
        if version != FORMAT_VERSION {
            return Err("unsupported segment format version");
        }
        if b[32..60].iter().any(|&x| x != 0) {
            return Err("reserved header bytes are not zero");
        }
        Ok(Self { seq: u64_at(b, 12), first_index: u64_at(b, 20), salt: u32_at(b, 28) })
    }
}

/// A record decoded from a segment, borrowing its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// What the record is.
    pub kind: RecordKind,
    /// Meaning depends on `kind` (see the byte table).
    pub index: u64,
    /// Meaning depends on `kind` (see the byte table).
    pub term: u64,
    /// Segment offset of the first record of the write batch this record belongs to.
    pub batch_start: u32,
    /// The payload bytes.
    pub payload: &'a [u8],
}

impl RecordRef<'_> {
    /// Total encoded length of this record.
    pub fn encoded_len(&self) -> usize {
        RECORD_HEADER_LEN + self.payload.len()
    }
}

/// Why bytes at an offset are not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes end before the record does: more bytes could make it whole.
    Incomplete,
    /// The bytes can never be a valid record.
    Malformed(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Incomplete => f.write_str("record extends past the end of the file"),
            DecodeError::Malformed(why) => f.write_str(why),
        }
    }
}

/// Encodes the records of one segment: holds its salt and a checksum state seeded with it, so
/// that each record costs one header copy, one payload copy and one checksum pass.
#[derive(Clone)]
pub struct RecordEncoder {
    tag: [u8; 3],
    seeded: crc32fast::Hasher,
}

impl RecordEncoder {
    /// An encoder for the segment whose salt is `salt`.
    pub fn new(salt: u32) -> Self {
        Self { tag: salt_tag(salt), seeded: crc32fast::Hasher::new_with_initial(salt) }
    }

    /// Appends one encoded record to `out`.
    pub fn encode(&self, out: &mut Vec<u8>, kind: RecordKind, index: u64, term: u64, batch_start: u32, payload: &[u8]) {
        let start = out.len();
        out.reserve(RECORD_HEADER_LEN + payload.len());
        out.extend_from_slice(&self.unchecked_header(kind, index, term, batch_start, payload.len()));
        out.extend_from_slice(payload);
        // One pass over the contiguous bytes: the fast path needs runs of 64 bytes or more.
        let mut crc = self.seeded.clone();
        crc.update(&out[start + 4..]);
        out[start..start + 4].copy_from_slice(&crc.finalize().to_le_bytes());
    }

    /// Appends to `out` only the header of the record that `payload` completes: the caller
    /// writes `payload` right after it. The bytes equal [`Self::encode`]'s.
    pub fn encode_header(
        &self,
        out: &mut Vec<u8>,
        kind: RecordKind,
        index: u64,
        term: u64,
        batch_start: u32,
        payload: &[u8],
    ) {
        let mut header = self.unchecked_header(kind, index, term, batch_start, payload.len());
        let mut crc = self.seeded.clone();
        crc.update(&header[4..]);
        crc.update(payload);
        header[0..4].copy_from_slice(&crc.finalize().to_le_bytes());
        out.extend_from_slice(&header);
    }

    /// A record header with every field but its checksum, which stays zero.
    fn unchecked_header(
        &self,
        kind: RecordKind,
        index: u64,
        term: u64,
        batch_start: u32,
        payload_len: usize,
    ) -> [u8; RECORD_HEADER_LEN] {
        debug_assert!(payload_len <= MAX_PAYLOAD_LEN);
        let mut header = [0u8; RECORD_HEADER_LEN];
        header[4..8].copy_from_slice(&(payload_len as u32).to_le_bytes());
        header[8..16].copy_from_slice(&index.to_le_bytes());
        header[16..24].copy_from_slice(&term.to_le_bytes());
        header[24..28].copy_from_slice(&batch_start.to_le_bytes());
        header[28] = kind as u8;
        header[29..32].copy_from_slice(&self.tag);
        header
    }
}

/// Appends one encoded record to `out` (see [`RecordEncoder`] to encode many).
pub fn encode_record(
    out: &mut Vec<u8>,
    salt: u32,
    kind: RecordKind,
    index: u64,
    term: u64,
    batch_start: u32,
    payload: &[u8],
) {
    RecordEncoder::new(salt).encode(out, kind, index, term, batch_start, payload);
}

/// Decodes the record at the start of `buf`, checking its frame, its checksum under `salt` and
/// that it claims a batch start no later than `offset` (its own segment offset).
pub fn decode_record(buf: &[u8], salt: u32, offset: u64) -> Result<RecordRef<'_>, DecodeError> {
    if buf.len() < RECORD_HEADER_LEN {
        return Err(DecodeError::Incomplete);
    }
    let kind = RecordKind::from_byte(buf[28]).ok_or(DecodeError::Malformed("unknown record kind"))?;
    if buf[29..32] != salt_tag(salt) {
        return Err(DecodeError::Malformed("record belongs to another segment (salt tag mismatch)"));
    }
    let len = u32_at(buf, 4) as usize;
    if len > MAX_PAYLOAD_LEN {
        return Err(DecodeError::Malformed("record length exceeds the maximum"));
    }
    let batch_start = u32_at(buf, 24);
    if u64::from(batch_start) > offset || (batch_start as usize) < SEGMENT_HEADER_LEN {
        return Err(DecodeError::Malformed("record batch start is out of range"));
    }
    let end = RECORD_HEADER_LEN + len;
    if buf.len() < end {
        return Err(DecodeError::Incomplete);
    }
    let mut h = crc32fast::Hasher::new_with_initial(salt);
    h.update(&buf[4..end]);
    if h.finalize() != u32_at(buf, 0) {
        return Err(DecodeError::Malformed("record checksum mismatch"));
    }
    Ok(RecordRef {
        kind,
        index: u64_at(buf, 8),
        term: u64_at(buf, 16),
        batch_start,
        payload: &buf[RECORD_HEADER_LEN..end],
    })
}

/// The three salt bytes every record of a segment carries at offset 29.
pub fn salt_tag(salt: u32) -> [u8; 3] {
    let b = salt.to_le_bytes();
    [b[0], b[1], b[2]]
}

/// Whether the bytes at the start of `buf` could be a record of the segment with `salt` at
/// `offset` whose batch started after `after`: the cheap checks that come before the checksum.
pub fn plausible_record_start(buf: &[u8], salt: u32, offset: u64) -> bool {
    buf.len() >= RECORD_HEADER_LEN
        && RecordKind::from_byte(buf[28]).is_some()
        && buf[29..32] == salt_tag(salt)
        && (SEGMENT_HEADER_LEN as u64..=offset).contains(&u64::from(u32_at(buf, 24)))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_any_flipped_bit_fails() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 7, RecordKind::Entry, 42, 3, 64, b"hello");
        let rec = decode_record(&buf, 7, 64).expect("valid record");
        assert_eq!((rec.kind, rec.index, rec.term, rec.payload), (RecordKind::Entry, 42, 3, &b"hello"[..]));
        for bit in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_record(&bad, 7, 64).is_err(), "flip of bit {bit} went unnoticed");
        }
        assert!(decode_record(&buf, 8, 64).is_err(), "another salt must not validate");
    }

    #[test]
    fn a_header_written_apart_from_its_payload_is_the_same_record() {
        let encoder = RecordEncoder::new(0x1234_5678);
        for len in [0, 1, 31, 64, 1000, 4097] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut whole = vec![0xee];
            encoder.encode(&mut whole, RecordKind::Entry, 9, 2, 64, &payload);
            let mut apart = vec![0xee];
            encoder.encode_header(&mut apart, RecordKind::Entry, 9, 2, 64, &payload);
            assert_eq!(apart.len(), 1 + RECORD_HEADER_LEN, "only the header is appended");
            apart.extend_from_slice(&payload);
            assert_eq!(apart, whole, "payload of {len} bytes");
        }
    }

    #[test]
    fn truncated_record_is_incomplete_and_zeros_are_malformed() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 1, RecordKind::Meta, 0, 0, 64, &[9; 100]);
        for cut in 0..buf.len() {
            assert_eq!(decode_record(&buf[..cut], 1, 64), Err(DecodeError::Incomplete), "cut at {cut}");
        }
        assert!(matches!(decode_record(&[0u8; 64], 1, 64), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn absurd_length_is_malformed_without_allocating() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 1, RecordKind::Entry, 1, 1, 64, b"x");
        buf[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode_record(&buf, 1, 64), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let h = SegmentHeader { seq: 5, first_index: 100, salt: 0xdead_beef };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        for i in 0..b.len() {
            let mut bad = b;
            bad[i] ^= 0x10;
            assert!(SegmentHeader::decode(&bad).is_err(), "damage at byte {i} went unnoticed");
        }
    }
}
