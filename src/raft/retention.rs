//! Log retention by bytes: openraft keeps a number of entries behind each snapshot; this also
//! keeps their size on disk within a bound, and removes snapshots the log no longer needs.

use openraft::Raft;
use openraft::async_runtime::watch::WatchReceiver;

use super::log_store::LogWatch;
use super::state_machine::StateMachine;
use super::types::TypeConfig;

/// Keeps the log behind each new snapshot within `max_bytes` (openraft counts only entries),
/// and deletes older snapshots once the log no longer reaches back to them.
pub async fn retain_log(raft: Raft<TypeConfig, StateMachine>, log: LogWatch, state: StateMachine, max_bytes: u64) {
    let mut metrics = raft.metrics();
    let (mut seen_snapshot, mut seen_purged) = (None, None);
    while metrics.changed().await.is_ok() {
        let m = metrics.borrow_watched().clone();
        if m.purged != seen_purged {
            seen_purged = m.purged;
            if let Some(p) = m.purged {
                // File-system work: off the threads that drive Raft.
                let state = state.clone();
                match tokio::task::spawn_blocking(move || state.log_purged(p.index)).await {
                    Ok(Ok(_removed)) => {}
                    Ok(Err(e)) => tracing::warn!("removing snapshots the log no longer covers: {e}"),
                    Err(e) => tracing::warn!("removing snapshots the log no longer covers: the task failed: {e}"),
                }
            }
        }
        if m.snapshot == seen_snapshot {
            continue;
        }
        seen_snapshot = m.snapshot;
        let Some(snapshot) = m.snapshot else { continue };
        let Some(keep_from) = log.tail_start_within(snapshot.index, max_bytes) else { return };
        let upto = keep_from.saturating_sub(1).min(snapshot.index);
        if keep_from > 0 && m.purged.is_none_or(|p| p.index < upto) {
            tracing::info!("purging the log up to {upto}: more than {max_bytes} bytes lay behind snapshot {snapshot}");
            if raft.trigger().purge_log(upto).await.is_err() {
                return;
            }
        }
    }
}
