//! Progress of long work (snapshot transfers, restores, WAL recovery), logged at info every
//! few seconds with bytes done, the total and the rate, and summed up at the end.

use std::fmt;
use std::time::{Duration, Instant};

/// How often a long piece of work reports.
pub const REPORT_EVERY: Duration = Duration::from_secs(5);

/// A piece of work measured in bytes.
pub struct Progress {
    what: String,
    total: Option<u64>,
    done: u64,
    started: Instant,
    reported: Instant,
}

impl Progress {
    /// Starts measuring `what` (e.g. "node 3: receiving snapshot 5000-2"), of `total` bytes if
    /// known.
    pub fn start(what: impl Into<String>, total: Option<u64>) -> Self {
        let now = Instant::now();
        Self { what: what.into(), total, done: 0, started: now, reported: now }
    }

    /// Counts `bytes` more done, logging a line if the last one is [`REPORT_EVERY`] old.
    pub fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        if self.reported.elapsed() >= REPORT_EVERY {
            self.reported = Instant::now();
            tracing::info!("{}: {}", self.what, self.summary());
        }
    }

    /// Bytes done so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Bytes done, of the total if known, in how long and at what rate.
    pub fn summary(&self) -> Summary {
        Summary { done: self.done, total: self.total, elapsed: self.started.elapsed() }
    }
}

/// What [`Progress::summary`] prints: `12.0 of 40.0 MiB in 3.1 s (3.9 MiB/s)`.
pub struct Summary {
    done: u64,
    total: Option<u64>,
    elapsed: Duration,
}

impl Summary {
    /// The summary of `done` bytes (of `total`, if known) in `elapsed`.
    pub fn of(done: u64, total: Option<u64>, elapsed: Duration) -> Self {
        Self { done, total, elapsed }
    }
}

const MIB: f64 = (1u64 << 20) as f64;

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let done = self.done as f64 / MIB;
        match self.total {
            Some(total) => write!(f, "{done:.1} of {:.1} MiB", total as f64 / MIB)?,
            None => write!(f, "{done:.1} MiB")?,
        }
        let secs = self.elapsed.as_secs_f64();
        write!(f, " in {secs:.2} s")?;
        if secs > 0.0 {
            write!(f, " ({:.1} MiB/s)", done / secs)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_names_bytes_total_and_rate() {
        let s = Summary { done: 3 << 20, total: Some(12 << 20), elapsed: Duration::from_secs(2) };
        assert_eq!(s.to_string(), "3.0 of 12.0 MiB in 2.00 s (1.5 MiB/s)");
        let s = Summary { done: 1 << 20, total: None, elapsed: Duration::ZERO };
        assert_eq!(s.to_string(), "1.0 MiB in 0.00 s");
    }
}
