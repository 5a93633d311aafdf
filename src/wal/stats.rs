//! The log's counters, kept as it works and read by whoever exports them (the node's
//! Prometheus endpoint). Updating one is a few atomic adds on the writer thread.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use std::sync::atomic::AtomicU64;

/// What one log has done since it was opened.
#[derive(Debug)]
pub struct WalStats {
    /// Entries appended.
    pub entries: Counter,
    /// Bytes written (records with their headers).
    pub bytes: Counter,
    /// Batches written, each with one `fdatasync` unless nobody waited on it (see
    /// [`super::Wal::set_meta_unsynced`]).
    pub batches: Counter,
    /// Operations (appends, truncations, purges, metadata writes) per batch.
    pub batch_ops: Histogram,
    /// `fdatasync` calls.
    pub syncs: Counter,
    /// How long each `fdatasync` took, in seconds.
    pub sync_seconds: Histogram,
    /// How long recovery took when the log was opened, in seconds.
    pub recovery_seconds: Gauge<f64, AtomicU64>,
    /// Live segments.
    pub segments: Gauge,
    /// Spare segment files ready for the next rotation (zero-filled or recycled).
    pub spares: Gauge,
}

impl Default for WalStats {
    fn default() -> Self {
        Self {
            entries: Counter::default(),
            bytes: Counter::default(),
            batches: Counter::default(),
            // 1, 2, 4, … 4096 operations.
            batch_ops: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            syncs: Counter::default(),
            // 50 µs to about 1.6 s.
            sync_seconds: Histogram::new(exponential_buckets(50e-6, 2.0, 16)),
            recovery_seconds: Gauge::default(),
            segments: Gauge::default(),
            spares: Gauge::default(),
        }
    }
}
