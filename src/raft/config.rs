//! The Raft settings a node runs with.

use openraft::{Config, ConfigError, SnapshotPolicy};

use super::snapshot_schedule::SnapshotSchedule;

/// Entries applied between two snapshots by default, at the least.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 5_000;

/// By default a snapshot also waits until the log since the last one is half that one's size...
pub const DEFAULT_SNAPSHOT_LOG_PERCENT: u64 = 50;

/// ... or 256 MiB, whatever the entry count: the log a restart replays stays bounded however
/// large the state and however large its entries.
pub const DEFAULT_SNAPSHOT_LOG_BYTES: u64 = 256 << 20;

/// Disk space kept at most in purged log segments for reuse.
pub const MAX_RECYCLED_LOG_BYTES: u64 = 512 << 20;

/// What an operator may tune; everything else follows openraft's defaults.
#[derive(Clone, Debug)]
pub struct RaftSettings {
    /// Take a snapshot after this many entries since the last one at the least; 0 never
    /// snapshots on its own (snapshots can still be triggered).
    pub snapshot_every: u64,
    /// ... and once the log since the last snapshot is at least this percentage of its size
    /// (0: entries alone decide)...
    pub snapshot_log_percent: u64,
    /// ... or once the log since the last snapshot reaches this many bytes, whatever the entry
    /// count.
    pub snapshot_log_bytes: u64,
    /// Entries kept in the log behind a snapshot, for followers that lag a little.
    pub keep_behind_snapshot: u64,
    /// At most this many bytes of log are kept behind a snapshot, whatever the entry count (a
    /// follower further behind is sent the snapshot).
    pub keep_behind_snapshot_bytes: u64,
    /// Heartbeat interval, milliseconds.
    pub heartbeat_ms: u64,
    /// Election timeout range, milliseconds.
    pub election_timeout_ms: (u64, u64),
}

impl Default for RaftSettings {
    fn default() -> Self {
        Self {
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            snapshot_log_percent: DEFAULT_SNAPSHOT_LOG_PERCENT,
            snapshot_log_bytes: DEFAULT_SNAPSHOT_LOG_BYTES,
            keep_behind_snapshot: 1_000,
            keep_behind_snapshot_bytes: 32 << 20,
            heartbeat_ms: 100,
            election_timeout_ms: (300, 600),
        }
    }
}

impl RaftSettings {
    /// When the node takes a snapshot on its own.
    pub fn snapshot_schedule(&self) -> SnapshotSchedule {
        SnapshotSchedule {
            every_entries: self.snapshot_every,
            log_percent: self.snapshot_log_percent,
            log_bytes_enough: self.snapshot_log_bytes,
        }
    }

    /// How many purged log segments of `segment_size` bytes the log keeps for reuse: as many as
    /// it spans between two snapshots at the most by bytes (those that make a snapshot due and
    /// those kept behind it), so that a log written steadily makes each new segment from a
    /// purged one, reusing its disk blocks and cached pages, rather than filling a new file with
    /// zeros first. At most [`MAX_RECYCLED_LOG_BYTES`] of them, and never fewer than the log's
    /// own default.
    pub fn log_segments_to_recycle(&self, segment_size: u64) -> usize {
        let span = self.snapshot_log_bytes.saturating_add(self.keep_behind_snapshot_bytes).min(MAX_RECYCLED_LOG_BYTES);
        let segments = usize::try_from(span.div_ceil(segment_size.max(1))).unwrap_or(usize::MAX);
        segments.max(crate::wal::DEFAULT_MAX_SPARES)
    }

    /// The openraft configuration, checked. The log is purged only up to a snapshot that is
    /// already durable: openraft purges after the snapshot builder returns, and ours returns
    /// only once the file is synced and renamed.
    pub fn to_config(&self) -> Result<Config, ConfigError> {
        Config {
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_ms.0,
            election_timeout_max: self.election_timeout_ms.1,
            // openraft counts entries only; snapshots are asked for by
            // `snapshot_schedule::take_snapshots`, which weighs the log's bytes too.
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: self.keep_behind_snapshot,
            // A node cut off and reconnected asks before it disrupts a healthy leader.
            enable_pre_vote: Some(true),
            // A restarted leader must win a new election, never resume its old term. A leader
            // replicates entries before its own write reaches the disk, so after a crash its log
            // can be shorter than a follower's; resuming the same term it would write new entries
            // under (term, index) ids the followers already hold with other contents, and they
            // would keep theirs: the replicas diverge. openraft restores by default.
            enable_leader_restore: Some(false),
            ..Config::default()
        }
        .validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restarted_leader_must_be_elected_again() {
        let config = RaftSettings::default().to_config().expect("valid defaults");
        assert_eq!(config.enable_leader_restore, Some(false));
    }

    #[test]
    fn openraft_never_snapshots_on_its_own() {
        // `snapshot_schedule::take_snapshots` decides, by entries and bytes; openraft's own
        // policy would snapshot a large state after every `snapshot_every` small entries.
        let config = RaftSettings::default().to_config().expect("valid defaults");
        assert_eq!(config.snapshot_policy, SnapshotPolicy::Never);
    }

    #[test]
    fn the_log_keeps_for_reuse_what_it_spans_between_snapshots_within_a_bound() {
        let defaults = RaftSettings::default();
        assert_eq!(defaults.log_segments_to_recycle(32 << 20), 9, "256 MiB due plus 32 MiB behind");
        assert_eq!(defaults.log_segments_to_recycle(1 << 30), crate::wal::DEFAULT_MAX_SPARES, "never fewer");
        let huge = RaftSettings { snapshot_log_bytes: u64::MAX, ..defaults };
        assert_eq!(huge.log_segments_to_recycle(32 << 20), (MAX_RECYCLED_LOG_BYTES / (32 << 20)) as usize);
        assert_eq!(huge.log_segments_to_recycle(0), MAX_RECYCLED_LOG_BYTES as usize, "no division by zero");
    }
}
