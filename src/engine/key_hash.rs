//! A store's key hash: the bits of a key's components, mixed with a random per-process seed so
//! that a client cannot pick keys that collide. It only finds candidates (equality is always
//! decided on the bits themselves) and is never stored: a restore hashes again. So a process
//! may hash with whichever of the two kernels its CPU runs best, as long as it keeps to one:
//! AES rounds where the CPU has them, else folded multiplies.

use std::sync::OnceLock;

use super::chunked::{self, fold_mul};

/// The hash of `key` in this process.
pub(super) fn key_hash(key: &[f32]) -> u64 {
    let secrets = secrets();
    #[cfg(target_arch = "x86_64")]
    if secrets.aes {
        // SAFETY: `aes` is set only where the CPU runs AES-NI and AVX.
        return unsafe { aes::key_hash(key, secrets) };
    }
    portable_key_hash(key, secrets)
}

/// This process's hashing secrets, drawn on first use.
fn secrets() -> &'static Secrets {
    static SECRETS: OnceLock<Secrets> = OnceLock::new();
    SECRETS.get_or_init(|| Secrets::from_seed(chunked::random_u64()))
}

/// A random seed and what each kernel derives from it, derived once; and which kernel hashes.
struct Secrets {
    seed: u64,
    /// Whether the AES kernel hashes (the CPU runs it).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    aes: bool,
    /// The AES kernel's round key and its lanes' first states, as (low, high) words.
    round_key: [u64; 2],
    lanes: [[u64; 2]; 4],
}

impl Secrets {
    fn from_seed(seed: u64) -> Self {
        let word = |c: u64, k: u64| fold_mul(seed ^ c, K ^ k);
        Secrets {
            seed,
            #[cfg(target_arch = "x86_64")]
            aes: aes::available(),
            #[cfg(not(target_arch = "x86_64"))]
            aes: false,
            round_key: [word(SPREAD[3], 1), word(SPREAD[2], 2)],
            lanes: SPREAD.map(|c| [word(c, 3), word(c, 4)]),
        }
    }
}

const K: u64 = 0x9e37_79b9_7f4a_7c15;
const SPREAD: [u64; 4] = [0, 0x243f_6a88_85a3_08d3, 0x1319_8a2e_0370_7344, 0xa409_3822_299f_31d0];

/// The hash with no instruction beyond the baseline: the bit patterns four floats at a time, in
/// four interleaved lanes (so the multiplies overlap instead of waiting on each other), each
/// step one folded multiply of two floats against a secret by two floats against the lane; the
/// secrets and lanes start from `seed`.
#[inline(never)]
fn portable_key_hash(key: &[f32], secrets: &Secrets) -> u64 {
    let seed = secrets.seed;
    let mut lanes = SPREAD.map(|c| seed ^ c);
    let lane_secrets = SPREAD.map(|c| (seed ^ c).rotate_left(32) ^ K);
    let pair = |p: &[f32]| u64::from(p[0].to_bits()) | (u64::from(p[1].to_bits()) << 32);
    let mut blocks = key.chunks_exact(16);
    for block in blocks.by_ref() {
        for ((lane, secret), quad) in lanes.iter_mut().zip(lane_secrets).zip(block.chunks_exact(4)) {
            *lane = fold_mul(pair(&quad[..2]) ^ secret, pair(&quad[2..]) ^ *lane);
        }
    }
    let mut pairs = blocks.remainder().chunks_exact(2);
    for (i, p) in pairs.by_ref().enumerate() {
        lanes[i % 4] = fold_mul(lanes[i % 4] ^ pair(p), K);
    }
    if let [x] = pairs.remainder() {
        lanes[0] = fold_mul(lanes[0] ^ u64::from(x.to_bits()), K ^ 1);
    }
    let mut h = key.len() as u64 ^ seed;
    for lane in lanes {
        h = fold_mul(h ^ lane, K);
    }
    h
}

/// The hash in AES rounds: four lanes of 16 bytes, each absorbing every fourth 16 bytes of the
/// key as the round key of one round of its state (substitution and mixing, then the bytes
/// XORed in). The lanes start from secret states (and lane 0 from the key's length too), so
/// how a block changes a lane after the next round depends on state a client cannot know, and
/// no two blocks' changes can be made to cancel. A last part under 16 bytes is padded with
/// zeros (the length tells it from a longer key); then the lanes fold into one another and
/// take two more rounds keyed by the secret, after which every input bit reaches every output
/// bit. One instruction per 16 bytes (AVX's encoding reads the key straight from memory):
/// about a third of the portable hash's instructions.
#[cfg(target_arch = "x86_64")]
mod aes {
    use std::arch::x86_64::{
        __m128i, _mm_aesenc_si128, _mm_cvtsi64_si128, _mm_cvtsi128_si64, _mm_loadu_si128, _mm_unpackhi_epi64,
        _mm_xor_si128,
    };

    use super::Secrets;

    /// Whether this CPU runs AES-NI and AVX (detected once, then cached bits).
    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("avx")
    }

    /// See the module's [`key_hash`](super::key_hash) and this module's doc.
    #[target_feature(enable = "aes,avx")]
    pub(super) fn key_hash(key: &[f32], secrets: &Secrets) -> u64 {
        let round_key = load_words(&secrets.round_key);
        let mut lanes = secrets.lanes.each_ref().map(|words| load_words(words));
        lanes[0] = _mm_xor_si128(lanes[0], _mm_cvtsi64_si128(key.len() as i64));
        let (quads, tail) = key.as_chunks::<4>();
        let (blocks, rest) = quads.as_chunks::<4>();
        for b in blocks {
            for (lane, quad) in lanes.iter_mut().zip(b) {
                *lane = _mm_aesenc_si128(*lane, load(quad));
            }
        }
        for (lane, quad) in lanes.iter_mut().zip(rest) {
            *lane = _mm_aesenc_si128(*lane, load(quad));
        }
        if !tail.is_empty() {
            let mut padded = [0f32; 4];
            for (to, from) in padded.iter_mut().zip(tail) {
                *to = *from;
            }
            let lane = &mut lanes[rest.len()];
            *lane = _mm_aesenc_si128(*lane, load(&padded));
        }
        let [a, b, c, d] = lanes;
        let folded = _mm_aesenc_si128(_mm_aesenc_si128(a, b), _mm_aesenc_si128(c, d));
        let mixed = _mm_aesenc_si128(_mm_aesenc_si128(folded, round_key), round_key);
        (_mm_cvtsi128_si64(mixed) ^ _mm_cvtsi128_si64(_mm_unpackhi_epi64(mixed, mixed))) as u64
    }

    /// Four floats' bits as sixteen bytes.
    #[target_feature(enable = "aes,avx")]
    fn load(quad: &[f32; 4]) -> __m128i {
        // SAFETY: `quad` is 16 readable bytes; the load takes any alignment.
        unsafe { _mm_loadu_si128(quad.as_ptr().cast()) }
    }

    /// Two words as sixteen bytes, the first low.
    #[target_feature(enable = "aes,avx")]
    fn load_words(words: &[u64; 2]) -> __m128i {
        // SAFETY: `words` is 16 readable bytes; the load takes any alignment.
        unsafe { _mm_loadu_si128(words.as_ptr().cast()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kernel with the secrets of a seed.
    type Kernel = fn(&[f32], u64) -> u64;

    /// Every hash this process may use, by name.
    fn kernels() -> Vec<(&'static str, Kernel)> {
        let mut all: Vec<(&'static str, Kernel)> =
            vec![("portable", |key, seed| portable_key_hash(key, &Secrets::from_seed(seed)))];
        #[cfg(target_arch = "x86_64")]
        if aes::available() {
            // SAFETY: this CPU runs AES-NI and AVX.
            all.push(("aes", |key, seed| unsafe { aes::key_hash(key, &Secrets::from_seed(seed)) }));
        }
        all
    }

    /// Dimensions up to 40 cover keys of no whole block of sixteen components and of one, with
    /// every remainder, and of two.
    #[test]
    fn every_component_of_a_key_reaches_its_hash() {
        for (name, hash) in kernels() {
            for dimension in 1..=40 {
                let base: Vec<f32> = (0..dimension).map(|i| i as f32 * 0.5).collect();
                let mut seen = std::collections::HashSet::from([hash(&base, 7)]);
                for i in 0..dimension {
                    let mut changed = base.clone();
                    changed[i] = -1.0;
                    assert!(
                        seen.insert(hash(&changed, 7)),
                        "{name}, dimension {dimension}: component {i} is not hashed"
                    );
                }
                assert_eq!(hash(&base, 7), hash(&base.clone(), 7), "{name}");
            }
        }
    }

    /// Every bit of a component reaches the hash, whichever lane and place it lands in.
    #[test]
    fn every_bit_of_a_component_changes_the_hash() {
        for (name, hash) in kernels() {
            let base: Vec<f32> = (0..37).map(|i| 1.0 + i as f32).collect();
            let h = hash(&base, 11);
            for i in [0, 3, 4, 15, 16, 31, 32, 36] {
                for bit in 0..32 {
                    let mut changed = base.clone();
                    changed[i] = f32::from_bits(changed[i].to_bits() ^ (1 << bit));
                    assert_ne!(hash(&changed, 11), h, "{name}: bit {bit} of component {i}");
                }
            }
        }
    }

    /// Moving the same components to other places gives another hash: the order is hashed,
    /// not only the contents (else a client could make many colliding keys by shuffling one).
    #[test]
    fn swapping_parts_of_a_key_changes_its_hash() {
        for (name, hash) in kernels() {
            let base: Vec<f32> = (0..128).map(|i| i as f32).collect();
            let h = hash(&base, 3);
            for (a, b) in [(0, 4), (0, 16), (4, 20), (0, 64), (60, 124), (0, 127)] {
                for width in [1, 4] {
                    let mut swapped = base.clone();
                    for k in 0..width.min(128 - b) {
                        swapped.swap(a + k, b + k);
                    }
                    assert_ne!(hash(&swapped, 3), h, "{name}: components {a} and {b}, {width} wide");
                }
            }
        }
    }

    /// The seed is part of the hash: another process hashes the same key differently.
    #[test]
    fn the_seed_changes_every_hash() {
        for (name, hash) in kernels() {
            for dimension in [1, 4, 16, 128] {
                let key: Vec<f32> = (0..dimension).map(|i| i as f32).collect();
                assert_ne!(hash(&key, 1), hash(&key, 2), "{name}, dimension {dimension}");
            }
        }
    }

    /// Keys of different lengths whose components agree (a shorter one is zero-padded inside
    /// the hash) still hash apart.
    #[test]
    fn zero_padding_does_not_make_keys_of_different_lengths_collide() {
        for (name, hash) in kernels() {
            let three = [1.0, 2.0, 3.0];
            let four = [1.0, 2.0, 3.0, 0.0];
            assert_ne!(hash(&three, 5), hash(&four, 5), "{name}");
        }
    }

    /// The process's hash is one of the kernels, with the process's seed, every time.
    #[test]
    fn key_hash_is_a_fixed_kernel_with_the_process_seed() {
        let key: Vec<f32> = (0..128).map(|i| i as f32 * 0.25).collect();
        let h = key_hash(&key);
        assert_eq!(h, key_hash(&key));
        assert!(kernels().iter().any(|(_, hash)| hash(&key, secrets().seed) == h));
    }
}
