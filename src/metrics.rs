//! A node's metrics, in the Prometheus text format (`--metrics-listen`). Counters and
//! histograms are kept by the parts that do the work (this [`Metrics`], the WAL's
//! [`WalStats`](crate::wal::stats::WalStats)); gauges that describe state (Raft's position, the
//! engine's sizes) are read from their sources at each scrape by the [`Collector`]s the node
//! registers. Every name starts with `ahnlich_raft_`.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A snapshot's journey: `built`, `installed`, `sent` or `received`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SnapshotEvent {
    /// What happened.
    pub event: &'static str,
}

/// A DB-API call and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcOutcome {
    /// The RPC (`Set`, `GetSimN`, …).
    pub rpc: &'static str,
    /// The gRPC status code (`OK`, `NOT_FOUND`, …).
    pub code: &'static str,
}

/// A DB-API RPC.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Rpc {
    /// The RPC (`Set`, `GetSimN`, …).
    pub rpc: &'static str,
}

/// The metrics one node keeps itself, and the registry that exports them with the others.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Elections this node started.
    pub elections_started: Counter,
    /// Membership changes this node saw take effect.
    pub membership_changes: Counter,
    /// Snapshots built, installed, sent and received.
    pub snapshots: Family<SnapshotEvent, Counter>,
    /// Their bytes.
    pub snapshot_bytes: Family<SnapshotEvent, Counter>,
    /// How long each took, in seconds.
    pub snapshot_seconds: Family<SnapshotEvent, Histogram>,
    /// DB-API requests by RPC and status code.
    pub requests: Family<RpcOutcome, Counter>,
    /// DB-API request latency by RPC, in seconds.
    pub request_seconds: Family<Rpc, Histogram>,
    /// DB-API requests being served now.
    pub requests_in_flight: Gauge,
    /// DB-API request bytes received (message frames).
    pub request_bytes: Counter,
    /// DB-API response bytes sent (message frames).
    pub response_bytes: Counter,
    /// Client writes per Raft entry this node proposed (more than one: writes batched).
    pub proposal_commands: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Empty metrics, registered under `ahnlich_raft_`.
    pub fn new() -> Self {
        let snapshot_seconds = Family::<SnapshotEvent, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(1e-3, 4.0, 10))
        });
        let request_seconds =
            Family::<Rpc, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(50e-6, 2.0, 18)));
        let m = Self {
            registry: Mutex::new(Registry::with_prefix("ahnlich_raft")),
            elections_started: Counter::default(),
            membership_changes: Counter::default(),
            snapshots: Family::default(),
            snapshot_bytes: Family::default(),
            snapshot_seconds,
            requests: Family::default(),
            request_seconds,
            requests_in_flight: Gauge::default(),
            request_bytes: Counter::default(),
            response_bytes: Counter::default(),
            proposal_commands: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
        };
        {
            let mut r = m.registry();
            r.register("raft_elections_started", "Elections this node started", m.elections_started.clone());
            r.register(
                "raft_membership_changes",
                "Membership changes seen to take effect",
                m.membership_changes.clone(),
            );
            r.register("snapshots", "Snapshots built, installed, sent and received", m.snapshots.clone());
            r.register(
                "snapshot_bytes",
                "Bytes of snapshots built, installed, sent and received",
                m.snapshot_bytes.clone(),
            );
            r.register("snapshot_duration_seconds", "How long snapshot work took", m.snapshot_seconds.clone());
            r.register("db_requests", "DB-API requests by RPC and gRPC status code", m.requests.clone());
            r.register("db_request_duration_seconds", "DB-API request latency by RPC", m.request_seconds.clone());
            r.register("db_requests_in_flight", "DB-API requests being served", m.requests_in_flight.clone());
            r.register("db_request_bytes", "DB-API request message bytes received", m.request_bytes.clone());
            r.register("db_response_bytes", "DB-API response message bytes sent", m.response_bytes.clone());
            r.register(
                "raft_proposal_commands",
                "Client writes per Raft entry proposed (more than one when concurrent writes are batched)",
                m.proposal_commands.clone(),
            );
        }
        m
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Exports the WAL's counters with the others.
    pub fn register_wal(&self, wal: &crate::wal::stats::WalStats) {
        let mut r = self.registry();
        r.register("wal_entries", "Entries appended to the Raft log", wal.entries.clone());
        r.register("wal_bytes", "Bytes written to the Raft log", wal.bytes.clone());
        r.register("wal_batches", "Batches written to the Raft log, one fdatasync each", wal.batches.clone());
        r.register("wal_batch_operations", "Operations per Raft-log batch", wal.batch_ops.clone());
        r.register("wal_fsyncs", "fdatasync calls of the Raft log", wal.syncs.clone());
        r.register("wal_fsync_duration_seconds", "fdatasync latency of the Raft log", wal.sync_seconds.clone());
        r.register(
            "wal_recovery_seconds",
            "How long the Raft log took to recover at start",
            wal.recovery_seconds.clone(),
        );
        r.register("wal_segments", "Live Raft-log segments", wal.segments.clone());
        r.register("wal_spare_segments", "Spare Raft-log segment files ready for rotation", wal.spares.clone());
    }

    /// Adds a source of metrics read at each scrape.
    pub fn register_collector(&self, collector: Box<dyn Collector>) {
        self.registry().register_collector(collector);
    }

    /// Counts snapshot `event` of `bytes` that took `took`.
    pub fn snapshot(&self, event: &'static str, bytes: u64, took: Duration) {
        let label = SnapshotEvent { event };
        self.snapshots.get_or_create(&label).inc();
        self.snapshot_bytes.get_or_create(&label).inc_by(bytes);
        self.snapshot_seconds.get_or_create(&label).observe(took.as_secs_f64());
    }

    /// Everything, in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry());
        out
    }
}
