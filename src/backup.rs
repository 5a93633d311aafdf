//! Backup files: receiving one from a running node (`cluster backup`), checking and describing
//! one (`snapshot verify`, `snapshot inspect`), and making a data directory from one
//! (`restore`). A backup file is a snapshot file (layout in [`crate::snapshot`]), with its
//! header and body checksums and the archive validated before anything trusts it.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use openraft::storage::RaftLogStorage;
use openraft::{BasicNode, Membership, StoredMembership};
use tonic::transport::Channel;

use crate::engine::{Engine, Limits, Query, Response};
use crate::progress::{Progress, Summary};
use crate::proto::admin as pb;
use crate::proto::admin::cluster_admin_client::ClusterAdminClient;
use crate::raft::codec::{SnapshotMetaStd, decode_snapshot_meta, encode_snapshot_meta};
use crate::raft::log_store::LogStore;
use crate::raft::types::TypeConfig;
use crate::server::identity::{ClusterId, ClusterIdentity, resolve_node_id};
use crate::snapshot::{MappedSnapshot, SnapshotId, SnapshotStore};
use crate::wal::WalOptions;

/// A checked backup file and the Raft meta it carries.
pub struct Backup {
    file: MappedSnapshot,
    meta: SnapshotMetaStd,
}

impl Backup {
    /// Opens `path` and checks it whole: header and body checksums, length, the archive and
    /// the meta. The error names the file and what failed where.
    pub fn open(path: &Path) -> Result<Self, String> {
        // The id is read from the meta once the file has passed its checks.
        let file = MappedSnapshot::open(path, SnapshotId { index: 0, term: 0 }).map_err(|e| e.to_string())?;
        let meta = decode_snapshot_meta(file.meta()).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.last_log_id.is_none() {
            return Err(format!("{}: the snapshot holds no log position", path.display()));
        }
        Ok(Self { file, meta })
    }

    /// The last log position the copy holds.
    pub fn id(&self) -> SnapshotId {
        self.meta
            .last_log_id
            .map_or(SnapshotId { index: 0, term: 0 }, |l| SnapshotId { index: l.index, term: l.leader_id.term })
    }

    /// The state in the copy, restored into an engine (what a node starting from it serves).
    pub fn engine(&self) -> Result<Engine, String> {
        let image = self.file.image().map_err(|e| e.to_string())?;
        Engine::restore(image, Limits::default())
    }

    /// What `snapshot inspect` prints: the log position, the membership, every store with its
    /// entries, dimension and indexes, and the checksum.
    pub fn describe(&self) -> Result<String, String> {
        let mut out = String::new();
        let id = self.id();
        let _ = writeln!(
            out,
            "{}: snapshot {id}, {} bytes, checksums and archive valid",
            self.file.path().display(),
            self.file.bytes().len()
        );
        let m = self.meta.last_membership.membership();
        let voters: BTreeSet<u64> = m.voter_ids().collect();
        let _ = writeln!(
            out,
            "membership (at index {}): voters {voters:?}",
            self.meta.last_membership.log_id().map_or(0, |l| l.index)
        );
        for (node_id, node) in m.nodes() {
            let _ = writeln!(out, "  node {node_id} at {}", node.addr);
        }
        let engine = self.engine()?;
        let counts = engine.entry_counts();
        let schemas: BTreeSet<String> = counts.iter().map(|(s, _)| s.schema().to_string()).collect();
        let _ = writeln!(
            out,
            "stores: {} in {} schema(s), {} bytes of entries",
            counts.len(),
            schemas.len(),
            engine.used_bytes()
        );
        for schema in schemas {
            let Ok(Response::Stores(stores)) = engine.query(&Query::ListStores { schema: Some(schema.clone()) }) else {
                return Err(format!("listing the stores of schema {schema:?}"));
            };
            for s in stores {
                let non_linear: Vec<String> = s.non_linear_indexes.iter().map(|i| format!("{:?}", i.kind())).collect();
                let _ = writeln!(
                    out,
                    "  {schema}.{}: {} entries, dimension {}, predicate indexes {:?}, non-linear indexes {:?}",
                    s.name, s.len, s.dimension, s.predicate_indexes, non_linear
                );
            }
        }
        Ok(out)
    }
}

/// Receives a backup from `client` into `out` (which must not exist): written to
/// `out.partial`, synced, checked whole, then renamed into place. Progress goes to stderr
/// every few seconds; returns what to print.
pub async fn receive(
    client: &mut ClusterAdminClient<Channel>,
    out: &Path,
    max_age: Duration,
) -> Result<String, String> {
    if out.exists() {
        return Err(format!("{} exists; a backup never overwrites a file", out.display()));
    }
    let partial = PathBuf::from(format!("{}.partial", out.display()));
    let mut stream = client
        .backup(pb::BackupRequest { max_age_seconds: max_age.as_secs() })
        .await
        .map_err(|s| format!("{}: {}", s.code(), s.message()))?
        .into_inner();
    let header = match stream.message().await.map_err(|s| format!("{}: {}", s.code(), s.message()))? {
        Some(pb::BackupChunk { kind: Some(pb::backup_chunk::Kind::Header(h)) }) => h,
        _ => return Err("the node's backup stream does not start with its header".into()),
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial)
        .map_err(|e| format!("creating {}: {e}", partial.display()))?;
    let started = Instant::now();
    let mut progress = Progress::start(format!("backup to {}", out.display()), Some(header.length));
    let mut last_report = Instant::now();
    let result: Result<(), String> = async {
        while let Some(chunk) = stream.message().await.map_err(|s| format!("{}: {}", s.code(), s.message()))? {
            let Some(pb::backup_chunk::Kind::Data(bytes)) = chunk.kind else {
                return Err("the node's backup stream carries a second header".into());
            };
            if progress.done() + bytes.len() as u64 > header.length {
                return Err(format!("the node sent more than the {} bytes it announced", header.length));
            }
            file.write_all(&bytes).map_err(|e| format!("writing {}: {e}", partial.display()))?;
            progress.advance(bytes.len() as u64);
            if last_report.elapsed() >= crate::progress::REPORT_EVERY {
                last_report = Instant::now();
                eprintln!("backup to {}: {}", out.display(), progress.summary());
            }
        }
        if progress.done() != header.length {
            return Err(format!(
                "the stream ended at offset {} of the {} bytes announced",
                progress.done(),
                header.length
            ));
        }
        file.sync_all().map_err(|e| format!("syncing {}: {e}", partial.display()))?;
        let backup = Backup::open(&partial)?;
        let id = backup.id();
        if (id.index, id.term) != (header.last_index, header.last_term) {
            return Err(format!("the file holds snapshot {id}, not the one announced"));
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, out).map_err(|e| format!("renaming {} to {}: {e}", partial.display(), out.display()))?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| format!("syncing {}: {e}", dir.display()))?;
    }
    let summary = Summary::of(header.length, None, started.elapsed());
    Ok(format!(
        "backup of the state up to log index {} (term {}) written to {}: {summary}, checked\n",
        header.last_index,
        header.last_term,
        out.display()
    ))
}

/// Makes `data_dir` (which must not exist or be empty) a data directory that starts as a new
/// single-node cluster (a new cluster id) holding exactly the state in the backup `from`: node
/// `id` (or a new random one) at `advertise`, the address it will serve on. Returns what to
/// print.
pub async fn restore(from: &Path, data_dir: &Path, id: Option<u64>, advertise: &str) -> Result<String, String> {
    let started = Instant::now();
    if std::fs::read_dir(data_dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(format!("{} is not empty; restore makes a new data directory", data_dir.display()));
    }
    let backup = Backup::open(from)?;
    let last = backup.meta.last_log_id.ok_or("the backup holds no log position")?;
    std::fs::create_dir_all(data_dir).map_err(|e| format!("creating {}: {e}", data_dir.display()))?;
    let id = resolve_node_id(data_dir, id).map_err(|e| e.to_string())?;
    let me = BasicNode { addr: advertise.to_string() };
    let membership = Membership::new(vec![BTreeSet::from([id])], std::collections::BTreeMap::from([(id, me)]))
        .map_err(|e| format!("the new membership: {e}"))?;
    let meta =
        SnapshotMetaStd { last_log_id: Some(last), last_membership: StoredMembership::new(Some(last), membership) };
    let snapshots = SnapshotStore::open(data_dir.join("snapshots")).map_err(|e| e.to_string())?;
    snapshots.write_body(backup.id(), &encode_snapshot_meta(&meta), backup.file.body()).map_err(|e| e.to_string())?;
    // The log starts where the copy ends, with this node's vote in its term: the node starts
    // from it (not as an empty node that would bootstrap) and elects itself in the next term.
    let mut log =
        LogStore::<TypeConfig>::open(data_dir.join("log"), WalOptions::default()).map_err(|e| e.to_string())?;
    log.save_vote(&openraft::Vote::new(last.leader_id.term, id)).await.map_err(|e| e.to_string())?;
    log.purge(last).await.map_err(|e| e.to_string())?;
    log.wal().sync().map_err(|e| format!("syncing the new log: {e}"))?;
    drop(log);
    let cluster = ClusterIdentity::load(data_dir).map_err(|e| e.to_string())?;
    let cluster_id = cluster.adopt(ClusterId::generate()?)?;
    Ok(format!(
        "restored the state up to log index {} (term {}) from {} into {} in {:.2} s: node {id} of the new cluster \
         {cluster_id}, at {advertise}\nstart it with: ahnlich-raft serve --data-dir {} --id {id} --listen {advertise}\n",
        last.index,
        last.leader_id.term,
        from.display(),
        data_dir.display(),
        started.elapsed().as_secs_f64(),
        data_dir.display(),
    ))
}
