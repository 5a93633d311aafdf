//! The entries the instruction-counting harnesses write: 128-d keys and three metadata fields,
//! as upstream Ahnlich's load profile has them.

use ahnlich_raft::engine::{Entry, Metadata, MetadataValue};
use ahnlich_raft::wal::sim_fs::SimRng;

/// Components of each key.
pub const DIM: usize = 128;

/// Entry `i`: a random key from `rng`, and metadata derived from `i`.
pub fn entry(rng: &mut SimRng, i: u64) -> Entry {
    Entry {
        key: (0..DIM).map(|_| (rng.below(1 << 20) as f32 / (1 << 19) as f32) - 1.0).collect(),
        value: Metadata::from([
            ("author".to_string(), MetadataValue::RawString(format!("author-{}", i % 100))),
            ("lang".to_string(), MetadataValue::RawString(["en", "fr", "yo"][(i % 3) as usize].to_string())),
            ("id".to_string(), MetadataValue::RawString(i.to_string())),
        ]),
    }
}
