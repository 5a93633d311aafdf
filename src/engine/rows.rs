//! Fixed-width rows of `f32` (a store's vectors, or its norms) kept in shared chunks of about
//! 1 MiB. Cloning copies only the list of chunks; a write copies the one chunk it lands in if
//! a clone still shares it. So a snapshot capture, which clones a store, makes the next writes
//! to that store pay for the chunks they touch instead of for every vector.
//!
//! A chunk may also be borrowed from read-only bytes that something else owns (the mapped
//! snapshot a store was restored from, see [`Backing`]): it is read in place, and copied to the
//! heap only when first written, as a shared chunk is.

use std::fmt;
use std::sync::Arc;

use rkyv::rend::f32_le;

/// Floats per chunk at most (1 MiB).
const CHUNK_FLOATS: usize = 1 << 18;

/// Read-only bytes that stay unchanged for as long as anything holds them (a mapped snapshot
/// file, which is never modified once written); rows restored from it are read in place.
pub trait Backing: Send + Sync + 'static {
    /// The bytes.
    fn bytes(&self) -> &[u8];
}

/// Rows of `width` floats, addressed by row number.
#[derive(Clone, Debug)]
pub struct Rows {
    width: usize,
    /// log2 of the rows per chunk (a power of two, so a row never straddles two chunks).
    shift: u32,
    chunks: Vec<Chunk>,
    len: usize,
}

/// Where one chunk's floats are.
#[derive(Clone, Debug)]
enum Chunk {
    /// On the heap, shared with clones until written.
    Owned(Arc<Vec<f32>>),
    /// In place in a [`Backing`].
    Borrowed(Borrowed),
}

/// `len` floats at byte `offset` of `backing`, checked when made to lie inside it, on a
/// little-endian host (the archive's byte order).
#[derive(Clone)]
struct Borrowed {
    backing: Arc<dyn Backing>,
    offset: usize,
    len: usize,
}

// An archived float has the size and alignment of a native one, so a slice of them, on a
// little-endian host, can be read as `f32`s.
const _: () = assert!(
    std::mem::size_of::<f32_le>() == std::mem::size_of::<f32>()
        && std::mem::align_of::<f32_le>() >= std::mem::align_of::<f32>()
);

impl Borrowed {
    /// The floats `values`, if they lie inside `backing` and the host is little-endian.
    fn new(backing: &Arc<dyn Backing>, values: &[f32_le]) -> Option<Self> {
        let whole = backing.bytes().as_ptr_range();
        let part = values.as_ptr_range();
        let (start, end) = (part.start.cast::<u8>(), part.end.cast::<u8>());
        let in_place = cfg!(target_endian = "little") && whole.start <= start && end <= whole.end;
        in_place.then(|| Self {
            backing: backing.clone(),
            offset: start as usize - whole.start as usize,
            len: values.len(),
        })
    }

    fn floats(&self) -> &[f32] {
        let bytes = &self.backing.bytes()[self.offset..self.offset + self.len * 4];
        // SAFETY: `new` checked that these bytes hold `len` archived floats (so they are aligned
        // for `f32`, see the assertion above) and that the host is little-endian, as the archive
        // is; every bit pattern is a valid `f32`; the backing never changes, and the slice
        // borrows `self`, which keeps it alive.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), self.len) }
    }
}

impl fmt::Debug for Borrowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Borrowed {{ offset: {}, len: {} }}", self.offset, self.len)
    }
}

impl Chunk {
    fn floats(&self) -> &[f32] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Borrowed(b) => b.floats(),
        }
    }

    /// The floats, to write: copied to the heap first if borrowed or shared (with room for
    /// `capacity` floats when copied from a borrowed chunk).
    fn floats_mut(&mut self, capacity: usize) -> &mut Vec<f32> {
        if let Chunk::Borrowed(b) = self {
            let floats = b.floats();
            let mut owned = Vec::with_capacity(capacity.max(floats.len()));
            owned.extend_from_slice(floats);
            *self = Chunk::Owned(Arc::new(owned));
        }
        match self {
            Chunk::Owned(v) => Arc::make_mut(v),
            Chunk::Borrowed(_) => unreachable!("a borrowed chunk was just replaced by an owned one"),
        }
    }
}

/// A chunk of its own holding `part`'s floats (a plain map over a slice: a straight copy).
fn copied(part: &[f32_le]) -> Chunk {
    Chunk::Owned(Arc::new(part.iter().map(|x| x.to_native()).collect()))
}

impl Rows {
    /// No rows; every row will be `width` floats (`width >= 1`).
    pub fn new(width: usize) -> Self {
        let width = width.max(1);
        let per_chunk = (CHUNK_FLOATS / width).max(1);
        // The largest power of two not above `per_chunk`.
        let shift = usize::BITS - 1 - per_chunk.leading_zeros();
        Self { width, shift, chunks: Vec::new(), len: 0 }
    }

    /// Rows of `width` copied from archived little-endian floats (whose count must be a
    /// multiple of it).
    pub fn from_archived(width: usize, values: &[f32_le]) -> Self {
        Self::from_parts(width, values, copied)
    }

    /// Like [`Rows::from_archived`], but read in place where the values lie inside `backing`
    /// (copied where they cannot be: a big-endian host, or values outside it).
    pub fn from_backing(width: usize, backing: &Arc<dyn Backing>, values: &[f32_le]) -> Self {
        Self::from_parts(width, values, |part| {
            Borrowed::new(backing, part).map_or_else(|| copied(part), Chunk::Borrowed)
        })
    }

    fn from_parts(width: usize, values: &[f32_le], mut chunk_of: impl FnMut(&[f32_le]) -> Chunk) -> Self {
        let mut rows = Self::new(width);
        let per_chunk = rows.rows_per_chunk() * rows.width;
        for part in values.chunks(per_chunk) {
            rows.len += part.len() / rows.width;
            rows.chunks.push(chunk_of(part));
        }
        rows
    }

    fn rows_per_chunk(&self) -> usize {
        1 << self.shift
    }

    /// Number of rows.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }

    /// Row `i` (`i < len`).
    pub fn row(&self, i: usize) -> &[f32] {
        let start = (i & (self.rows_per_chunk() - 1)) * self.width;
        &self.chunks[i >> self.shift].floats()[start..start + self.width]
    }

    /// Overwrites row `i` (`i < len`) with `values` (exactly `width` floats).
    pub fn set_row(&mut self, i: usize, values: &[f32]) {
        let start = (i & (self.rows_per_chunk() - 1)) * self.width;
        let (width, capacity) = (self.width, self.rows_per_chunk() * self.width);
        self.chunks[i >> self.shift].floats_mut(capacity)[start..start + width].copy_from_slice(values);
    }

    /// Appends a row (exactly `width` floats); returns its number.
    pub fn push_row(&mut self, values: &[f32]) -> usize {
        let i = self.len;
        let capacity = self.rows_per_chunk() * self.width;
        if i & (self.rows_per_chunk() - 1) == 0 {
            // Sized once: a chunk never grows by copying itself (its pages are only touched
            // as rows land in them).
            self.chunks.push(Chunk::Owned(Arc::new(Vec::with_capacity(capacity))));
        }
        let last = self.chunks.len() - 1;
        self.chunks[last].floats_mut(capacity).extend_from_slice(values);
        self.len += 1;
        i
    }

    /// The rows chunk by chunk: each chunk's first row number and its floats (whole rows).
    pub fn chunks(&self) -> impl Iterator<Item = (usize, &[f32])> + '_ {
        self.chunks.iter().enumerate().map(|(c, chunk)| (c << self.shift, chunk.floats()))
    }

    /// Rows `first..first + count` as one slice, if they lie in one chunk.
    pub fn span(&self, first: usize, count: usize) -> Option<&[f32]> {
        let chunk = self.chunks.get(first >> self.shift)?;
        let start = (first & (self.rows_per_chunk() - 1)) * self.width;
        chunk.floats().get(start..start + count * self.width)
    }

    /// How many floats the rows hold in all.
    pub fn float_count(&self) -> usize {
        self.len * self.width
    }

    /// Every row's floats, in order, in one vector.
    pub fn to_vec(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.float_count());
        for c in &self.chunks {
            out.extend_from_slice(c.floats());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_back_across_chunk_boundaries() {
        let width = 3000; // 87 rows per 2^18 floats, so 64 rows per chunk
        let mut rows = Rows::new(width);
        for i in 0..200 {
            assert_eq!(rows.push_row(&vec![i as f32; width]), i);
        }
        assert_eq!(rows.chunks.len(), 4);
        for i in [0, 63, 64, 127, 128, 199] {
            assert!(rows.row(i).iter().all(|x| *x == i as f32), "row {i}");
        }
        rows.set_row(64, &vec![-1.0; width]);
        assert_eq!(rows.row(64)[0], -1.0);
        assert_eq!(rows.row(63)[0], 63.0);
        let archived: Vec<f32_le> = rows.to_vec().into_iter().map(f32_le::from_native).collect();
        let back = Rows::from_archived(width, &archived);
        assert_eq!(back.len(), 200);
        assert_eq!(back.to_vec(), rows.to_vec());
    }

    #[test]
    fn a_clone_shares_chunks_until_one_is_written() {
        let mut rows = Rows::new(1);
        for i in 0..(3 << 18) {
            rows.push_row(&[i as f32]);
        }
        let snapshot = rows.clone();
        rows.set_row(5, &[-5.0]);
        rows.push_row(&[7.0]);
        assert_eq!(snapshot.row(5), &[5.0]);
        assert_eq!(snapshot.len(), 3 << 18);
        assert_eq!(rows.row(5), &[-5.0]);
        // Only the written chunk was copied; the others are still shared.
        let shared = rows
            .chunks
            .iter()
            .zip(&snapshot.chunks)
            .filter(|(a, b)| matches!((a, b), (Chunk::Owned(a), Chunk::Owned(b)) if Arc::ptr_eq(a, b)))
            .count();
        assert_eq!(shared, 2);
    }

    struct Archive(rkyv::util::AlignedVec);

    impl Backing for Archive {
        fn bytes(&self) -> &[u8] {
            &self.0
        }
    }

    fn archived(values: &[f32]) -> Arc<dyn Backing> {
        Arc::new(Archive(rkyv::to_bytes::<rkyv::rancor::Error>(&values.to_vec()).expect("archive")))
    }

    fn floats_in(backing: &Arc<dyn Backing>) -> &[f32_le] {
        rkyv::access::<rkyv::Archived<Vec<f32>>, rkyv::rancor::Error>(backing.bytes()).expect("access").as_slice()
    }

    #[test]
    fn backed_rows_are_read_in_place_and_copied_only_where_written() {
        // Two full chunks and part of a third.
        let values: Vec<f32> = (0..(2 << 18) + 5).map(|i| i as f32).collect();
        let backing = archived(&values);
        let mut rows = Rows::from_backing(1, &backing, floats_in(&backing));
        assert!(rows.chunks.iter().all(|c| matches!(c, Chunk::Borrowed(_))));
        assert_eq!(rows.to_vec(), values);
        let before = rows.clone();

        rows.set_row(3, &[-3.0]);
        rows.push_row(&[-1.0]); // into the borrowed, partly filled last chunk
        assert_eq!((rows.row(3), rows.row(4)), (&[-3.0][..], &[4.0][..]));
        assert_eq!(rows.row(values.len()), &[-1.0]);
        assert_eq!(rows.row((2 << 18) + 4), &[((2 << 18) + 4) as f32]);
        let kinds: Vec<bool> = rows.chunks.iter().map(|c| matches!(c, Chunk::Borrowed(_))).collect();
        assert_eq!(kinds, [false, true, false], "only the chunks written were copied");
        // Neither the backing nor a clone taken before the writes changed.
        assert_eq!(floats_in(&backing)[3].to_native(), 3.0);
        assert_eq!(before.to_vec(), values);
    }

    #[test]
    fn values_outside_the_backing_are_copied() {
        let values: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        let (backing, elsewhere) = (archived(&values), archived(&values));
        let rows = Rows::from_backing(10, &elsewhere, floats_in(&backing));
        assert!(rows.chunks.iter().all(|c| matches!(c, Chunk::Owned(_))));
        assert_eq!(rows.to_vec(), values);
    }
}
