//! An exact k-d tree over Euclidean distance. Nodes name store slots; coordinates are read from
//! the store's arena, which keeps a removed entry's vector until the tree is rebuilt (the store
//! quarantines such slots), so a dead node can still route searches.
//!
//! Results equal a linear Euclidean scan exactly: candidates are ranked by the same score
//! (`squared_distance(..).sqrt()`) with the same tie-break, and a subtree is skipped only when
//! its lower bound is strictly worse than the current k-th result (floating-point sums of
//! non-negative terms never fall below one of their terms, so the bound is sound).

use super::chunked::{ChunkedVec, NodeOfSlot};
use super::similarity::{cmp_ranked, squared_distance};
use super::types::Metric;

pub(super) const NONE: u32 = u32::MAX;

#[derive(Clone, Debug)]
pub(super) struct Node {
    pub(super) slot: u32,
    pub(super) axis: u32,
    pub(super) left: u32,
    pub(super) right: u32,
    pub(super) alive: bool,
}

/// The tree.
#[derive(Clone, Debug, Default)]
pub struct KdTree {
    pub(super) nodes: ChunkedVec<Node>,
    pub(super) root: u32,
    pub(super) node_of_slot: NodeOfSlot,
    /// An insert went deeper than a balanced tree would: the store should rebuild it.
    pub(super) unbalanced: bool,
}

impl KdTree {
    /// A balanced tree over `slots` (splits at medians; ties by slot, so it is deterministic).
    pub fn build<'a>(dim: usize, slots: &[u32], key_of: &impl Fn(u32) -> &'a [f32]) -> Self {
        let mut tree =
            Self { nodes: ChunkedVec::default(), root: NONE, node_of_slot: NodeOfSlot::default(), unbalanced: false };
        let mut order = slots.to_vec();
        tree.root = tree.build_range(dim, &mut order, 0, key_of);
        tree
    }

    fn build_range<'a>(
        &mut self,
        dim: usize,
        slots: &mut [u32],
        depth: usize,
        key_of: &impl Fn(u32) -> &'a [f32],
    ) -> u32 {
        if slots.is_empty() {
            return NONE;
        }
        let axis = depth % dim;
        slots.sort_unstable_by(|a, b| key_of(*a)[axis].total_cmp(&key_of(*b)[axis]).then(a.cmp(b)));
        let mid = slots.len() / 2;
        let id = self.push(slots[mid], axis);
        let (lo, rest) = slots.split_at_mut(mid);
        let left = self.build_range(dim, lo, depth + 1, key_of);
        let right = self.build_range(dim, &mut rest[1..], depth + 1, key_of);
        self.nodes[id as usize].left = left;
        self.nodes[id as usize].right = right;
        id
    }

    fn push(&mut self, slot: u32, axis: usize) -> u32 {
        let id = self.nodes.len() as u32;
        self.nodes.push(Node { slot, axis: axis as u32, left: NONE, right: NONE, alive: true });
        self.node_of_slot.insert(slot, id);
        id
    }

    /// Adds the entry at `slot`.
    pub fn insert<'a>(&mut self, slot: u32, key_of: &impl Fn(u32) -> &'a [f32]) {
        let key = key_of(slot);
        let dim = key.len();
        if self.root == NONE {
            self.root = self.push(slot, 0);
            return;
        }
        let (mut at, mut depth) = (self.root, 0usize);
        loop {
            let node = &self.nodes[at as usize];
            let axis = node.axis as usize;
            let go_left = key[axis] < key_of(node.slot)[axis];
            let next = if go_left { node.left } else { node.right };
            if next == NONE {
                let id = self.push(slot, (depth + 1) % dim);
                let balanced_depth = (usize::BITS - self.nodes.len().leading_zeros()) as usize;
                self.unbalanced |= depth > 2 * balanced_depth + 16;
                let node = &mut self.nodes[at as usize];
                if go_left {
                    node.left = id
                } else {
                    node.right = id
                }
                return;
            }
            at = next;
            depth += 1;
        }
    }

    /// Whether inserts made the tree much deeper than a balanced one (searches recurse by depth).
    pub fn is_unbalanced(&self) -> bool {
        self.unbalanced
    }

    /// Marks the entry at `slot` removed (it keeps routing searches until a rebuild).
    pub fn remove(&mut self, slot: u32) {
        if let Some(id) = self.node_of_slot.remove(slot) {
            self.nodes[id as usize].alive = false;
        }
    }

    /// The `k` nearest live entries accepted by `allowed`, closest first, with their distance.
    pub fn nearest<'a>(
        &self,
        query: &[f32],
        k: usize,
        allowed: &dyn Fn(u32) -> bool,
        key_of: &impl Fn(u32) -> &'a [f32],
    ) -> Vec<(u32, f32)> {
        let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
        if k > 0 {
            self.search(self.root, query, k, allowed, key_of, &mut best);
        }
        best
    }

    fn search<'a>(
        &self,
        at: u32,
        query: &[f32],
        k: usize,
        allowed: &dyn Fn(u32) -> bool,
        key_of: &impl Fn(u32) -> &'a [f32],
        best: &mut Vec<(u32, f32)>,
    ) {
        if at == NONE {
            return;
        }
        let node = &self.nodes[at as usize];
        let point = key_of(node.slot);
        if node.alive && allowed(node.slot) {
            let d = squared_distance(query, point).sqrt();
            let cmp =
                |a: &(u32, f32), b: &(u32, f32)| cmp_ranked(Metric::Euclidean, (a.1, key_of(a.0)), (b.1, key_of(b.0)));
            let candidate = (node.slot, d);
            if best.len() < k || cmp(&candidate, &best[best.len() - 1]).is_lt() {
                let pos = best.partition_point(|x| cmp(x, &candidate).is_lt());
                best.insert(pos, candidate);
                best.truncate(k);
            }
        }
        let axis = node.axis as usize;
        let diff = query[axis] - point[axis];
        let (near, far) = if query[axis] < point[axis] { (node.left, node.right) } else { (node.right, node.left) };
        self.search(near, query, k, allowed, key_of, best);
        let bound = (diff * diff).sqrt();
        if best.len() < k || bound <= best[best.len() - 1].1 {
            self.search(far, query, k, allowed, key_of, best);
        }
    }
}
