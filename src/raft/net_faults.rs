//! Network faults for nodes running in one process (tests; feature `testing`): cut links, a
//! delay on every message, and a share of messages dropped, applied through the network's
//! [`LinkFaults`] hook.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use super::network::LinkFaults;

/// Faults injected into the Raft messages between nodes of one process (tests only): cut
/// links, a delay on every message, and a share of messages dropped.
#[derive(Debug, Default)]
pub struct NetFaults {
    state: Mutex<FaultState>,
}

#[derive(Debug, Default)]
struct FaultState {
    cut: BTreeSet<(u64, u64)>,
    delay: Duration,
    drop_per_mille: u64,
    rng: u64,
}

impl NetFaults {
    /// Cuts every link between `node` and each of `others`, both ways.
    pub fn isolate(&self, node: u64, others: &[u64]) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for &o in others {
            s.cut.insert((node, o));
            s.cut.insert((o, node));
        }
    }

    /// Cuts the link from `from` to `to` only: messages the other way still pass.
    pub fn cut_one_way(&self, from: u64, to: u64) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).cut.insert((from, to));
    }

    /// Restores every link and removes delay and drops.
    pub fn heal(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.cut.clear();
        s.delay = Duration::ZERO;
        s.drop_per_mille = 0;
    }

    /// Delays every message by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).delay = delay;
    }

    /// Drops `per_mille` of every thousand messages (chosen by a fixed pseudo-random sequence).
    pub fn set_drop_per_mille(&self, per_mille: u64) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).drop_per_mille = per_mille.min(1000);
    }
}

impl LinkFaults for NetFaults {
    fn admit(&self, from: u64, to: u64) -> Result<Duration, String> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.cut.contains(&(from, to)) {
            return Err(format!("link {from} -> {to} is cut (injected fault)"));
        }
        if s.drop_per_mille > 0 {
            s.rng = s.rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            if (s.rng >> 33) % 1000 < s.drop_per_mille {
                return Err(format!("message {from} -> {to} dropped (injected fault)"));
            }
        }
        Ok(s.delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_cut_both_ways_and_heal() {
        let f = NetFaults::default();
        f.isolate(1, &[2, 3]);
        assert!(f.admit(1, 2).is_err() && f.admit(3, 1).is_err());
        assert!(f.admit(2, 3).is_ok());
        f.heal();
        assert!(f.admit(1, 2).is_ok());
        f.set_drop_per_mille(500);
        let dropped = (0..1000).filter(|_| f.admit(2, 3).is_err()).count();
        assert!((350..650).contains(&dropped), "{dropped}");
    }
}
