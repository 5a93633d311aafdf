//! Encoding and decoding of replicated commands, for counting their instructions: makes
//! `AHNLICH_BENCH_SETS` (default 20) Sets of 1,000 entries (128-d, three metadata fields), then
//! encodes each as the leader logs it and decodes it as a follower does, and prints the time per
//! entry of each. Under callgrind, the collected instructions of one of the two, divided by the
//! entries, are a repeatable cost per entry:
//!
//! ```sh
//! cargo bench --bench command_codec_cost --no-run
//! valgrind --tool=callgrind --toggle-collect='command_codec_cost::decode_all' \
//!     target/release/deps/command_codec_cost-<hash>
//! ```
//!
//! (`encode_all` for the encoding).

use ahnlich_raft::engine::{Command, Entry, Metadata, MetadataValue, StoreRef};
use ahnlich_raft::raft::codec::CommandCodec;
use ahnlich_raft::wal::sim_fs::SimRng;

/// The server's allocator (`src/main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DIM: usize = 128;

fn entry(rng: &mut SimRng, i: u64) -> Entry {
    Entry {
        key: (0..DIM).map(|_| (rng.below(1 << 20) as f32 / (1 << 19) as f32) - 1.0).collect(),
        value: Metadata::from([
            ("author".to_string(), MetadataValue::RawString(format!("author-{}", i % 100))),
            ("lang".to_string(), MetadataValue::RawString(["en", "fr", "yo"][(i % 3) as usize].to_string())),
            ("id".to_string(), MetadataValue::RawString(i.to_string())),
        ]),
    }
}

#[inline(never)]
fn encode_all(commands: &[Command]) -> Vec<Vec<u8>> {
    commands.iter().map(CommandCodec::encode_command).collect()
}

#[inline(never)]
fn decode_all(encoded: &[Vec<u8>]) -> Vec<Command> {
    encoded.iter().map(|b| Command::decode_command(b).expect("decode")).collect()
}

fn main() {
    let sets: u64 = std::env::var("AHNLICH_BENCH_SETS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let mut rng = SimRng::new(7);
    let store = StoreRef::public("s");
    let commands: Vec<Command> = (0..sets)
        .map(|b| Command::Set {
            store: store.clone(),
            entries: (b * 1000..(b + 1) * 1000).map(|i| entry(&mut rng, i)).collect(),
        })
        .collect();
    let entries = (sets * 1000) as f64;
    let started = std::time::Instant::now();
    let encoded = encode_all(&commands);
    let encoding = started.elapsed();
    let started = std::time::Instant::now();
    let decoded = decode_all(&encoded);
    let decoding = started.elapsed();
    assert!(decoded == commands, "a command decodes to itself");
    println!(
        "encode: {:.3} µs per entry; decode: {:.3} µs per entry ({sets} Sets of 1,000)",
        encoding.as_secs_f64() * 1e6 / entries,
        decoding.as_secs_f64() * 1e6 / entries
    );
}
