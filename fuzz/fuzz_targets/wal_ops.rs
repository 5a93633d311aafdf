//! An arbitrary sequence of appends, truncations, purges, metadata writes, crashes at a chosen
//! file-system call and reopens, checked against the plain in-memory model of the log: after
//! every crash the log is the result of a prefix of the issued writes that holds every
//! acknowledged one.
#![no_main]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ahnlich_raft::wal::model::{Issued, LogModel, matching_prefix};
use ahnlich_raft::wal::sim_fs::SimFs;
use ahnlich_raft::wal::{Entry, LogPos, Wal, WalError, WalOptions};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

const META_SLOTS: u8 = 2;

/// The payload length an `Append` asks for: its byte, or a few KiB for the top values, so
/// that both of the writer's paths (copied and written in place) are taken.
fn payload_len(len: u8) -> usize {
    if len > 240 { usize::from(len) * 24 } else { usize::from(len) }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Append { count: u8, len: u8 },
    Truncate { back: u8 },
    Purge { back: u8 },
    Meta { slot: u8, value: u8 },
    Sync,
    CrashAfterOps(u8),
    PowerCut,
    Reopen,
}

#[derive(Arbitrary, Debug)]
struct Input {
    seed: u64,
    segment_kib: u8,
    preallocate: bool,
    spares: u8,
    ops: Vec<Op>,
}

/// Opens the log; a planned crash may strike during recovery itself, which is then rerun after
/// a reboot (recovery must be idempotent). Returns whether such a crash happened.
fn open(fs: &SimFs, opts: &WalOptions) -> (Wal, bool) {
    let mut crashed = false;
    loop {
        match Wal::open_with_fs(Arc::new(fs.clone()), Path::new("/wal"), opts.clone()) {
            Ok(wal) => return (wal, crashed),
            Err(_) if fs.is_crashed() => {
                crashed = true;
                fs.reboot();
            }
            Err(e) => panic!("recovery failed: {e}"),
        }
    }
}

fuzz_target!(|input: Input| {
    let fs = SimFs::new(input.seed);
    let opts = WalOptions {
        segment_size: 4096 * (1 + u64::from(input.segment_kib % 4)),
        preallocate: input.preallocate,
        max_spares: usize::from(input.spares % 5),
    };
    let (mut wal, _) = open(&fs, &opts);
    let mut base = LogModel::default();
    let mut front = base.clone();
    let mut issued: Vec<Issued> = Vec::new();
    let acked = Arc::new(AtomicUsize::new(0));
    let mut term = 1;

    for op in input.ops.iter().take(64) {
        let mut recs = Vec::new();
        let done = {
            let acked = acked.clone();
            let upto = issued.len() + 1;
            move |n: usize| -> ahnlich_raft::wal::Done {
                let acked = acked.clone();
                Box::new(move |r| {
                    if r.is_ok() {
                        acked.fetch_max(upto - 1 + n, Ordering::SeqCst);
                    }
                })
            }
        };
        let result = match *op {
            Op::Append { count, len } => {
                let next = front.next_index();
                let entries: Vec<Entry> = (0..u64::from(count % 8) + 1)
                    .map(|i| Entry { index: next + i, term, payload: vec![len; payload_len(len)].into() })
                    .collect();
                recs.extend(entries.iter().cloned().map(Issued::Entry));
                wal.append(entries, done(recs.len()))
            }
            Op::Truncate { back } if front.entries.len() >= 2 => {
                let lo = front.entries[1].index;
                let at = front.next_index().saturating_sub(u64::from(back)).max(lo);
                recs.push(Issued::Truncate(at));
                term += 1;
                wal.truncate_from(at, done(1))
            }
            Op::Purge { back } if !front.entries.is_empty() => {
                let e = &front.entries
                    [front.entries.len().saturating_sub(1 + usize::from(back)).min(front.entries.len() - 1)];
                let p = LogPos { index: e.index, term: e.term };
                recs.push(Issued::Purge(p));
                wal.purge_to(p, done(1))
            }
            Op::Meta { slot, value } => {
                let slot = slot % META_SLOTS;
                recs.push(Issued::Meta(slot, vec![value]));
                wal.set_meta(slot, vec![value], done(1))
            }
            Op::Sync => {
                let _ = wal.sync();
                Ok(())
            }
            Op::CrashAfterOps(n) => {
                fs.crash_after_ops(u64::from(n) + 1);
                Ok(())
            }
            Op::PowerCut | Op::Reopen => {
                if matches!(op, Op::PowerCut) {
                    fs.crash();
                }
                let _ = wal.sync();
                let crashed = fs.is_crashed();
                drop(wal);
                if crashed {
                    fs.reboot();
                }
                let (reopened, crashed_in_recovery) = open(&fs, &opts);
                wal = reopened;
                let crashed = crashed || crashed_in_recovery;
                let found = LogModel::read_from(&wal, META_SLOTS).expect("read");
                let k = matching_prefix(&base, &issued, acked.load(Ordering::SeqCst), &found);
                assert!(k.is_some(), "recovered log is no prefix holding every acknowledged write: {found:?}");
                if !crashed {
                    assert_eq!(k, Some(issued.len()), "a clean reopen must keep every write");
                }
                base = found;
                front = base.clone();
                issued.clear();
                acked.store(0, Ordering::SeqCst);
                term += 1;
                Ok(())
            }
            _ => Ok(()),
        };
        match result {
            Ok(()) => {
                for r in recs {
                    front.apply(&r);
                    issued.push(r);
                }
            }
            Err(WalError::Failed(_)) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
});
