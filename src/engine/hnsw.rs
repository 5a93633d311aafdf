//! An HNSW graph (hierarchical navigable small world) for approximate nearest neighbours.
//!
//! Deterministic by construction, so every replica builds the same graph from the same
//! commands: a node's level comes from a hash of its key's bits (no random generator), every
//! candidate ordering is total (distance by `total_cmp`, then node id), and neighbour selection
//! (the paper's diversity heuristic) visits candidates in that order. Removed entries stay in the graph as routing-only nodes until the store
//! rebuilds it.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::chunked::{ChunkedVec, NodeOfSlot};
use super::similarity::{dot, squared_distance};
use super::types::{HnswConfig, Metric};

pub(super) const MAX_LEVEL: usize = 16;

/// log2 of the nodes per shared chunk: a node owns its link lists, so copying a chunk after a
/// capture allocates per node, and an insert may touch a chunk per neighbour.
pub(super) const NODE_CHUNK_SHIFT: u32 = 6;

#[derive(Clone, Debug)]
pub(super) struct Node {
    pub(super) slot: u32,
    pub(super) links: Vec<Vec<u32>>,
    pub(super) alive: bool,
}

/// A candidate: distance, then node id, in a total order.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Cand(f32, u32);

impl Eq for Cand {}

impl Ord for Cand {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The graph.
#[derive(Clone, Debug)]
pub struct Hnsw {
    pub(super) config: HnswConfig,
    pub(super) nodes: ChunkedVec<Node>,
    pub(super) node_of_slot: NodeOfSlot,
    pub(super) entry: Option<u32>,
}

/// The level of a key: geometric with ratio 1/m, drawn from a hash of the key's bits.
fn level_of(key: &[f32], m: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for x in key {
        h ^= u64::from(x.to_bits());
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    let unit = ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64; // in (0, 1]
    let ml = 1.0 / (m.max(2) as f64).ln();
    ((-unit.ln() * ml) as usize).min(MAX_LEVEL)
}

impl Hnsw {
    /// An empty graph.
    pub fn new(config: HnswConfig) -> Self {
        Self { config, nodes: ChunkedVec::new(NODE_CHUNK_SHIFT), node_of_slot: NodeOfSlot::default(), entry: None }
    }

    /// The graph's parameters.
    pub fn config(&self) -> &HnswConfig {
        &self.config
    }

    /// A distance under the graph's metric: lower is closer.
    fn distance(&self, a: &[f32], b: &[f32]) -> f32 {
        match self.config.metric {
            Metric::Euclidean => squared_distance(a, b),
            Metric::DotProduct => -dot(a, b),
            Metric::Cosine => {
                let n = (dot(a, a) * dot(b, b)).sqrt();
                if n == 0.0 { 1.0 } else { 1.0 - dot(a, b) / n }
            }
        }
    }

    fn max_links(&self, level: usize) -> usize {
        if level == 0 { 2 * self.config.m.max(2) } else { self.config.m.max(2) }
    }

    /// Adds the entry at `slot`.
    pub fn insert<'a>(&mut self, slot: u32, key_of: &impl Fn(u32) -> &'a [f32]) {
        let key = key_of(slot);
        let level = level_of(key, self.config.m);
        let id = self.nodes.len() as u32;
        self.nodes.push(Node { slot, links: vec![Vec::new(); level + 1], alive: true });
        self.node_of_slot.insert(slot, id);
        let Some(entry) = self.entry else {
            self.entry = Some(id);
            return;
        };
        let top = self.nodes[entry as usize].links.len() - 1;
        let mut ep = entry;
        for l in (level + 1..=top).rev() {
            ep = self.greedy(key, ep, l, key_of);
        }
        for l in (0..=level.min(top)).rev() {
            let found = self.search_layer(key, &[ep], self.config.ef_construction.max(1), l, &|_| true, key_of);
            let chosen = self.diverse(&found, self.config.m.max(2), key_of);
            for &n in &chosen {
                self.link(n, id, l, key_of);
            }
            self.nodes[id as usize].links[l] = chosen;
            ep = found.first().map_or(ep, |c| c.1);
        }
        if level > top {
            self.entry = Some(id);
        }
    }

    /// Picks at most `max` of `candidates` (sorted closest first to some base): a candidate is
    /// kept only if it is closer to the base than to every one kept before it, which spreads
    /// links over directions instead of clustering them (the heuristic of the HNSW paper).
    fn diverse<'a>(&self, candidates: &[Cand], max: usize, key_of: &impl Fn(u32) -> &'a [f32]) -> Vec<u32> {
        let mut kept: Vec<u32> = Vec::with_capacity(max);
        for c in candidates {
            if kept.len() >= max {
                break;
            }
            let point = key_of(self.nodes[c.1 as usize].slot);
            let dominated = kept.iter().any(|&k| self.distance(point, key_of(self.nodes[k as usize].slot)) < c.0);
            if !dominated {
                kept.push(c.1);
            }
        }
        kept
    }

    /// Adds `to` to `from`'s links at `level`, re-selecting them when over the limit.
    fn link<'a>(&mut self, from: u32, to: u32, level: usize, key_of: &impl Fn(u32) -> &'a [f32]) {
        let max = self.max_links(level);
        let links = &mut self.nodes[from as usize].links[level];
        links.push(to);
        if links.len() <= max {
            return;
        }
        let base = key_of(self.nodes[from as usize].slot);
        let mut ranked: Vec<Cand> = self.nodes[from as usize].links[level]
            .iter()
            .map(|&n| Cand(self.distance(base, key_of(self.nodes[n as usize].slot)), n))
            .collect();
        ranked.sort_unstable();
        self.nodes[from as usize].links[level] = self.diverse(&ranked, max, key_of);
    }

    fn greedy<'a>(&self, query: &[f32], mut at: u32, level: usize, key_of: &impl Fn(u32) -> &'a [f32]) -> u32 {
        let mut best = Cand(self.distance(query, key_of(self.nodes[at as usize].slot)), at);
        loop {
            let mut moved = false;
            for &n in &self.nodes[at as usize].links[level] {
                let c = Cand(self.distance(query, key_of(self.nodes[n as usize].slot)), n);
                if c < best {
                    best = c;
                    moved = true;
                }
            }
            if !moved {
                return best.1;
            }
            at = best.1;
        }
    }

    /// The closest nodes found from `entries` at `level`, closest first, at most `ef`; only
    /// live nodes accepted by `allowed` are returned, every node routes.
    fn search_layer<'a>(
        &self,
        query: &[f32],
        entries: &[u32],
        ef: usize,
        level: usize,
        allowed: &dyn Fn(u32) -> bool,
        key_of: &impl Fn(u32) -> &'a [f32],
    ) -> Vec<Cand> {
        let mut visited = vec![0u64; self.nodes.len().div_ceil(64)];
        let mut seen = |n: u32| {
            let (w, b) = ((n / 64) as usize, n % 64);
            let was = visited[w] & (1 << b) != 0;
            visited[w] |= 1 << b;
            was
        };
        let mut frontier: BinaryHeap<Reverse<Cand>> = BinaryHeap::new();
        let mut results: BinaryHeap<Cand> = BinaryHeap::new();
        let accept = |n: u32| self.nodes[n as usize].alive && allowed(self.nodes[n as usize].slot);
        for &e in entries {
            seen(e);
            let c = Cand(self.distance(query, key_of(self.nodes[e as usize].slot)), e);
            frontier.push(Reverse(c));
            if accept(e) {
                results.push(c);
            }
        }
        while let Some(Reverse(current)) = frontier.pop() {
            if results.len() >= ef && results.peek().is_some_and(|worst| current > *worst) {
                break;
            }
            for &n in &self.nodes[current.1 as usize].links[level] {
                if seen(n) {
                    continue;
                }
                let c = Cand(self.distance(query, key_of(self.nodes[n as usize].slot)), n);
                if results.len() < ef || results.peek().is_some_and(|worst| c < *worst) {
                    frontier.push(Reverse(c));
                    if accept(n) {
                        results.push(c);
                        if results.len() > ef {
                            results.pop();
                        }
                    }
                }
            }
        }
        results.into_sorted_vec()
    }

    /// Up to `k` live entries accepted by `allowed`, approximately the closest, closest first,
    /// searching with candidate list `ef` (at least `k`). Returns slots.
    pub fn nearest<'a>(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        allowed: &dyn Fn(u32) -> bool,
        key_of: &impl Fn(u32) -> &'a [f32],
    ) -> Vec<u32> {
        let Some(entry) = self.entry else { return Vec::new() };
        if k == 0 {
            return Vec::new();
        }
        let mut ep = entry;
        for l in (1..self.nodes[entry as usize].links.len()).rev() {
            ep = self.greedy(query, ep, l, key_of);
        }
        let found = self.search_layer(query, &[ep], ef.max(k), 0, allowed, key_of);
        found.into_iter().take(k).map(|c| self.nodes[c.1 as usize].slot).collect()
    }

    /// Marks the entry at `slot` removed (it keeps routing searches until a rebuild).
    pub fn remove(&mut self, slot: u32) {
        if let Some(id) = self.node_of_slot.remove(slot) {
            self.nodes[id as usize].alive = false;
        }
    }
}
