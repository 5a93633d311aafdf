//! The gauges that describe a node's state, read at each scrape: Raft's term, leader and log
//! positions, each follower's progress (on the leader), the newest snapshot and the log written
//! since it, and the engine's stores and memory. Reading them takes openraft's metrics watch and the engine's read locks
//! briefly; the endpoint encodes on the blocking pool.

use std::time::SystemTime;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::{Raft, ServerState};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

use crate::raft::codec::LogIdStd;
use crate::raft::log_store::LogWatch;
use crate::raft::state_machine::StateMachine;
use crate::raft::types::TypeConfig;

/// Reads a node's Raft and engine state into gauges.
pub struct StateCollector {
    raft: Raft<TypeConfig, StateMachine>,
    state: StateMachine,
    log: LogWatch,
}

impl StateCollector {
    /// The collector of the node running `raft` over `state` and `log`.
    pub fn new(raft: Raft<TypeConfig, StateMachine>, state: StateMachine, log: LogWatch) -> Self {
        Self { raft, state, log }
    }
}

impl std::fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateCollector")
    }
}

fn gauge<V: prometheus_client::encoding::EncodeGaugeValue + Send + Sync + std::fmt::Debug + 'static>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: V,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

/// A gauge with one value per label value.
fn gauges<V: prometheus_client::encoding::EncodeGaugeValue + Send + Sync + std::fmt::Debug + 'static>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &'static str,
    values: impl IntoIterator<Item = (String, V)>,
) -> Result<(), std::fmt::Error> {
    let mut values = values.into_iter().peekable();
    if values.peek().is_none() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, prometheus_client::metrics::MetricType::Gauge)?;
    for (value_of_label, v) in values {
        let labels = [(label, value_of_label)];
        ConstGauge::new(v).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for StateCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = self.raft.metrics().borrow_watched().clone();
        let index = |l: Option<LogIdStd>| l.map_or(-1, |l| l.index as i64);
        gauge(&mut e, "raft_term", "The current Raft term", m.current_term as i64)?;
        gauge(&mut e, "raft_is_leader", "1 if this node leads", i64::from(m.state == ServerState::Leader))?;
        gauge(
            &mut e,
            "raft_leader_id",
            "The leader this node knows of (-1: none)",
            m.current_leader.map_or(-1, |l| l as i64),
        )?;
        gauge(
            &mut e,
            "raft_last_log_index",
            "The last index in this node's log (-1: none)",
            m.last_log_index.map_or(-1, |i| i as i64),
        )?;
        gauge(
            &mut e,
            "raft_committed_index",
            "The last index this node knows committed (-1: none)",
            index(m.local_committed),
        )?;
        gauge(&mut e, "raft_applied_index", "The last index applied to the state (-1: none)", index(m.last_applied))?;
        gauge(&mut e, "raft_purged_index", "The last index purged from the log (-1: none)", index(m.purged))?;
        gauge(
            &mut e,
            "raft_snapshot_index",
            "The last index the newest snapshot covers (-1: none)",
            index(m.snapshot),
        )?;
        gauge(
            &mut e,
            "raft_voters",
            "Voters in the membership this node sees",
            m.membership_config.membership().voter_ids().count() as i64,
        )?;
        if let Some(replication) = &m.replication {
            let last = m.last_log_index.map_or(-1, |i| i as i64);
            let matched: Vec<(String, i64)> =
                replication.iter().map(|(id, l)| (id.to_string(), l.map_or(-1, |l| l.index as i64))).collect();
            let lag: Vec<(String, i64)> = matched.iter().map(|(id, i)| (id.clone(), last - i)).collect();
            gauges(
                &mut e,
                "raft_peer_matched_index",
                "The last index each member holds (leader only)",
                "peer",
                matched,
            )?;
            gauges(&mut e, "raft_peer_lag_entries", "Entries each member is behind the leader's log", "peer", lag)?;
        }
        let after_snapshot = m.snapshot.map_or(0, |s| s.index + 1);
        if let Some(bytes) = m.last_log_index.and_then(|last| self.log.bytes_in(after_snapshot, last)) {
            gauge(
                &mut e,
                "raft_log_bytes_since_snapshot",
                "Bytes of log after the newest snapshot (the next is due at a share of its size)",
                bytes as i64,
            )?;
        }
        if let Some(snapshot) = self.state.current_snapshot() {
            let age = std::fs::metadata(snapshot.path())
                .and_then(|md| md.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok());
            if let Some(age) = age {
                gauge(&mut e, "snapshot_age_seconds", "Age of the newest snapshot file", age.as_secs_f64())?;
            }
            gauge(&mut e, "snapshot_size_bytes", "Size of the newest snapshot file", snapshot.bytes().len() as i64)?;
        }
        let engine = self.state.engine();
        let counts = engine.entry_counts();
        gauge(&mut e, "engine_stores", "Stores in every schema", counts.len() as i64)?;
        gauges(
            &mut e,
            "engine_store_entries",
            "Entries per store (schema.name)",
            "store",
            counts.into_iter().map(|(store, n)| (store.to_string(), n as i64)),
        )?;
        gauge(
            &mut e,
            "engine_memory_used_bytes",
            "Bytes the stores hold, as charged against the cap",
            engine.used_bytes() as i64,
        )?;
        if let Some(cap) = engine.limits().max_memory_bytes {
            gauge(&mut e, "engine_memory_cap_bytes", "The memory cap (--max-memory)", cap as i64)?;
        }
        Ok(())
    }
}
