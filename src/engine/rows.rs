//! Fixed-width rows of `f32` (a store's vectors, or its norms) kept in shared chunks of about
//! 1 MiB. Cloning copies only the list of chunks; a write copies the one chunk it lands in if
//! a clone still shares it. So a snapshot capture, which clones a store, makes the next writes
//! to that store pay for the chunks they touch instead of for every vector.

use std::sync::Arc;

/// Floats per chunk at most (1 MiB).
const CHUNK_FLOATS: usize = 1 << 18;

/// Rows of `width` floats, addressed by row number.
#[derive(Clone, Debug)]
pub struct Rows {
    width: usize,
    /// log2 of the rows per chunk (a power of two, so a row never straddles two chunks).
    shift: u32,
    chunks: Vec<Arc<Vec<f32>>>,
    len: usize,
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

    /// Rows of `width` taken in order from `values` (whose length must be a multiple of it).
    pub fn from_values(width: usize, values: impl ExactSizeIterator<Item = f32>) -> Self {
        let mut rows = Self::new(width);
        let per_chunk = rows.rows_per_chunk() * rows.width;
        let total = values.len();
        let mut values = values.peekable();
        while values.peek().is_some() {
            let take = per_chunk.min(total - rows.len * rows.width);
            let chunk: Vec<f32> = values.by_ref().take(take).collect();
            rows.len += chunk.len() / rows.width;
            rows.chunks.push(Arc::new(chunk));
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
        &self.chunks[i >> self.shift][start..start + self.width]
    }

    /// Overwrites row `i` (`i < len`) with `values` (exactly `width` floats).
    pub fn set_row(&mut self, i: usize, values: &[f32]) {
        let start = (i & (self.rows_per_chunk() - 1)) * self.width;
        let width = self.width;
        Arc::make_mut(&mut self.chunks[i >> self.shift])[start..start + width].copy_from_slice(values);
    }

    /// Appends a row (exactly `width` floats); returns its number.
    pub fn push_row(&mut self, values: &[f32]) -> usize {
        let i = self.len;
        if i & (self.rows_per_chunk() - 1) == 0 {
            // Sized once: a chunk never grows by copying itself (its pages are only touched
            // as rows land in them).
            self.chunks.push(Arc::new(Vec::with_capacity(self.rows_per_chunk() * self.width)));
        }
        let last = self.chunks.len() - 1;
        Arc::make_mut(&mut self.chunks[last]).extend_from_slice(values);
        self.len += 1;
        i
    }

    /// The rows chunk by chunk: each chunk's first row number and its floats (whole rows).
    pub fn chunks(&self) -> impl Iterator<Item = (usize, &[f32])> + '_ {
        self.chunks.iter().enumerate().map(|(c, chunk)| (c << self.shift, chunk.as_slice()))
    }

    /// Rows `first..first + count` as one slice, if they lie in one chunk.
    pub fn span(&self, first: usize, count: usize) -> Option<&[f32]> {
        let chunk = self.chunks.get(first >> self.shift)?;
        let start = (first & (self.rows_per_chunk() - 1)) * self.width;
        chunk.get(start..start + count * self.width)
    }

    /// Every row's floats, in order, in one vector.
    pub fn to_vec(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.len * self.width);
        for c in &self.chunks {
            out.extend_from_slice(c);
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
        let back = Rows::from_values(width, rows.to_vec().into_iter());
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
        let shared = rows.chunks.iter().zip(&snapshot.chunks).filter(|(a, b)| Arc::ptr_eq(a, b)).count();
        assert_eq!(shared, 2);
    }
}
