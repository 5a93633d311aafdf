//! The engine's state as an `rkyv` image, and the way back.
//!
//! [`Engine::image`] copies the state into [`EngineImage`]; a snapshot is archived instead from
//! [`Capture::image_parts`], which archives to the same bytes without copying the vectors,
//! norms and metadata (`image_parts`).
//! [`Engine::restore`] builds an engine straight from an archived image (a validated view of
//! mapped bytes): each store's metadata comes back as one block copy (one chunk of the arena),
//! and each value's predicate slots as a copy per block of slots, with no allocation per
//! entry; the key lookup is rebuilt by hashing; the HNSW graph's
//! adjacency, stored flat, becomes one list per node and level. The vectors and norms, most of
//! the bytes, are copied too; [`Engine::restore_backed`] instead reads them in place from the
//! mapped file (a [`Backing`]), copying a ~1 MiB chunk only when a write first lands in it, as
//! after a capture. That is what a node does: restoring 1M entries of 128-d then skips a
//! 512 MB copy (about 0.3 s here) and the memory it would take beside the page cache. The
//! price: the file's disk space stays in use while any chunk still reads from it, even after
//! snapshot retention deletes its name. Every cross
//! reference (slots, spans, node links) is checked before use, so an image that passed its
//! checksum and structural validation but breaks an invariant is an error, never a panic.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use rkyv::{Archive, Deserialize, Serialize};

use super::catalog::Catalog;
use super::chunked::{ChunkedVec, NodeOfSlot, SlotSet};
use super::hnsw::{self, Hnsw};
use super::image_parts::{EngineImageParts, MetaBytesPart, RowsPart, StoreImageParts};
use super::kdtree::{self, KdTree};
use super::key_lookup::KeyLookup;
use super::meta_arena::{MetaArena, Span};
use super::rows::{Backing, Rows};
use super::store::{ENTRY_OVERHEAD, PredicateIndex, Store};
use super::types::{HnswConfig, MetadataValue, Metric};
use super::{Engine, Limits, read};

/// Every store of an engine.
#[derive(Archive, Serialize, Deserialize, Debug, Default, PartialEq)]
pub struct EngineImage {
    /// The stores, by schema then name.
    pub stores: Vec<StoreImage>,
}

/// One store, with its indexes.
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
pub struct StoreImage {
    /// Its schema.
    pub schema: String,
    /// Its name.
    pub name: String,
    /// Vector dimension.
    pub dimension: u32,
    /// Slot-major vectors.
    pub arena: Vec<f32>,
    /// Per-slot norms.
    pub norms: Vec<f32>,
    /// The metadata arena's bytes.
    pub meta_bytes: Vec<u8>,
    /// Per-slot metadata offset.
    pub meta_offsets: Vec<u64>,
    /// Per-slot metadata length; `u32::MAX` for a slot without an entry.
    pub meta_lens: Vec<u32>,
    /// Garbage bytes in the metadata arena.
    pub meta_garbage: u64,
    /// Free slots, in reuse order.
    pub free: Vec<u32>,
    /// Slots awaiting an index rebuild.
    pub quarantine: Vec<u32>,
    /// Live entries.
    pub live: u64,
    /// Bytes charged.
    pub bytes: u64,
    /// Predicate indexes.
    pub predicates: Vec<PredicateImage>,
    /// The k-d tree.
    pub kdtree: Option<KdTreeImage>,
    /// The HNSW graph.
    pub hnsw: Option<HnswImage>,
}

/// A metadata value.
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
pub enum ValueImage {
    /// Text.
    Text(String),
    /// Image bytes.
    Image(Vec<u8>),
    /// Audio bytes.
    Audio(Vec<u8>),
}

/// One predicate index: its values in order, and for value `i` the slots
/// `slots[ends[i-1]..ends[i]]`.
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
pub struct PredicateImage {
    /// The metadata key.
    pub key: String,
    /// Distinct values, ascending.
    pub values: Vec<ValueImage>,
    /// Cumulative slot counts.
    pub ends: Vec<u32>,
    /// Slots, ascending within each value.
    pub slots: Vec<u32>,
}

/// A k-d tree, node by node.
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
pub struct KdTreeImage {
    /// Root node, `u32::MAX` when empty.
    pub root: u32,
    /// Whether it awaits a rebuild.
    pub unbalanced: bool,
    /// Node slots.
    pub slots: Vec<u32>,
    /// Node split axes.
    pub axes: Vec<u32>,
    /// Left children.
    pub lefts: Vec<u32>,
    /// Right children.
    pub rights: Vec<u32>,
    /// Whether each node's entry is live.
    pub alive: Vec<bool>,
}

/// An HNSW graph with flat adjacency: node `n` has levels `level_ends[n-1]..level_ends[n]`
/// (global level ids), and level id `l` has links `links[link_ends[l-1]..link_ends[l]]`.
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
pub struct HnswImage {
    /// Links per node per layer.
    pub m: u32,
    /// Build candidate list size.
    pub ef_construction: u32,
    /// Default search candidate list size.
    pub ef_search: u32,
    /// 0 cosine, 1 Euclidean, 2 dot product.
    pub metric: u8,
    /// Entry node, `u32::MAX` when empty.
    pub entry: u32,
    /// Node slots.
    pub slots: Vec<u32>,
    /// Whether each node's entry is live.
    pub alive: Vec<bool>,
    /// Cumulative level counts per node.
    pub level_ends: Vec<u32>,
    /// Cumulative link counts per level id.
    pub link_ends: Vec<u32>,
    /// All links.
    pub links: Vec<u32>,
}

const NOT_LIVE: u32 = u32::MAX;

fn value_image(v: &MetadataValue) -> ValueImage {
    match v {
        MetadataValue::RawString(s) => ValueImage::Text(s.clone()),
        MetadataValue::Image(b) => ValueImage::Image(b.clone()),
        MetadataValue::Audio(b) => ValueImage::Audio(b.clone()),
    }
}

impl Store {
    /// This store as an image under `schema` and `name`, its large parts left in place.
    pub(super) fn image_parts(&self, schema: &str, name: &str) -> StoreImageParts {
        let (meta_offsets, meta_lens) = self.meta.flat_spans().into_iter().map(|s| s.unwrap_or((0, NOT_LIVE))).unzip();
        let predicates = self
            .predicates
            .iter()
            .map(|(key, index)| {
                // Values ascending, so the image does not depend on how the index is sharded.
                let mut by_value: Vec<_> = index.iter().collect();
                by_value.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let mut ends = Vec::with_capacity(by_value.len());
                let mut slots = Vec::new();
                for (_, set) in &by_value {
                    slots.extend(set.iter());
                    ends.push(slots.len() as u32);
                }
                let values = by_value.iter().map(|(v, _)| value_image(v)).collect();
                PredicateImage { key: key.clone(), values, ends, slots }
            })
            .collect();
        let kdtree = self.kdtree.as_ref().map(|t| KdTreeImage {
            root: t.root,
            unbalanced: t.unbalanced,
            slots: t.nodes.iter().map(|n| n.slot).collect(),
            axes: t.nodes.iter().map(|n| n.axis).collect(),
            lefts: t.nodes.iter().map(|n| n.left).collect(),
            rights: t.nodes.iter().map(|n| n.right).collect(),
            alive: t.nodes.iter().map(|n| n.alive).collect(),
        });
        let hnsw = self.hnsw.as_ref().map(|g| {
            let (mut level_ends, mut link_ends, mut links) = (Vec::new(), Vec::new(), Vec::new());
            for node in g.nodes.iter() {
                for level in &node.links {
                    links.extend_from_slice(level);
                    link_ends.push(links.len() as u32);
                }
                level_ends.push(link_ends.len() as u32);
            }
            HnswImage {
                m: g.config.m as u32,
                ef_construction: g.config.ef_construction as u32,
                ef_search: g.config.ef_search as u32,
                metric: match g.config.metric {
                    Metric::Cosine => 0,
                    Metric::Euclidean => 1,
                    Metric::DotProduct => 2,
                },
                entry: g.entry.unwrap_or(u32::MAX),
                slots: g.nodes.iter().map(|n| n.slot).collect(),
                alive: g.nodes.iter().map(|n| n.alive).collect(),
                level_ends,
                link_ends,
                links,
            }
        });
        StoreImageParts {
            schema: schema.to_owned(),
            name: name.to_owned(),
            dimension: self.dimension as u32,
            arena: RowsPart(self.arena.clone()),
            norms: RowsPart(self.norms.clone()),
            meta_bytes: MetaBytesPart(self.meta.shared_chunks()),
            meta_offsets,
            meta_lens,
            meta_garbage: self.meta.garbage() as u64,
            free: self.free.clone(),
            quarantine: self.quarantine.clone(),
            live: self.live as u64,
            bytes: self.bytes as u64,
            predicates,
            kdtree,
            hnsw,
        }
    }

    /// Rebuilds a store from its archived image, checking every invariant it relies on.
    pub fn restore(img: &ArchivedStoreImage, backing: Option<&Arc<dyn Backing>>) -> Result<Store, String> {
        let dimension = img.dimension.to_native() as usize;
        if dimension == 0 {
            return Err(format!("store {}: dimension 0", img.name));
        }
        let slots = img.norms.len();
        if img.arena.len() != slots * dimension || img.meta_offsets.len() != slots || img.meta_lens.len() != slots {
            return Err(format!("store {}: per-slot arrays disagree on the slot count", img.name));
        }
        let slot_ok = |s: u32| (s as usize) < slots;
        let (arena, norms) = match backing {
            Some(b) => {
                (Rows::from_backing(dimension, b, img.arena.as_slice()), Rows::from_backing(1, b, img.norms.as_slice()))
            }
            None => {
                (Rows::from_archived(dimension, img.arena.as_slice()), Rows::from_archived(1, img.norms.as_slice()))
            }
        };
        let meta_bytes: Vec<u8> = img.meta_bytes.as_slice().to_vec();
        let mut spans: ChunkedVec<Option<Span>> = ChunkedVec::default();
        let mut live = 0;
        for (off, len) in img.meta_offsets.iter().zip(img.meta_lens.iter()) {
            let (offset, len) = (off.to_native(), len.to_native());
            if len == NOT_LIVE {
                spans.push(None);
            } else if offset.checked_add(u64::from(len)).is_none_or(|end| end > meta_bytes.len() as u64) {
                return Err(format!("store {}: a metadata span lies outside the arena", img.name));
            } else {
                spans.push(Some(Span { offset, chunk: 0, len }));
                live += 1;
            }
        }
        if live as u64 != img.live.to_native() {
            return Err(format!("store {}: live count {} does not match its spans ({live})", img.name, img.live));
        }
        let free: Vec<u32> = img.free.iter().map(|s| s.to_native()).collect();
        let quarantine: Vec<u32> = img.quarantine.iter().map(|s| s.to_native()).collect();
        if !free.iter().chain(&quarantine).all(|&s| slot_ok(s) && spans[s as usize].is_none()) {
            return Err(format!("store {}: a free slot is out of range or holds an entry", img.name));
        }
        if img.meta_garbage.to_native() > meta_bytes.len() as u64 {
            return Err(format!("store {}: more metadata garbage than metadata bytes", img.name));
        }
        let meta = MetaArena::from_parts(meta_bytes, spans, img.meta_garbage.to_native() as usize);

        let mut predicates = BTreeMap::new();
        for p in img.predicates.iter() {
            let mut index = PredicateIndex::default();
            let mut start = 0usize;
            if p.ends.len() != p.values.len() {
                return Err(format!("store {}: predicate index {} is malformed", img.name, p.key));
            }
            for (value, end) in p.values.iter().zip(p.ends.iter()) {
                let end = end.to_native() as usize;
                let part = p
                    .slots
                    .get(start..end)
                    .ok_or_else(|| format!("store {}: predicate slots out of range", img.name))?;
                let slots: Vec<u32> = part.iter().map(|s| s.to_native()).collect();
                if !slots.iter().all(|&s| slot_ok(s)) {
                    return Err(format!("store {}: a predicate slot is out of range", img.name));
                }
                if !slots.is_sorted_by(|a, b| a < b) {
                    return Err(format!("store {}: predicate slots are not ascending", img.name));
                }
                let set = SlotSet::from_ascending(slots);
                let v = match value {
                    ArchivedValueImage::Text(s) => MetadataValue::RawString(s.as_str().to_owned()),
                    ArchivedValueImage::Image(b) => MetadataValue::Image(b.as_slice().to_vec()),
                    ArchivedValueImage::Audio(b) => MetadataValue::Audio(b.as_slice().to_vec()),
                };
                index.insert(v, set);
                start = end;
            }
            predicates.insert(p.key.as_str().to_owned(), index);
        }

        let kdtree = match img.kdtree.as_ref() {
            None => None,
            Some(t) => {
                Some(restore_kdtree(t, slots, dimension).map_err(|e| format!("store {}: k-d tree: {e}", img.name))?)
            }
        };
        let hnsw = match img.hnsw.as_ref() {
            None => None,
            Some(g) => Some(restore_hnsw(g, slots).map_err(|e| format!("store {}: HNSW: {e}", img.name))?),
        };

        let mut store = Store {
            dimension,
            arena,
            norms,
            meta,
            free,
            quarantine,
            by_hash: KeyLookup::default(),
            collisions: HashMap::new(),
            predicates,
            kdtree,
            hnsw,
            live,
            bytes: img.bytes.to_native() as usize,
        };
        store.rebuild_key_lookup().map_err(|e| format!("store {}: {e}", img.name))?;
        if store.bytes < live * (ENTRY_OVERHEAD + dimension * 4) {
            return Err(format!("store {}: charged bytes below what its entries need", img.name));
        }
        Ok(store)
    }
}

fn restore_kdtree(t: &ArchivedKdTreeImage, slots: usize, dimension: usize) -> Result<KdTree, String> {
    let n = t.slots.len();
    if [t.axes.len(), t.lefts.len(), t.rights.len(), t.alive.len()].iter().any(|&l| l != n) {
        return Err("node arrays disagree on the node count".into());
    }
    let node_ok = |x: u32| x == kdtree::NONE || (x as usize) < n;
    let mut nodes = ChunkedVec::default();
    let mut node_of_slot = NodeOfSlot::default();
    for i in 0..n {
        let node = kdtree::Node {
            slot: t.slots[i].to_native(),
            axis: t.axes[i].to_native(),
            left: t.lefts[i].to_native(),
            right: t.rights[i].to_native(),
            alive: t.alive[i],
        };
        // Children always come after their parent (built or inserted later), so following
        // them can never loop.
        let child_ok = |c: u32| node_ok(c) && (c == kdtree::NONE || c as usize > i);
        if node.slot as usize >= slots
            || node.axis as usize >= dimension
            || !child_ok(node.left)
            || !child_ok(node.right)
        {
            return Err(format!("node {i} is out of range"));
        }
        if node.alive {
            node_of_slot.insert(node.slot, i as u32);
        }
        nodes.push(node);
    }
    let root = t.root.to_native();
    if !node_ok(root) || (n > 0 && root != 0) {
        return Err("root is out of range".into());
    }
    Ok(KdTree { nodes, root, node_of_slot, unbalanced: t.unbalanced })
}

fn restore_hnsw(g: &ArchivedHnswImage, slots: usize) -> Result<Hnsw, String> {
    let metric = match g.metric {
        0 => Metric::Cosine,
        1 => Metric::Euclidean,
        2 => Metric::DotProduct,
        m => return Err(format!("unknown metric {m}")),
    };
    let config = HnswConfig {
        m: g.m.to_native() as usize,
        ef_construction: g.ef_construction.to_native() as usize,
        ef_search: g.ef_search.to_native() as usize,
        metric,
    };
    let n = g.slots.len();
    if g.alive.len() != n || g.level_ends.len() != n {
        return Err("node arrays disagree on the node count".into());
    }
    let mut nodes = ChunkedVec::new(hnsw::NODE_CHUNK_SHIFT);
    let mut node_of_slot = NodeOfSlot::default();
    let (mut level_start, mut link_start) = (0usize, 0usize);
    for i in 0..n {
        let level_end = g.level_ends[i].to_native() as usize;
        if level_end <= level_start || level_end > g.link_ends.len() || level_end - level_start > hnsw::MAX_LEVEL + 1 {
            return Err(format!("node {i} has a bad level range"));
        }
        let mut links = Vec::with_capacity(level_end - level_start);
        for l in level_start..level_end {
            let link_end = g.link_ends[l].to_native() as usize;
            let part = g.links.get(link_start..link_end).ok_or_else(|| format!("node {i} has a bad link range"))?;
            let level: Vec<u32> = part.iter().map(|x| x.to_native()).collect();
            if level.iter().any(|&x| x as usize >= n) {
                return Err(format!("node {i} links to a missing node"));
            }
            links.push(level);
            link_start = link_end;
        }
        level_start = level_end;
        let slot = g.slots[i].to_native();
        if slot as usize >= slots {
            return Err(format!("node {i} names a slot out of range"));
        }
        if g.alive[i] {
            node_of_slot.insert(slot, i as u32);
        }
        nodes.push(hnsw::Node { slot, links, alive: g.alive[i] });
    }
    let entry = g.entry.to_native();
    let entry = if entry == u32::MAX { None } else { Some(entry) };
    if entry.is_some_and(|e| e as usize >= n) || (entry.is_none() && n > 0) {
        return Err("entry node is out of range".into());
    }
    // Links on a level must exist on the target too: a search follows them at that level.
    for node in nodes.iter() {
        for (level, links) in node.links.iter().enumerate() {
            if links.iter().any(|&t| nodes[t as usize].links.len() <= level) {
                return Err("a link points to a node without that level".into());
            }
        }
    }
    if let Some(e) = entry
        && nodes.iter().any(|nd| nd.links.len() > nodes[e as usize].links.len())
    {
        return Err("entry node is not on the top level".into());
    }
    Ok(Hnsw { config, nodes, node_of_slot, entry })
}

/// The engine's state at one instant, held by reference (see [`Engine::capture`]).
pub struct Capture {
    stores: Vec<(String, String, Arc<Store>)>,
}

impl Capture {
    /// The captured state as an image (a copy; run it off the apply path).
    pub fn image(&self) -> EngineImage {
        self.image_parts().into_owned()
    }

    /// The captured state as an image whose large parts stay in the capture, to be archived
    /// without copying them (see [`super::ArchiveImage`]). Builds the small parts: run it off the
    /// apply path.
    pub fn image_parts(&self) -> EngineImageParts {
        EngineImageParts { stores: self.stores.iter().map(|(schema, name, s)| s.image_parts(schema, name)).collect() }
    }
}

impl Engine {
    /// The state as it is now, by reference: one `Arc` clone per store. Later writes copy the
    /// stores they touch instead of changing what the capture holds.
    pub fn capture(&self) -> Capture {
        let stores = read(&self.stores);
        Capture {
            stores: stores
                .iter()
                .map(|(schema, name, s)| (schema.to_owned(), name.to_owned(), read(s).clone()))
                .collect(),
        }
    }

    /// A copy of the whole state as an image.
    pub fn image(&self) -> EngineImage {
        self.capture().image()
    }

    /// An engine with `limits` holding the state of an archived image, in memory of its own.
    pub fn restore(img: &ArchivedEngineImage, limits: Limits) -> Result<Engine, String> {
        Self::restore_from(img, None, limits)
    }

    /// Like [`Engine::restore`], for an image that lies inside `backing`: vectors and norms
    /// are read in place there until written, and `backing` is kept as long as they are.
    pub fn restore_backed(
        img: &ArchivedEngineImage,
        backing: Arc<dyn Backing>,
        limits: Limits,
    ) -> Result<Engine, String> {
        Self::restore_from(img, Some(&backing), limits)
    }

    fn restore_from(
        img: &ArchivedEngineImage,
        backing: Option<&Arc<dyn Backing>>,
        limits: Limits,
    ) -> Result<Engine, String> {
        let mut stores = Catalog::default();
        let mut used = 0usize;
        for s in img.stores.iter() {
            let store = Store::restore(s, backing)?;
            used += store.bytes();
            let (schema, name) = (s.schema.as_str().to_owned(), s.name.as_str().to_owned());
            if stores.insert(schema, name, Arc::new(RwLock::new(Arc::new(store)))).is_some() {
                return Err(format!("store {}.{} appears twice", s.schema, s.name));
            }
        }
        Ok(Engine { limits, stores: RwLock::new(stores), writes: Mutex::new(()), used_bytes: Mutex::new(used) })
    }
}
