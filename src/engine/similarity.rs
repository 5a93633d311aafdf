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
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: this CPU runs AVX2.
        return unsafe { avx2::dot(a, b) };
    }
    dot_body(a, b)
}

/// Σ (aᵢ − bᵢ)².
pub fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: this CPU runs AVX2.
        return unsafe { avx2::squared_distance(a, b) };
    }
    squared_distance_body(a, b)
}

/// Whether every component is finite (neither infinite nor NaN).
pub fn all_finite(a: &[f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: this CPU runs AVX2.
        return unsafe { avx2::all_finite(a) };
    }
    all_finite_body(a)
}

/// The kernels compiled for AVX2, where a vector register holds all eight lanes and each step
/// takes half the instructions. They run the very same operations in the same order as the
/// portable ones (no fused multiply-add), so both give bit-identical results.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    /// Whether this CPU runs AVX2 (detected once, then a cached bit).
    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2")
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        super::dot_body(a, b)
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
        super::squared_distance_body(a, b)
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn all_finite(a: &[f32]) -> bool {
        super::all_finite_body(a)
    }
}

#[inline(always)]
fn dot_body(a: &[f32], b: &[f32]) -> f32 {
    lane_sum(a, b, |x, y| x * y)
}

#[inline(always)]
fn squared_distance_body(a: &[f32], b: &[f32]) -> f32 {
    lane_sum(a, b, |x, y| (x - y) * (x - y))
}

/// [`all_finite`] in one pass the compiler can vectorise: a component is infinite or NaN when
/// its exponent is all ones, the only exponent to which adding one carries into the sign bit.
#[inline(always)]
fn all_finite_body(a: &[f32]) -> bool {
    const EXPONENT: u32 = 0x7f80_0000;
    const EXPONENT_ONE: u32 = 0x0080_0000;
    const CARRY: u32 = 0x8000_0000;
    a.iter().fold(0u32, |carries, x| carries | ((x.to_bits() & EXPONENT) + EXPONENT_ONE)) & CARRY == 0
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

    /// Components of every magnitude and sign, some subnormal, zero or not finite.
    fn awkward_floats(seed: u64, n: usize, with_non_finite: bool) -> Vec<f32> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let v = f32::from_bits(x as u32);
                match (x >> 40) % 16 {
                    0 => 0.0,
                    1 => -f32::MIN_POSITIVE / 3.0,
                    2 if with_non_finite => f32::INFINITY,
                    3 if with_non_finite => f32::NAN,
                    _ if v.is_finite() => v,
                    _ => ((x >> 8) as f32 / (1u64 << 50) as f32) - 1.0,
                }
            })
            .collect()
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_kernels_give_the_portable_kernels_bits() {
        if !avx2::available() {
            eprintln!("this CPU has no AVX2: only the portable kernels run here");
            return;
        }
        for (case, len) in (0..40).chain([127, 128, 129, 131, 1024]).enumerate() {
            let a = awkward_floats(case as u64 * 2 + 1, len, false);
            let b = awkward_floats(case as u64 * 2 + 2, len, false);
            // SAFETY: this CPU runs AVX2 (checked above).
            let (dot_wide, distance_wide) = unsafe { (avx2::dot(&a, &b), avx2::squared_distance(&a, &b)) };
            assert_eq!(dot_wide.to_bits(), dot_body(&a, &b).to_bits(), "dot, {len} components");
            assert_eq!(distance_wide.to_bits(), squared_distance_body(&a, &b).to_bits(), "distance, {len} components");
            let odd = awkward_floats(case as u64 + 99, len, true);
            for key in [&a, &odd] {
                // SAFETY: as above.
                let wide = unsafe { avx2::all_finite(key) };
                assert_eq!(wide, all_finite_body(key), "all_finite, {len} components");
                assert_eq!(wide, key.iter().all(|x| x.is_finite()), "all_finite, {len} components");
            }
        }
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
