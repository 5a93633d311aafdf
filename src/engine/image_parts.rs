//! A store's image with its three large parts (the vectors, the norms and the metadata bytes)
//! left in the store's shared chunks, each held by a clone of its `Arc`. It archives byte for
//! byte as the [`StoreImage`] that [`StoreImageParts::into_owned`] makes, so a snapshot is
//! written from a capture with no copy of the state in between: the chunks are streamed into
//! the archive one after another. Only the small parts (spans, free lists, indexes) are built.

use std::io::Write;
use std::sync::Arc;

use rkyv::api::high::HighSerializer;
use rkyv::rancor::{Fallible, Source};
use rkyv::ser::allocator::ArenaHandle;
use rkyv::ser::writer::IoWriter;
use rkyv::ser::{Allocator, Writer, WriterExt};
use rkyv::vec::{ArchivedVec, VecResolver};
use rkyv::{Archive, Archived, Place, Serialize, SerializeUnsized};

use super::image::{
    ArchivedEngineImage, ArchivedStoreImage, EngineImage, HnswImage, KdTreeImage, PredicateImage, StoreImage,
};
use super::rows::Rows;

/// An engine state that can be archived as an [`EngineImage`].
pub trait ArchiveImage {
    /// Writes the archive of this state to `out`, front to back.
    fn archive_to(&self, out: &mut dyn Write) -> Result<(), rkyv::rancor::Error>;
}

/// What `rkyv`'s high-level API serializes into a stream.
type StreamSerializer<'w, 'a> = HighSerializer<IoWriter<&'w mut dyn Write>, ArenaHandle<'a>, rkyv::rancor::Error>;

/// Any type whose archive is an [`ArchivedEngineImage`] ([`EngineImage`], copied out, and
/// [`EngineImageParts`], from the capture's chunks), so a snapshot of it reads back as one.
impl<T> ArchiveImage for T
where
    T: Archive<Archived = ArchivedEngineImage> + for<'w, 'a> Serialize<StreamSerializer<'w, 'a>>,
{
    fn archive_to(&self, out: &mut dyn Write) -> Result<(), rkyv::rancor::Error> {
        rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(self, IoWriter::new(out)).map(drop)
    }
}

/// Every store of a capture, as [`StoreImageParts`]; archives as an [`EngineImage`].
#[derive(Archive, Serialize)]
#[rkyv(as = ArchivedEngineImage)]
pub struct EngineImageParts {
    pub(super) stores: Vec<StoreImageParts>,
}

impl EngineImageParts {
    /// The same image with every part copied out.
    pub fn into_owned(self) -> EngineImage {
        EngineImage { stores: self.stores.into_iter().map(StoreImageParts::into_owned).collect() }
    }
}

/// One store's image, its large parts shared with the store (see the module comment); the
/// fields are [`StoreImage`]'s.
#[derive(Archive, Serialize)]
#[rkyv(as = ArchivedStoreImage)]
pub(super) struct StoreImageParts {
    pub(super) schema: String,
    pub(super) name: String,
    pub(super) dimension: u32,
    pub(super) arena: RowsPart,
    pub(super) norms: RowsPart,
    pub(super) meta_bytes: MetaBytesPart,
    pub(super) meta_offsets: Vec<u64>,
    pub(super) meta_lens: Vec<u32>,
    pub(super) meta_garbage: u64,
    pub(super) free: Vec<u32>,
    pub(super) quarantine: Vec<u32>,
    pub(super) live: u64,
    pub(super) bytes: u64,
    pub(super) predicates: Vec<PredicateImage>,
    pub(super) kdtree: Option<KdTreeImage>,
    pub(super) hnsw: Option<HnswImage>,
}

impl StoreImageParts {
    /// The same image with its large parts copied into vectors of their own.
    pub(super) fn into_owned(self) -> StoreImage {
        StoreImage {
            schema: self.schema,
            name: self.name,
            dimension: self.dimension,
            arena: self.arena.0.to_vec(),
            norms: self.norms.0.to_vec(),
            meta_bytes: self.meta_bytes.to_vec(),
            meta_offsets: self.meta_offsets,
            meta_lens: self.meta_lens,
            meta_garbage: self.meta_garbage,
            free: self.free,
            quarantine: self.quarantine,
            live: self.live,
            bytes: self.bytes,
            predicates: self.predicates,
            kdtree: self.kdtree,
            hnsw: self.hnsw,
        }
    }
}

/// A store's rows, archived as one vector of their floats.
pub(super) struct RowsPart(pub(super) Rows);

impl Archive for RowsPart {
    type Archived = ArchivedVec<Archived<f32>>;
    type Resolver = VecResolver;

    fn resolve(&self, resolver: VecResolver, out: Place<Self::Archived>) {
        ArchivedVec::resolve_from_len(self.0.float_count(), resolver, out);
    }
}

impl<S: Fallible + Allocator + Writer + ?Sized> Serialize<S> for RowsPart
where
    S::Error: Source,
{
    fn serialize(&self, serializer: &mut S) -> Result<VecResolver, S::Error> {
        back_to_back(self.0.chunks().map(|(_, c)| c), serializer)
    }
}

/// A store's metadata arena, archived as one vector of its chunks' bytes.
pub(super) struct MetaBytesPart(pub(super) Vec<Arc<Vec<u8>>>);

impl MetaBytesPart {
    /// Bytes in all the chunks.
    fn len(&self) -> usize {
        self.0.iter().map(|c| c.len()).sum()
    }

    fn to_vec(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.len());
        self.0.iter().for_each(|c| bytes.extend_from_slice(c));
        bytes
    }
}

impl Archive for MetaBytesPart {
    type Archived = ArchivedVec<u8>;
    type Resolver = VecResolver;

    fn resolve(&self, resolver: VecResolver, out: Place<Self::Archived>) {
        ArchivedVec::resolve_from_len(self.len(), resolver, out);
    }
}

impl<S: Fallible + Allocator + Writer + ?Sized> Serialize<S> for MetaBytesPart
where
    S::Error: Source,
{
    fn serialize(&self, serializer: &mut S) -> Result<VecResolver, S::Error> {
        back_to_back(self.0.iter().map(|c| c.as_slice()), serializer)
    }
}

/// Writes `parts` one after another as the elements of one archived vector; returns its
/// resolver. Each part is aligned for `T` and a whole number of `T`, so no padding can fall
/// between two parts.
fn back_to_back<'p, T, S>(parts: impl Iterator<Item = &'p [T]>, serializer: &mut S) -> Result<VecResolver, S::Error>
where
    T: Serialize<S> + 'p,
    S: Fallible + Allocator + Writer + ?Sized,
    S::Error: Source,
{
    let start = serializer.align_for::<T::Archived>()?;
    for part in parts {
        part.serialize_unsized(serializer)?;
    }
    Ok(VecResolver::from_pos(start))
}
