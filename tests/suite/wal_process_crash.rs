//! Process crash: a child process appends in a loop and prints every index acknowledged as
//! durable; the parent kills it with SIGKILL at random moments, reopens the log, and checks that
//! every acknowledged index is present and intact. The child then continues from what it finds.

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use crate::support::child::{AckingChild, ack};
use crate::support::wal_util::{entry, read_all};
use ahnlich_raft::wal::sim_fs::SimRng;
use ahnlich_raft::wal::{Wal, WalOptions};

const CHILD_DIR_ENV: &str = "AHNLICH_WAL_CRASH_CHILD_DIR";
const CHILD_TERM_ENV: &str = "AHNLICH_WAL_CRASH_CHILD_TERM";
const KILLS: usize = 24;

fn opts() -> WalOptions {
    // Small segments so that kills also land during rotation and preallocation.
    WalOptions { segment_size: 64 << 10, preallocate: true, ..WalOptions::default() }
}

/// The child's body; a no-op unless the parent started this binary as a child.
#[test]
fn crash_child_appender() {
    let (Some(dir), Some(term)) = (std::env::var_os(CHILD_DIR_ENV), std::env::var_os(CHILD_TERM_ENV)) else {
        return;
    };
    let term: u64 = term.to_str().and_then(|t| t.parse().ok()).expect("term");
    let wal = Wal::open(Path::new(&dir), opts()).expect("child open");
    let mut next = wal.bounds().next_index.unwrap_or(1);
    let mut rng = SimRng::new(term);
    loop {
        let n = 1 + rng.below(32);
        let batch: Vec<_> = (next..next + n).map(|i| entry(i, term)).collect();
        let last = next + n - 1;
        wal.append(
            batch,
            Box::new(move |r| {
                if r.is_ok() {
                    ack(last);
                }
            }),
        )
        .expect("append");
        next += n;
        if rng.below(3) == 0 {
            std::thread::sleep(Duration::from_micros(rng.below(500)));
        }
    }
}

#[test]
fn sigkill_never_loses_an_acknowledged_entry() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let mut rng = SimRng::new(0x5eed);
    // term_of[i] is the term of the child that wrote index i, for every acknowledged index.
    let mut acked_terms: Vec<(u64, u64)> = Vec::new();
    for kill in 0..KILLS {
        let term = kill as u64 + 1;
        let term_text = term.to_string();
        let child = AckingChild::spawn(
            module_path!(),
            "crash_child_appender",
            &[(CHILD_DIR_ENV, dir.path().as_os_str()), (CHILD_TERM_ENV, OsStr::new(&term_text))],
        );
        std::thread::sleep(Duration::from_millis(20 + rng.below(150)));
        let acked_upto = child.kill();

        let wal = Wal::open(dir.path(), opts()).unwrap_or_else(|e| panic!("kill {kill}: reopen failed: {e}"));
        let entries = read_all(&wal).expect("read");
        let first_new = acked_terms.last().map_or(1, |&(i, _)| i + 1);
        for i in first_new..=acked_upto {
            acked_terms.push((i, term));
        }
        assert!(
            entries.len() as u64 >= acked_upto,
            "kill {kill}: {} entries survived but {acked_upto} were acknowledged",
            entries.len()
        );
        for &(i, t) in &acked_terms {
            assert_eq!(entries[i as usize - 1], entry(i, t), "kill {kill}: acknowledged entry {i} differs");
        }
        // Entries written but not acknowledged may survive; the next child continues after them
        // with its own term, so record which term each surviving entry has.
        for e in &entries[acked_terms.len()..] {
            assert_eq!(e, &entry(e.index, e.term), "kill {kill}: unacknowledged entry {} is damaged", e.index);
            acked_terms.push((e.index, e.term));
        }
    }
    assert!(acked_terms.len() > 100, "the children made progress: {}", acked_terms.len());
}
