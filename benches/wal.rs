//! WAL append throughput against a raw baseline on the same file system, in the same run.
//!
//! Each point is an entry size × entries per sync. The baseline writes the same bytes (payload
//! plus the 32-byte record header, so both move the same volume) into a pre-zeroed file with
//! one `fdatasync` per batch and nothing else. The WAL appends the batch and waits for its
//! durability callback. Criterion measures each on its own; afterwards an interleaved pass
//! alternates the two batch by batch (sync latency here is bimodal, so alternating keeps both
//! under the same conditions) and prints median latencies and the ratio WAL/raw throughput.
//!
//! Run: `cargo bench --bench wal` (set `WAL_BENCH_DIR` to pick the file system; default: a
//! temporary directory under `target/`; `WAL_BENCH_TABLE_ONLY=1` prints just the interleaved
//! table; `WAL_BENCH_POINT=64x256` runs only the point of that entry size and batch).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
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
    fn new(dir: &Path, batch_bytes: usize) -> Self {
        let path = dir.join("raw-baseline.bin");
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
            let mut raw = RawBaseline::new(dir.path(), bytes);
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

/// Alternates raw and WAL batches and prints the table of medians and ratios.
fn interleaved_table(root: &Path) {
    println!("\ninterleaved medians (per batch; ratio = WAL throughput / raw throughput)");
    println!("| entry size | entries/sync | raw median | WAL median | ratio |");
    println!("|---:|---:|---:|---:|---:|");
    for &size in &SIZES {
        for &batch in &BATCHES {
            if !point_selected(size, batch) {
                continue;
            }
            let bytes = batch * (size + RECORD_HEADER);
            let rounds = ((64usize << 20) / bytes).clamp(40, 400);
            let dir = tempfile::TempDir::new_in(root).expect("tempdir");
            let mut raw = RawBaseline::new(dir.path(), bytes);
            let mut w = WalUnderTest::new(&dir.path().join("wal"), size, batch);
            for _ in 0..10 {
                raw.write_batch();
                w.write_batch();
            }
            let (mut t_raw, mut t_wal) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
            for round in 0..rounds {
                let time = |f: &mut dyn FnMut()| {
                    let start = Instant::now();
                    f();
                    start.elapsed()
                };
                if round % 2 == 0 {
                    t_raw.push(time(&mut || raw.write_batch()));
                    t_wal.push(time(&mut || w.write_batch()));
                } else {
                    t_wal.push(time(&mut || w.write_batch()));
                    t_raw.push(time(&mut || raw.write_batch()));
                }
            }
            let (m_raw, m_wal) = (median(&mut t_raw), median(&mut t_wal));
            println!(
                "| {size} B | {batch} | {:.1} µs | {:.1} µs | {:.2}× |",
                m_raw.as_secs_f64() * 1e6,
                m_wal.as_secs_f64() * 1e6,
                m_raw.as_secs_f64() / m_wal.as_secs_f64()
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
