//! Who a node is and which cluster it belongs to, both kept in small files of its data
//! directory and written durably (temporary file, fsync, rename, directory fsync).
//!
//! | file         | content                                           | written                        |
//! |--------------|---------------------------------------------------|--------------------------------|
//! | `node-id`    | the node id in decimal, then `\n`                 | once, before first use         |
//! | `cluster-id` | 32 lowercase hex digits (128 random bits), `\n`   | at bootstrap, or when adopted  |
//!
//! The node id is given or generated once and never derived from an address. The cluster id
//! is made when a node bootstraps a cluster; a node that joins (or is added) adopts the id its
//! first authenticated peer sends, while it has none. From then on every Raft and admin call
//! between nodes carries it, and a call from another cluster is refused before it is decoded
//! (see [`super::gate`]). Log ids carry only terms and indexes, so without it two clusters'
//! histories could be mistaken for one.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use super::node::NodeError;

/// Name of the file in the data directory holding the node id.
pub const NODE_ID_FILE: &str = "node-id";

/// Name of the file in the data directory holding the cluster id.
pub const CLUSTER_ID_FILE: &str = "cluster-id";

/// A cluster's identity: 128 random bits, shown as 32 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterId(u128);

impl ClusterId {
    /// A new random cluster id from the operating system's generator.
    pub fn generate() -> Result<Self, String> {
        let mut bytes = [0u8; 16];
        getrandom::getrandom(&mut bytes).map_err(|e| format!("no randomness for a cluster id: {e}"))?;
        Ok(Self(u128::from_le_bytes(bytes)))
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl std::str::FromStr for ClusterId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(format!("{s:?} is not a cluster id (32 lowercase hex digits)"));
        }
        u128::from_str_radix(s, 16).map(Self).map_err(|e| format!("{s:?} is not a cluster id: {e}"))
    }
}

/// The cluster this node belongs to, if it knows yet; shared by the node's services and the
/// interceptor that stamps outgoing peer calls.
#[derive(Debug)]
pub struct ClusterIdentity {
    dir: PathBuf,
    id: RwLock<Option<ClusterId>>,
}

impl ClusterIdentity {
    /// Reads the cluster id stored in `dir`, if any.
    pub fn load(dir: &Path) -> Result<Self, NodeError> {
        let path = dir.join(CLUSTER_ID_FILE);
        let id = match std::fs::read_to_string(&path) {
            Ok(text) => Some(
                text.trim()
                    .parse::<ClusterId>()
                    .map_err(|e| NodeError::Identity(format!("{}: {e}", path.display())))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(NodeError::Identity(format!("reading {}: {e}", path.display()))),
        };
        Ok(Self { dir: dir.to_path_buf(), id: RwLock::new(id) })
    }

    /// A node that belongs to no cluster and stores nothing (tests of the refusal rules).
    pub fn unstored(id: Option<ClusterId>) -> Self {
        Self { dir: PathBuf::new(), id: RwLock::new(id) }
    }

    /// The cluster id, if this node has one.
    pub fn get(&self) -> Option<ClusterId> {
        *self.id.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `id` this node's cluster id, durably, unless it already has one; returns the id
    /// it holds afterwards (the earlier one if there was one).
    pub fn adopt(&self, id: ClusterId) -> Result<ClusterId, String> {
        let mut slot = self.id.write().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = *slot {
            return Ok(held);
        }
        if !self.dir.as_os_str().is_empty() {
            write_durably(&self.dir, CLUSTER_ID_FILE, &format!("{id}\n"))
                .map_err(|e| format!("storing the cluster id in {}: {e}", self.dir.display()))?;
        }
        tracing::info!("this node now belongs to cluster {id}");
        *slot = Some(id);
        Ok(id)
    }
}

/// The node id: `explicit` if given (it must match a stored one), else the stored one, else a
/// new random id, stored durably before it is used.
pub fn resolve_node_id(dir: &Path, explicit: Option<u64>) -> Result<u64, NodeError> {
    let path = dir.join(NODE_ID_FILE);
    let stored = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text.trim().parse::<u64>().map_err(|e| {
            NodeError::Identity(format!("{} holds {:?}, not a node id: {e}", path.display(), text.trim()))
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(NodeError::Identity(format!("reading {}: {e}", path.display()))),
    };
    match (stored, explicit) {
        (Some(s), Some(e)) if s != e => Err(NodeError::Identity(format!(
            "this data directory belongs to node {s} ({}), not node {e}",
            path.display()
        ))),
        (Some(s), _) => Ok(s),
        (None, e) => {
            let id = e.unwrap_or_else(random_node_id);
            write_durably(dir, NODE_ID_FILE, &format!("{id}\n"))
                .map_err(|e| NodeError::Identity(format!("storing {}: {e}", path.display())))?;
            Ok(id)
        }
    }
}

fn random_node_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    // Keep ids readable and positive in every client: 1..2^53.
    (h.finish() >> 11).max(1)
}

/// Writes `name` in `dir` so that after a crash it holds either nothing (or its old content)
/// or all of `content`.
fn write_durably(dir: &Path, name: &str, content: &str) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, content)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_id_is_generated_once_and_kept() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let id = resolve_node_id(dir.path(), None).expect("generated");
        assert!(id >= 1);
        assert_eq!(resolve_node_id(dir.path(), None).expect("stored"), id);
        assert_eq!(resolve_node_id(dir.path(), Some(id)).expect("same explicit id"), id);
        let err = resolve_node_id(dir.path(), Some(id + 1)).expect_err("another id");
        assert!(err.to_string().contains(&format!("belongs to node {id}")), "{err}");
    }

    #[test]
    fn an_explicit_id_is_stored_and_a_damaged_id_file_is_an_error() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        assert_eq!(resolve_node_id(dir.path(), Some(7)).expect("explicit"), 7);
        assert_eq!(resolve_node_id(dir.path(), None).expect("stored"), 7);
        std::fs::write(dir.path().join(NODE_ID_FILE), "seven\n").expect("write");
        let err = resolve_node_id(dir.path(), None).expect_err("garbage");
        assert!(err.to_string().contains("not a node id"), "{err}");
    }

    #[test]
    fn a_cluster_id_is_adopted_once_stored_and_read_back() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let identity = ClusterIdentity::load(dir.path()).expect("load");
        assert_eq!(identity.get(), None);
        let (a, b) = (ClusterId::generate().expect("a"), ClusterId::generate().expect("b"));
        assert_ne!(a, b);
        assert_eq!(identity.adopt(a).expect("adopt"), a);
        assert_eq!(identity.adopt(b).expect("kept"), a, "a node keeps the first cluster id it adopts");
        let reloaded = ClusterIdentity::load(dir.path()).expect("reload");
        assert_eq!(reloaded.get(), Some(a));
        assert_eq!(a.to_string().parse::<ClusterId>().expect("round trip"), a);
    }

    #[test]
    fn a_damaged_cluster_id_file_is_an_error() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        std::fs::write(dir.path().join(CLUSTER_ID_FILE), "not-hex\n").expect("write");
        let err = ClusterIdentity::load(dir.path()).expect_err("garbage");
        assert!(err.to_string().contains("is not a cluster id"), "{err}");
        assert!("ABCDEF0123456789abcdef0123456789".parse::<ClusterId>().is_err(), "upper case is not canonical");
    }
}
