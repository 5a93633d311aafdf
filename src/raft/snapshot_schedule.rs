//! When a node takes a snapshot on its own.
//!
//! A snapshot rewrites the whole state. openraft's policy counts entries only, so a node with a
//! large state taking small writes would rewrite hundreds of megabytes for every few megabytes of
//! log. Here a snapshot is due once enough entries were applied since the last one *and* the log
//! they take has grown to a set share of that snapshot's size, or as soon as that log reaches a
//! set number of bytes, however few entries hold them. The bytes written for snapshots then stay
//! within a fixed multiple of the bytes written to the log for any state up to a size, and the
//! log kept (and replayed at a restart, and indexed in memory) stays within that share of the
//! state's size and that number of bytes, even when each entry is a large batch. A small state
//! is still snapshotted every `every_entries` entries.

use std::time::{Duration, Instant};

use openraft::Raft;
use openraft::async_runtime::watch::WatchReceiver;

use super::log_store::LogWatch;
use super::state_machine::StateMachine;
use super::types::TypeConfig;

/// When a snapshot is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotSchedule {
    /// Entries applied since the last snapshot before another is due, unless their log reaches
    /// `log_bytes_enough` first; 0: never on its own.
    pub every_entries: u64,
    /// The log written since the last snapshot must also reach this percentage of that
    /// snapshot's size; 0: the entry count alone decides.
    pub log_percent: u64,
    /// Bytes of log since the last snapshot that make a snapshot due on their own, however
    /// large the state and however few entries hold them.
    pub log_bytes_enough: u64,
}

/// A request for a snapshot that has not produced one by then is made again (openraft drops a
/// request while a snapshot is being built; that build's end is normally what re-arms).
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(10);

impl SnapshotSchedule {
    /// Whether a snapshot is due after `entries` entries taking `log_bytes` of log were applied
    /// since the last snapshot, which took `snapshot_bytes` (0 if there is none).
    pub fn is_due(&self, entries: u64, log_bytes: u64, snapshot_bytes: u64) -> bool {
        let share_reached = u128::from(log_bytes) * 100 >= u128::from(snapshot_bytes) * u128::from(self.log_percent);
        self.every_entries > 0 && (log_bytes >= self.log_bytes_enough || entries >= self.every_entries && share_reached)
    }
}

/// Asks `raft` for a snapshot whenever `schedule` says one is due, until the node stops or its
/// log closes.
pub async fn take_snapshots(
    raft: Raft<TypeConfig, StateMachine>,
    log: LogWatch,
    state: StateMachine,
    schedule: SnapshotSchedule,
) {
    if schedule.every_entries == 0 {
        return;
    }
    let mut metrics = raft.metrics();
    let mut asked: Option<Request<_>> = None;
    while metrics.changed().await.is_ok() {
        let (applied, snapshot) = {
            let m = metrics.borrow_watched();
            (m.last_applied, m.snapshot)
        };
        let Some(applied) = applied else { continue };
        if asked.as_ref().is_some_and(|r| r.is_pending(&snapshot, Instant::now())) {
            continue;
        }
        let first_new = snapshot.map_or(0, |s| s.index + 1);
        let entries = (applied.index + 1).saturating_sub(first_new);
        let Some(log_bytes) = log.bytes_in(first_new, applied.index) else { return };
        let snapshot_bytes = state.current_snapshot().map_or(0, |s| s.bytes().len() as u64);
        if !schedule.is_due(entries, log_bytes, snapshot_bytes) {
            continue;
        }
        tracing::info!(
            "taking a snapshot: {entries} entries ({log_bytes} bytes of log) applied since the last one ({snapshot_bytes} bytes)"
        );
        if raft.trigger().snapshot().await.is_err() {
            return;
        }
        asked = Some(Request { on: snapshot, at: Instant::now() });
    }
}

/// A request for a snapshot: the snapshot it was made on top of (a log id), and when.
struct Request<S> {
    on: S,
    at: Instant,
}

impl<S: PartialEq> Request<S> {
    /// Whether, with `snapshot` the newest snapshot at `now`, this request may still produce
    /// one, so that asking again would only be dropped: no snapshot has come since, and it is
    /// younger than [`ASK_AGAIN_AFTER`].
    fn is_pending(&self, snapshot: &S, now: Instant) -> bool {
        self.on == *snapshot && now.saturating_duration_since(self.at) < ASK_AGAIN_AFTER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HALF: SnapshotSchedule = SnapshotSchedule { every_entries: 100, log_percent: 50, log_bytes_enough: 1 << 20 };

    #[test]
    fn the_first_snapshot_is_due_after_the_entry_count() {
        assert!(!HALF.is_due(99, (1 << 20) - 1, 0));
        assert!(HALF.is_due(100, 1, 0));
    }

    #[test]
    fn a_later_one_also_waits_for_its_share_of_the_last_snapshots_size() {
        assert!(!HALF.is_due(10_000, 499, 1_000));
        assert!(HALF.is_due(10_000, 500, 1_000));
        assert!(!HALF.is_due(99, 500, 1_000), "the entry count still applies");
    }

    #[test]
    fn a_large_enough_log_is_enough_whatever_the_snapshots_size() {
        assert!(!HALF.is_due(10_000, (1 << 20) - 1, 1 << 40));
        assert!(HALF.is_due(10_000, 1 << 20, 1 << 40));
    }

    #[test]
    fn a_large_enough_log_is_enough_however_few_entries_hold_it() {
        // Large batches: the log's bytes bound it before the entry count is reached.
        assert!(HALF.is_due(1, 1 << 20, 1 << 40));
        assert!(HALF.is_due(99, 1 << 30, 0));
        assert!(!HALF.is_due(99, (1 << 20) - 1, 0), "below the set bytes the entry count applies");
    }

    #[test]
    fn a_zero_share_counts_entries_only_and_zero_entries_never_snapshots() {
        let entries_only = SnapshotSchedule { log_percent: 0, ..HALF };
        assert!(entries_only.is_due(100, 0, u64::MAX));
        let never = SnapshotSchedule { every_entries: 0, ..HALF };
        assert!(!never.is_due(u64::MAX, u64::MAX, 0));
    }

    #[test]
    fn a_request_is_made_again_once_a_snapshot_came_or_it_went_unanswered_too_long() {
        let at = Instant::now();
        let request = Request { on: Some(7u64), at };
        assert!(request.is_pending(&Some(7), at));
        assert!(request.is_pending(&Some(7), at + ASK_AGAIN_AFTER - Duration::from_millis(1)));
        assert!(!request.is_pending(&Some(7), at + ASK_AGAIN_AFTER), "unanswered for too long");
        assert!(!request.is_pending(&Some(9), at), "a newer snapshot came");
        assert!(!Request { on: None::<u64>, at }.is_pending(&Some(9), at), "the first snapshot came");
    }

    #[test]
    fn the_largest_sizes_do_not_overflow() {
        let most = SnapshotSchedule { every_entries: 1, log_percent: u64::MAX, log_bytes_enough: u64::MAX };
        assert!(!most.is_due(1, u64::MAX - 1, u64::MAX));
        assert!(most.is_due(1, u64::MAX - 1, 0));
        assert!(most.is_due(1, u64::MAX, u64::MAX), "the set bytes are enough");
    }
}
