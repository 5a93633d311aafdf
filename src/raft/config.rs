//! The Raft settings a node runs with.

use openraft::{Config, ConfigError, SnapshotPolicy};

/// Entries applied between two snapshots by default.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 5_000;

/// What an operator may tune; everything else follows openraft's defaults.
#[derive(Clone, Debug)]
pub struct RaftSettings {
    /// Take a snapshot after this many entries since the last one; 0 never snapshots on its
    /// own (snapshots can still be triggered).
    pub snapshot_every: u64,
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
            keep_behind_snapshot: 1_000,
            keep_behind_snapshot_bytes: 32 << 20,
            heartbeat_ms: 100,
            election_timeout_ms: (300, 600),
        }
    }
}

impl RaftSettings {
    /// The openraft configuration, checked. The log is purged only up to a snapshot that is
    /// already durable: openraft purges after the snapshot builder returns, and ours returns
    /// only once the file is synced and renamed.
    pub fn to_config(&self) -> Result<Config, ConfigError> {
        Config {
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_ms.0,
            election_timeout_max: self.election_timeout_ms.1,
            snapshot_policy: match self.snapshot_every {
                0 => SnapshotPolicy::Never,
                n => SnapshotPolicy::LogsSinceLast(n),
            },
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
}
