//! WAL append throughput against a raw baseline on the same file system, in the same run.
//!
//! Each point is an entry size × entries per sync. The baseline writes the same bytes (payload
//! plus the 32-byte record header, so both move the same volume) into a pre-zeroed file with
//! one `fdatasync` per batch and nothing else. The WAL appends the batch and waits for its
//! durability callback. Criterion measures each on its own; afterwards an interleaved pass
//! alternates them batch by batch (sync latency here is bimodal, so alternating keeps all under
//! the same conditions) and prints median latencies and the ratio WAL/raw throughput.
//!
//! The interleaved pass also times a second baseline, the hand-off: the raw write and sync done
//! by a thread of its own, woken by a condition variable and answering through a channel, as the
//! WAL's writer thread is woken and answers. The log keeps file-system work off the threads that
//! drive Raft, so it pays for that hand-off; WAL/hand-off is what the log itself costs.
//!
//! Run: `cargo bench --bench wal` (set `WAL_BENCH_DIR` to pick the file system; default: a
//! temporary directory under `target/`; `WAL_BENCH_TABLE_ONLY=1` prints just the interleaved
//! table; `WAL_BENCH_POINT=64x256` runs only the point of that entry size and batch).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ahnlich_raft::wal::{self, Entry, LogPos, Wal, WalOptions};
use criterion::{BenchmarkId, Criterion, Throughput};

/// The server's allocator (`src/main.rs`), so the WAL's allocations cost what they cost there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/server_memory.rs"]
mod server_memory;

const SIZES: [usize; 3] = [64, 1024, 16 << 10];
const BATCHES: [usize; 3] = [1, 16, 256];
const RECORD_HEADER: usize = 32;
const RAW_FILE_LEN: u64 = 256 << 20;
/// Purge cadence in entries, near openraft's default snapshot policy (every 5000 entries).
const PURGE_EVERY: u64 = 4096;

/// A pre-zeroed file that batches are written into, wrapping around at the end.
struct RawBaseline {
    file: File,
    offset: u64,
    buf: Vec<u8>,
}

impl RawBaseline {
    fn new(dir: &Path, name: &str, batch_bytes: usize) -> Self {
        let path = dir.join(name);
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).expect("raw file");
        let zeros = vec![0u8; 1 << 20];
        for off in (0..RAW_FILE_LEN).step_by(zeros.len()) {
            file.write_all_at(&zeros, off).expect("zero fill");
        }
        file.sync_all().expect("sync");
        Self { file, offset: 0, buf: vec![0xa5; batch_bytes] }
    }

    fn write_batch(&mut self) {
        if self.offset + self.buf.len() as u64 > RAW_FILE_LEN {
            self.offset = 0;
        }
        self.file.write_all_at(&self.buf, self.offset).expect("raw write");
        self.file.sync_data().expect("raw sync");
        self.offset += self.buf.len() as u64;
    }
}

/// The raw baseline's write and sync run by a thread of its own: the least a log that keeps
/// file work on its own thread pays per batch (a wake-up there, and one back).
struct HandOffBaseline {
    shared: Arc<HandOffQueue>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the caller hands the thread: one batch to write with the completion to call once it is
/// synced (the WAL's own `Done`, waited for by `wal::wait` as the WAL's appends are), or the
/// order to stop.
enum HandOff {
    Write(wal::Done),
    Stop,
}

/// The hand-off waiting for the thread, if any, and the thread's wake-up.
struct HandOffQueue {
    request: Mutex<Option<HandOff>>,
    wake: Condvar,
}

impl HandOffBaseline {
    fn new(dir: &Path, batch_bytes: usize) -> Self {
        let mut raw = RawBaseline::new(dir, "hand-off-baseline.bin", batch_bytes);
        let shared = Arc::new(HandOffQueue { request: Mutex::new(None), wake: Condvar::new() });
        let queue = shared.clone();
        let thread = std::thread::spawn(move || {
            loop {
                let mut request = queue.request.lock().expect("hand-off lock");
                let handed = loop {
                    match request.take() {
                        Some(handed) => break handed,
                        None => request = queue.wake.wait(request).expect("hand-off wait"),
                    }
                };
                drop(request);
                let HandOff::Write(done) = handed else { return };
                raw.write_batch();
                done(Ok(()));
            }
        });
        Self { shared, thread: Some(thread) }
    }

    fn write_batch(&mut self) {
        wal::wait(|done| {
            *self.shared.request.lock().expect("hand-off lock") = Some(HandOff::Write(done));
            self.shared.wake.notify_one();
            Ok(())
        })
        .expect("the hand-off thread answers");
    }
}

impl Drop for HandOffBaseline {
    fn drop(&mut self) {
        *self.shared.request.lock().expect("hand-off lock") = Some(HandOff::Stop);
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            thread.join().expect("hand-off thread");
        }
    }
}

/// The WAL under test, fed batches of fresh entries and purged every `PURGE_EVERY` entries, as
/// Raft purges after each snapshot; purged segments are recycled as spares.
struct WalUnderTest {
    wal: Wal,
    next: u64,
    payload: bytes::Bytes,
    batch: usize,
}

impl WalUnderTest {
    fn new(dir: &Path, size: usize, batch: usize) -> Self {
        let wal = Wal::open(dir, WalOptions::default()).expect("open wal");
        let next = wal.bounds().next_index.unwrap_or(1);
        Self { wal, next, payload: vec![0x5a; size].into(), batch }
    }

    fn write_batch(&mut self) {
        let entries: Vec<Entry> = (self.next..self.next + self.batch as u64)
            .map(|index| Entry { index, term: 1, payload: self.payload.clone() })
            .collect();
        self.next += self.batch as u64;
        wal::wait(|done| self.wal.append(entries, done)).expect("wal append");
        if self.next % PURGE_EVERY < self.batch as u64 {
            let upto = LogPos { index: self.next - 1, term: 1 };
            self.wal.purge_to(upto, Box::new(|_| {})).expect("purge");
        }
    }
}

fn bench_dir() -> PathBuf {
    let base = std::env::var_os("WAL_BENCH_DIR").map_or_else(|| PathBuf::from("target/wal-bench"), PathBuf::from);
    std::fs::create_dir_all(&base).expect("bench dir");
    base
}

fn criterion_points(c: &mut Criterion, root: &Path) {
    for &size in &SIZES {
        for &batch in &BATCHES {
            let bytes = batch * (size + RECORD_HEADER);
            let mut group = c.benchmark_group(format!("wal/{size}B"));
            group.throughput(Throughput::Bytes(bytes as u64));
            group.sample_size(if bytes >= 1 << 20 { 20 } else { 50 });
            group.measurement_time(Duration::from_secs(3));
            let dir = tempfile::TempDir::new_in(root).expect("tempdir");
            let mut raw = RawBaseline::new(dir.path(), "raw-baseline.bin", bytes);
            group.bench_function(BenchmarkId::new("raw_fdatasync", batch), |b| b.iter(|| raw.write_batch()));
            let mut w = WalUnderTest::new(&dir.path().join("wal"), size, batch);
            group.bench_function(BenchmarkId::new("wal_append", batch), |b| b.iter(|| w.write_batch()));
            group.finish();
        }
    }
}

/// Whether `WAL_BENCH_POINT` (as `<size>x<batch>`) is unset or names this point.
fn point_selected(size: usize, batch: usize) -> bool {
    std::env::var("WAL_BENCH_POINT").map_or(true, |p| p == format!("{size}x{batch}"))
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Alternates raw, hand-off and WAL batches, each round in an order rotated by one, and prints
/// the table of medians and ratios.
fn interleaved_table(root: &Path) {
    println!("\ninterleaved medians (per batch; ratios of throughput: WAL / raw, WAL / hand-off)");
    println!("| entry size | entries/sync | raw median | hand-off median | WAL median | WAL / raw | WAL / hand-off |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &size in &SIZES {
        for &batch in &BATCHES {
            if !point_selected(size, batch) {
                continue;
            }
            let bytes = batch * (size + RECORD_HEADER);
            let rounds = ((64usize << 20) / bytes).clamp(40, 400);
            let dir = tempfile::TempDir::new_in(root).expect("tempdir");
            let mut raw = RawBaseline::new(dir.path(), "raw-baseline.bin", bytes);
            let mut hand_off = HandOffBaseline::new(dir.path(), bytes);
            let mut w = WalUnderTest::new(&dir.path().join("wal"), size, batch);
            let mut systems: [&mut dyn FnMut(); 3] =
                [&mut || raw.write_batch(), &mut || hand_off.write_batch(), &mut || w.write_batch()];
            for _ in 0..10 {
                systems.iter_mut().for_each(|write| write());
            }
            let mut times: [Vec<Duration>; 3] = std::array::from_fn(|_| Vec::with_capacity(rounds));
            for round in 0..rounds {
                for k in 0..systems.len() {
                    let which = (k + round) % systems.len();
                    let start = Instant::now();
                    systems[which]();
                    times[which].push(start.elapsed());
                }
            }
            let [m_raw, m_hand_off, m_wal] = times.map(|mut t| median(&mut t).as_secs_f64());
            println!(
                "| {size} B | {batch} | {:.1} µs | {:.1} µs | {:.1} µs | {:.2}× | {:.2}× |",
                m_raw * 1e6,
                m_hand_off * 1e6,
                m_wal * 1e6,
                m_raw / m_wal,
                m_hand_off / m_wal
            );
        }
    }
}

fn main() {
    server_memory::as_in_the_server();
    let root = bench_dir();
    let mut c = Criterion::default().configure_from_args();
    let filtered = std::env::args().skip(1).any(|a| !a.starts_with('-'));
    if std::env::var_os("WAL_BENCH_TABLE_ONLY").is_none() {
        criterion_points(&mut c, &root);
        c.final_summary();
    }
    if !filtered && std::env::var_os("WAL_BENCH_SKIP_TABLE").is_none() {
        interleaved_table(&root);
    }
}
