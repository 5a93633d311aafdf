//! Snapshot write and open-to-ready (map, verify, restore) for 100k and 1M entries of 128-d with
//! three metadata fields. Write includes capturing the state, and is measured as a node writes
//! (archiving the capture's chunks) and, as a baseline in the same run, from an image copied
//! out first; throughput is file bytes.
//!
//! Run: `cargo bench --bench snapshot` (`SNAPSHOT_BENCH_DIR` picks the file system; default
//! `target/snapshot-bench`).

use std::path::PathBuf;
use std::time::Duration;

use ahnlich_raft::engine::{Command, Engine, Entry, Limits, Metadata, MetadataValue, StoreRef};
use ahnlich_raft::snapshot::{MappedSnapshot, SnapshotId, SnapshotStore};
use ahnlich_raft::wal::sim_fs::SimRng;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const DIM: usize = 128;

fn engine(n: usize) -> Engine {
    let e = Engine::default();
    let store = StoreRef::public("bench");
    e.apply(&Command::CreateStore {
        store: store.clone(),
        dimension: DIM,
        predicates: vec![],
        non_linear: vec![],
        error_if_exists: true,
    })
    .expect("create");
    let mut rng = SimRng::new(3);
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        let entries = chunk
            .iter()
            .map(|&i| Entry {
                key: (0..DIM).map(|_| (rng.below(1 << 20) as f32) / (1 << 20) as f32).collect(),
                value: Metadata::from([
                    ("author".to_string(), MetadataValue::RawString(format!("author-{}", i % 1000))),
                    ("lang".to_string(), MetadataValue::RawString(["en", "fr", "yo"][i % 3].to_string())),
                    ("id".to_string(), MetadataValue::RawString(i.to_string())),
                ]),
            })
            .collect();
        e.apply(&Command::Set { store: store.clone(), entries }).expect("set");
    }
    e
}

fn bench_dir() -> PathBuf {
    let dir =
        std::env::var_os("SNAPSHOT_BENCH_DIR").map_or_else(|| PathBuf::from("target/snapshot-bench"), PathBuf::from);
    std::fs::create_dir_all(&dir).expect("bench dir");
    dir
}

fn snapshots(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot");
    group.sample_size(10).measurement_time(Duration::from_secs(20)).warm_up_time(Duration::from_secs(1));
    for (label, n) in [("100k", 100_000usize), ("1M", 1_000_000)] {
        let e = engine(n);
        let dir = tempfile::TempDir::new_in(bench_dir()).expect("tempdir");
        let store = SnapshotStore::open(dir.path()).expect("store");
        let mut index = 0;
        let path = store.write(SnapshotId { index, term: 1 }, b"", &e.image()).expect("first write");
        let bytes = std::fs::metadata(&path).expect("size").len();
        println!("{label}: snapshot file {:.1} MB", bytes as f64 / 1e6);
        group.throughput(Throughput::Bytes(bytes));
        // As a node writes one: the capture's vectors, norms and metadata archived from its
        // chunks.
        group.bench_function(BenchmarkId::new("write", label), |b| {
            b.iter(|| {
                index += 1;
                store.write(SnapshotId { index, term: 1 }, b"", &e.capture().image_parts()).expect("write")
            })
        });
        // The baseline: the same bytes from an image copied out first, as nodes wrote them before.
        group.bench_function(BenchmarkId::new("write_copied_image", label), |b| {
            b.iter(|| {
                index += 1;
                store.write(SnapshotId { index, term: 1 }, b"", &e.capture().image()).expect("write")
            })
        });
        let newest = store.list().expect("list").remove(0);
        group.bench_function(BenchmarkId::new("open_to_ready", label), |b| {
            b.iter(|| {
                // As a node restores: vectors read in place from the mapped file.
                let snap = std::sync::Arc::new(MappedSnapshot::open(&newest.1, newest.0).expect("open"));
                Engine::restore_backed(snap.image().expect("image"), snap.clone(), Limits::default()).expect("restore")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, snapshots);
criterion_main!(benches);
