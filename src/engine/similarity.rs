//! Similarity kernels and ranking. Every sum runs in one fixed order (eight lanes, then a fixed
//! reduction), so the same inputs give bit-identical scores on every replica; ranking uses a
//! total order (scores by `total_cmp`, ties by the keys' bit patterns), so results never depend
//! on insertion history or hash order.

use std::cmp::Ordering;

use super::types::Metric;

const LANES: usize = 8;
const HALF: usize = LANES / 2;

/// Σ aᵢ·bᵢ.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    lane_sum(a, b, |x, y| x * y)
}

/// Σ (aᵢ − bᵢ)².
pub fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    lane_sum(a, b, |x, y| (x - y) * (x - y))
}

/// Σ term(aᵢ, bᵢ) in the fixed order: lane `l` of eight sums components `l`, `l + 8`, …; the
/// lanes reduce pairwise; the tail past the last whole eight is summed apart and added last.
/// The eight lanes are kept as two halves of four, the shape of a vector register, so each
/// step compiles to a few vector instructions with no shuffles.
#[inline(always)]
fn lane_sum(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f32) -> f32 {
    let (mut low, mut high) = ([0f32; HALF], [0f32; HALF]);
    let ((ca, ra), (cb, rb)) = (a.as_chunks::<LANES>(), b.as_chunks::<LANES>());
    for (x, y) in ca.iter().zip(cb) {
        for l in 0..HALF {
            low[l] += term(x[l], y[l]);
            high[l] += term(x[l + HALF], y[l + HALF]);
        }
    }
    let mut tail = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += term(*x, *y);
    }
    // Opaque to the optimiser: otherwise it lays the lanes out for the reduction below and
    // shuffles them on every step of the loop (measured: 19 instructions per eight, not 11).
    let (low, high) = std::hint::black_box((low, high));
    let pairs: [f32; HALF] = std::array::from_fn(|l| low[l] + high[l]);
    ((pairs[0] + pairs[1]) + (pairs[2] + pairs[3])) + tail
}

/// The Euclidean norm.
pub fn norm(a: &[f32]) -> f32 {
    dot(a, a).sqrt()
}

/// The score of `key` for `query` under `metric`. Cosine with a zero-norm stored key is 0.
pub fn score(metric: Metric, query: &[f32], query_norm: f32, key: &[f32], key_norm: f32) -> f32 {
    match metric {
        Metric::Cosine if key_norm == 0.0 || query_norm == 0.0 => 0.0,
        Metric::Cosine => dot(query, key) / (query_norm * key_norm),
        Metric::Euclidean => squared_distance(query, key).sqrt(),
        Metric::DotProduct => dot(query, key),
    }
}

/// Orders two keys by their bit patterns, component by component.
pub fn cmp_key_bits(a: &[f32], b: &[f32]) -> Ordering {
    a.iter().map(|x| x.to_bits()).cmp(b.iter().map(|x| x.to_bits()))
}

/// Orders two scored keys closest first under `metric`; ties by key bits.
pub fn cmp_ranked(metric: Metric, a: (f32, &[f32]), b: (f32, &[f32])) -> Ordering {
    let by_score = if metric.higher_is_closer() { b.0.total_cmp(&a.0) } else { a.0.total_cmp(&b.0) };
    by_score.then_with(|| cmp_key_bits(a.1, b.1))
}

/// The `k` closest of `scored` (slot, score), closest first, looking keys up with `key_of`.
pub fn top_k<'a>(
    metric: Metric,
    mut scored: Vec<(u32, f32)>,
    k: usize,
    key_of: impl Fn(u32) -> &'a [f32],
) -> Vec<(u32, f32)> {
    let cmp = |a: &(u32, f32), b: &(u32, f32)| cmp_ranked(metric, (a.1, key_of(a.0)), (b.1, key_of(b.0)));
    if scored.len() > k && k > 0 {
        scored.select_nth_unstable_by(k - 1, cmp);
        scored.truncate(k);
    }
    scored.truncate(k);
    scored.sort_unstable_by(cmp);
    scored
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum()
    }

    #[test]
    fn kernels_agree_with_a_naive_sum() {
        let a: Vec<f32> = (0..131).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..131).map(|i| (i as f32 * 0.11).cos()).collect();
        assert!((f64::from(dot(&a, &b)) - naive_dot(&a, &b)).abs() < 1e-4);
        let d: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
        assert!((f64::from(squared_distance(&a, &b)) - naive_dot(&d, &d)).abs() < 1e-4);
    }

    #[test]
    fn kernels_sum_in_their_fixed_order() {
        // Lane l sums components l, l + 8, l + 16, …; the lanes reduce pairwise; the tail
        // (past the last whole eight) is summed apart and added last. Replicas rely on it.
        let a: Vec<f32> = (0..131).map(|i| (i as f32 * 0.37).sin() * 1e3).collect();
        let b: Vec<f32> = (0..131).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut lanes = [0f32; LANES];
        let mut distance_lanes = [0f32; LANES];
        for i in 0..128 {
            lanes[i % LANES] += a[i] * b[i];
            distance_lanes[i % LANES] += (a[i] - b[i]) * (a[i] - b[i]);
        }
        let (tail, distance_tail) =
            (128..131).fold((0f32, 0f32), |(t, d), i| (t + a[i] * b[i], d + (a[i] - b[i]) * (a[i] - b[i])));
        let reduce =
            |acc: [f32; LANES]| ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        assert_eq!(dot(&a, &b).to_bits(), (reduce(lanes) + tail).to_bits());
        assert_eq!(squared_distance(&a, &b).to_bits(), (reduce(distance_lanes) + distance_tail).to_bits());
    }

    #[test]
    fn ranking_is_total_and_breaks_ties_by_key_bits() {
        let keys = [vec![1.0f32, 0.0], vec![0.0, 1.0], vec![0.5, 0.5]];
        let scored = vec![(0, 1.0), (1, 1.0), (2, 2.0)];
        let top = top_k(Metric::DotProduct, scored.clone(), 3, |s| &keys[s as usize]);
        // 2.0 first; then the two 1.0 scores in key-bit order: [0.0, 1.0] < [1.0, 0.0].
        assert_eq!(top.iter().map(|x| x.0).collect::<Vec<_>>(), vec![2, 1, 0]);
        let top = top_k(Metric::Euclidean, scored, 2, |s| &keys[s as usize]);
        assert_eq!(top.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 0]);
    }
}
