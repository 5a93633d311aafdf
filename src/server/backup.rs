//! The sending side of `cluster backup`: a consistent copy of the node's whole state, streamed
//! from a snapshot file. The copy is the newest snapshot when it holds everything applied when
//! the call came in or is younger than the caller's limit; otherwise a fresh snapshot is taken
//! first. The file stays mapped while it streams, so a newer snapshot replacing it meanwhile
//! does not disturb the copy.

use std::pin::Pin;
use std::time::{Duration, SystemTime};

use futures_util::{Stream, StreamExt, stream};
use openraft::async_runtime::watch::WatchReceiver;
use tonic::Status;

use super::context::NodeContext;
use crate::proto::admin as pb;
use crate::raft::state_machine::SnapshotData;

/// Bytes per message of the stream.
const CHUNK_BYTES: usize = 1 << 20;

/// How long taking a fresh snapshot may take.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(600);

/// The stream of one backup.
pub type BackupStream = Pin<Box<dyn Stream<Item = Result<pb::BackupChunk, Status>> + Send>>;

fn age(snapshot: &SnapshotData) -> Option<Duration> {
    let modified = std::fs::metadata(snapshot.path()).and_then(|m| m.modified()).ok()?;
    SystemTime::now().duration_since(modified).ok()
}

/// The snapshot a backup asked for with `max_age` sends, taking one if need be.
async fn snapshot_to_send(ctx: &NodeContext, max_age: Duration) -> Result<SnapshotData, Status> {
    let applied = ctx.raft.metrics().borrow_watched().last_applied;
    if let Some(newest) = ctx.state.current_snapshot() {
        let covers_all = applied.is_some_and(|a| a.index == newest.id().index);
        let young = age(&newest).is_some_and(|a| a <= max_age);
        if covers_all || young {
            return Ok(newest);
        }
    }
    ctx.raft.trigger().snapshot().await.map_err(|e| Status::unavailable(format!("taking a snapshot: {e}")))?;
    ctx.raft
        .wait(Some(SNAPSHOT_WAIT))
        .metrics(|m| m.snapshot >= applied, "snapshot taken")
        .await
        .map_err(|e| Status::deadline_exceeded(format!("the snapshot for the backup did not complete: {e}")))?;
    ctx.state.current_snapshot().ok_or_else(|| Status::failed_precondition("this node holds no state to back up yet"))
}

/// A backup of the node `ctx` describes, from a snapshot at most `max_age` old.
pub async fn backup(ctx: &NodeContext, max_age: Duration) -> Result<BackupStream, Status> {
    let snapshot = snapshot_to_send(ctx, max_age).await?;
    let id = snapshot.id();
    let length = snapshot.bytes().len();
    tracing::info!("node {} sends a backup: snapshot {id}, {length} bytes", ctx.id);
    let header = pb::BackupChunk {
        kind: Some(pb::backup_chunk::Kind::Header(pb::BackupHeader {
            length: length as u64,
            last_index: id.index,
            last_term: id.term,
        })),
    };
    // Each chunk is copied out of the map only when the transport asks for it.
    let data = stream::iter(0..length.div_ceil(CHUNK_BYTES)).map(move |i| {
        let bytes = &snapshot.bytes()[i * CHUNK_BYTES..((i + 1) * CHUNK_BYTES).min(length)];
        Ok(pb::BackupChunk { kind: Some(pb::backup_chunk::Kind::Data(bytes.to_vec())) })
    });
    Ok(Box::pin(stream::iter([Ok(header)]).chain(data)))
}
