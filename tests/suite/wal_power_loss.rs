//! Simulated power loss, failed syncs and a full disk, over many seeded runs.
//!
//! Each run issues random appends, truncations, purges and metadata writes (some of them
//! unsynced, see `Wal::set_meta_unsynced`) through the WAL on
//! [`SimFs`], lets a fault strike (a crash at a random file-system call, an `EIO` from one
//! `fdatasync`, `ENOSPC` after some bytes, or a power cut at the end), reboots the simulated
//! disk (keeping synced bytes and a random subset of the rest) and reopens. The log found must
//! equal the result of applying some prefix of the issued records that contains every
//! acknowledged one: nothing acknowledged is lost, nothing never written appears, and the order
//! of writes is kept. Three crash cycles per seed, so recovery also runs on what an earlier
//! recovery left behind.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::support::wal_util::entry;
use ahnlich_raft::wal::model::{Issued as Rec, LogModel as Model, matching_prefix};
use ahnlich_raft::wal::sim_fs::{SimFs, SimRng};
use ahnlich_raft::wal::{LogPos, Wal, WalError, WalOptions};

/// Seeds in the default run; `WAL_SIM_SEEDS=N` runs more (a soak), `WAL_SIM_SEED=S` just one.
const SEEDS: u64 = 1000;
const ROUNDS: usize = 3;
const OPS_PER_ROUND: usize = 60;
const META_SLOTS: u8 = 3;

/// Counts records acknowledged as durable; completions arrive in order.
#[derive(Default)]
struct Acks {
    durable: AtomicUsize,
    failed: AtomicBool,
}

impl Acks {
    fn completion(self: &Arc<Self>, upto: usize) -> ahnlich_raft::wal::Done {
        let acks = self.clone();
        Box::new(move |r| match r {
            Ok(()) => {
                acks.durable.fetch_max(upto, Ordering::SeqCst);
            }
            Err(_) => acks.failed.store(true, Ordering::SeqCst),
        })
    }
}

/// Issues one random operation; returns false once the WAL refuses writes.
fn issue_one(
    wal: &Wal,
    rng: &mut SimRng,
    front: &mut Model,
    issued: &mut Vec<Rec>,
    acks: &Arc<Acks>,
    term: u64,
) -> bool {
    let choice = rng.below(100);
    let recs: Vec<Rec> = if choice < 70 {
        let next = front.next_index();
        (0..1 + rng.below(8)).map(|i| Rec::Entry(entry(next + i, term))).collect()
    } else if choice < 80 && front.entries.len() >= 2 {
        let lo = front.entries[1].index;
        vec![Rec::Truncate(lo + rng.below(front.next_index() - lo + 1))]
    } else if choice < 90 && !front.entries.is_empty() {
        let e = &front.entries[rng.below(front.entries.len() as u64) as usize];
        vec![Rec::Purge(LogPos { index: e.index, term: e.term })]
    } else {
        let slot = rng.below(u64::from(META_SLOTS)) as u8;
        vec![Rec::Meta(slot, rng.next_u64().to_le_bytes()[..1 + rng.below(8) as usize].to_vec())]
    };
    let upto = issued.len() + recs.len();
    let done = acks.completion(upto);
    let result = match &recs[0] {
        Rec::Entry(_) => {
            let entries = recs.iter().map(|r| if let Rec::Entry(e) = r { e.clone() } else { unreachable!() }).collect();
            wal.append(entries, done)
        }
        Rec::Truncate(f) => wal.truncate_from(*f, done),
        Rec::Purge(p) => wal.purge_to(*p, done),
        // Half the metadata writes ask for no sync: a later sync must cover them, in order.
        Rec::Meta(slot, v) if rng.coin() => wal.set_meta_unsynced(*slot, v.clone()),
        Rec::Meta(slot, v) => wal.set_meta(*slot, v.clone(), done),
    };
    match result {
        Ok(()) => {
            for r in recs {
                front.apply(&r);
                issued.push(r);
            }
            true
        }
        Err(WalError::Failed(_)) => false,
        Err(e) => panic!("unexpected error issuing {recs:?}: {e}"),
    }
}

fn run_seed(seed: u64) {
    let fs = SimFs::new(seed);
    let mut rng = SimRng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xabcd);
    let dir = Path::new("/data/wal");
    let opts = WalOptions {
        segment_size: 4096 * (1 + rng.below(4)),
        preallocate: rng.coin(),
        max_spares: rng.below(4) as usize,
    };
    let mut base = Model::default();
    for round in 0..ROUNDS {
        let wal = Wal::open_with_fs(Arc::new(fs.clone()), dir, opts.clone())
            .unwrap_or_else(|e| panic!("seed {seed} round {round}: reopen failed: {e}"));
        let found = Model::read_from(&wal, META_SLOTS).unwrap_or_else(|e| panic!("seed {seed}: read failed: {e}"));
        assert_eq!(found, base, "seed {seed} round {round}: the log changed across a clean reopen");

        let fault = rng.below(100);
        match fault {
            0..70 => fs.crash_after_ops(1 + rng.below(250)),
            70..85 => fs.fail_sync_after(1 + rng.below(20)),
            _ => fs.limit_space(rng.below(12_000)),
        }
        let acks = Arc::new(Acks::default());
        let mut issued = Vec::new();
        let mut front = base.clone();
        let term = round as u64 + 1;
        for _ in 0..OPS_PER_ROUND {
            if !issue_one(&wal, &mut rng, &mut front, &mut issued, &acks, term) {
                break;
            }
            if rng.below(4) == 0 {
                let _ = wal.sync();
            }
        }
        let _ = wal.sync();
        if acks.failed.load(Ordering::SeqCst) {
            // A failure is permanent until reopen, and surfaces as an error.
            let refused = wal.append(vec![entry(front.next_index(), term)], Box::new(|_| {}));
            assert!(matches!(refused, Err(WalError::Failed(_))), "seed {seed}: writes after a failure must be refused");
        }
        fs.crash();
        drop(wal);
        fs.reboot();

        let acked = acks.durable.load(Ordering::SeqCst);
        if std::env::var_os("WAL_SIM_DEBUG").is_some() {
            eprintln!("seed {seed} round {round} fault {fault} acked {acked} base_next {}", base.next_index());
            for (i, r) in issued.iter().enumerate() {
                match r {
                    Rec::Entry(e) => eprintln!("  {i}: entry {} t{}", e.index, e.term),
                    other => eprintln!("  {i}: {other:?}"),
                }
            }
        }
        if std::env::var_os("WAL_SIM_DEBUG").is_some() {
            dump(&fs, dir);
        }
        let wal = Wal::open_with_fs(Arc::new(fs.clone()), dir, opts.clone())
            .unwrap_or_else(|e| panic!("seed {seed} round {round}: recovery failed: {e}"));
        let found = Model::read_from(&wal, META_SLOTS).unwrap_or_else(|e| panic!("seed {seed}: read failed: {e}"));
        let k = matching_prefix(&base, &issued, acked, &found).unwrap_or_else(|| {
            panic!(
                "seed {seed} round {round}: recovered log matches no prefix of the {} issued records with \
                 at least the {acked} acknowledged ones\nfound: {found:?}\nissued: {issued:?}",
                issued.len()
            )
        });
        assert!(k >= acked);
        drop(wal);
        base = found;
    }
}

#[test]
fn no_acknowledged_write_is_lost_and_nothing_unwritten_appears() {
    let only: Option<u64> = std::env::var("WAL_SIM_SEED").ok().and_then(|s| s.parse().ok());
    let seeds: u64 = std::env::var("WAL_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(SEEDS);
    for seed in (0..seeds).filter(|s| only.is_none_or(|o| o == *s)) {
        run_seed(seed);
    }
}

/// How an unsynced metadata write is left to become durable in
/// [`an_unsynced_metadata_write_is_made_durable_by_the_next_sync_or_by_its_age`].
#[derive(Debug, Clone, Copy)]
enum ThenWhat {
    /// A write that is waited for follows it.
    SyncedWrite,
    /// Nothing follows it.
    Quiet,
    /// Only more unsynced writes follow it, every few milliseconds.
    OnlyUnsyncedWrites,
}

const META_DIR: &str = "/data/wal";

/// Segments large enough that no rotation (which syncs) happens within a metadata test.
fn meta_test_options() -> WalOptions {
    WalOptions { segment_size: 1 << 20, preallocate: false, ..WalOptions::default() }
}

/// A log on a simulated disk seeded with `seed`, holding one durable entry.
fn log_with_one_entry(seed: u64) -> (SimFs, Wal) {
    let fs = SimFs::new(seed);
    let wal = Wal::open_with_fs(Arc::new(fs.clone()), Path::new(META_DIR), meta_test_options()).expect("open");
    crate::support::wal_util::append_durable(&wal, vec![entry(1, 1)]).expect("append");
    (fs, wal)
}

/// Metadata slot `slot` as the log reads it after a power cut now (nothing more reaches the
/// disk, not even the sync a clean close does) and a reopen.
fn meta_after_power_cut(fs: &SimFs, wal: Wal, slot: u8) -> Option<Arc<[u8]>> {
    fs.crash();
    drop(wal);
    fs.reboot();
    Wal::open_with_fs(Arc::new(fs.clone()), Path::new(META_DIR), meta_test_options()).expect("reopen").meta(slot)
}

/// A metadata write that asks for no sync survives a power cut once the next sync has run, or,
/// when no waited-for write comes, once it is `wal::IDLE_SYNC` old.
#[test]
fn an_unsynced_metadata_write_is_made_durable_by_the_next_sync_or_by_its_age() {
    use std::time::{Duration, Instant};
    for then in [ThenWhat::SyncedWrite, ThenWhat::Quiet, ThenWhat::OnlyUnsyncedWrites] {
        for seed in 0..10 {
            let (fs, wal) = log_with_one_entry(seed);
            let syncs = wal.stats().syncs.get();
            wal.set_meta_unsynced(2, b"committed 1".to_vec()).expect("unsynced meta");
            match then {
                ThenWhat::SyncedWrite => {
                    crate::support::wal_util::append_durable(&wal, vec![entry(2, 1)]).expect("append");
                }
                ThenWhat::Quiet | ThenWhat::OnlyUnsyncedWrites => {
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while wal.stats().syncs.get() == syncs {
                        assert!(Instant::now() < deadline, "{then:?}: the unsynced write was never synced");
                        if let ThenWhat::OnlyUnsyncedWrites = then {
                            // Another slot: slot 2 must still read as the first value.
                            wal.set_meta_unsynced(3, b"other".to_vec()).expect("unsynced meta");
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
            let meta = meta_after_power_cut(&fs, wal, 2);
            assert_eq!(meta.as_deref(), Some(&b"committed 1"[..]), "seed {seed}, then {then:?}");
        }
    }
}

/// A metadata write that asks for no sync costs the writer no batch of its own: queued less
/// than `wal::IDLE_SYNC` before a waited-for write, it goes out in that write's batch and is
/// durable by its sync. (A commit index set after every commit would otherwise cost a wake-up
/// and a write each.)
#[test]
fn an_unsynced_metadata_write_goes_out_with_the_next_waited_for_write() {
    use std::time::{Duration, Instant};
    let mut checked = 0;
    for seed in 0..5 {
        let (fs, wal) = log_with_one_entry(seed);
        let (batches, syncs) = (wal.stats().batches.get(), wal.stats().syncs.get());
        let queued = Instant::now();
        wal.set_meta_unsynced(2, b"committed 1".to_vec()).expect("unsynced meta");
        assert_eq!(wal.meta(2).as_deref(), Some(&b"committed 1"[..]), "read back at once");
        // Long enough for a writer woken by it to have written it alone.
        std::thread::sleep(Duration::from_millis(10));
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        wal.append(vec![entry(2, 1)], Box::new(move |r| drop(tx.send(r)))).expect("append");
        if queued.elapsed() >= ahnlich_raft::wal::IDLE_SYNC {
            // The machine stalled: the metadata write was due on its own.
            rx.recv().expect("completion").expect("append");
            continue;
        }
        rx.recv().expect("completion").expect("append");
        assert_eq!(wal.stats().batches.get() - batches, 1, "seed {seed}: one batch for both writes");
        assert_eq!(wal.stats().syncs.get() - syncs, 1, "seed {seed}: one sync for both writes");
        let meta = meta_after_power_cut(&fs, wal, 2);
        assert_eq!(meta.as_deref(), Some(&b"committed 1"[..]), "seed {seed}: durable by the append's sync");
        checked += 1;
    }
    assert!(checked > 0, "every try stalled for IDLE_SYNC between two calls");
}

fn dump(fs: &SimFs, dir: &Path) {
    use ahnlich_raft::wal::format::{SEGMENT_HEADER_LEN, SegmentHeader, decode_record};
    let mut names = ahnlich_raft::wal::fs::Fs::list(fs, dir).expect("list");
    names.sort();
    for n in names {
        let bytes = fs.read_file(&dir.join(&n)).expect("read");
        let Ok(h) = SegmentHeader::decode(&bytes) else {
            eprintln!("{n}: len {} no header", bytes.len());
            continue;
        };
        eprintln!("{n}: len {} {h:?}", bytes.len());
        let mut pos = SEGMENT_HEADER_LEN;
        loop {
            match decode_record(&bytes[pos..], h.salt, pos as u64) {
                Ok(r) => {
                    eprintln!("   @{pos} {:?} idx {} term {} batch {}", r.kind, r.index, r.term, r.batch_start);
                    pos += r.encoded_len();
                }
                Err(e) => {
                    eprintln!("   @{pos} end: {e}");
                    break;
                }
            }
        }
    }
}
