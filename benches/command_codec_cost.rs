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
//! (`encode_all` for the encoding; `decode_requests_all` for the leader's decoding of the same
//! entries as a client's `Set` request of the DB API, with their conversion to engine entries).
//!
//! `AHNLICH_BENCH_BATCH=N` makes the commands batches of N one-entry Sets instead, as the
//! leader's proposer batches concurrent clients' writes (the same entries in all; the request
//! decoding is then skipped).

use ahnlich_raft::engine::{Command, Entry, MetadataValue, StoreRef};
use ahnlich_raft::proto::ahnlich::db::query;
use ahnlich_raft::proto::ahnlich::{keyval, metadata};
use ahnlich_raft::raft::codec::CommandCodec;
use ahnlich_raft::wal::sim_fs::SimRng;
use prost::Message;

/// The server's allocator (`src/main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/server_memory.rs"]
mod server_memory;

#[path = "support/set_entries.rs"]
mod set_entries;

use set_entries::entry;

#[inline(never)]
fn encode_all(commands: &[Command]) -> Vec<Vec<u8>> {
    commands.iter().map(CommandCodec::encode_command).collect()
}

#[inline(never)]
fn decode_all(encoded: &[Vec<u8>]) -> Vec<Command> {
    encoded.iter().map(|b| Command::decode_command(b).expect("decode")).collect()
}

#[inline(never)]
fn decode_requests_all(requests: &[Vec<u8>]) -> Vec<Vec<Entry>> {
    requests
        .iter()
        .map(|b| {
            let set = query::Set::decode(&b[..]).expect("decode request");
            ahnlich_raft::server::convert::entries(set.inputs).expect("valid entries")
        })
        .collect()
}

/// The time to encode `commands` as the leader logs them, and to decode them as a follower
/// does; asserts they decode to themselves.
fn encode_and_decode(commands: &[Command]) -> (std::time::Duration, std::time::Duration) {
    let started = std::time::Instant::now();
    let encoded = encode_all(commands);
    let encoding = started.elapsed();
    let started = std::time::Instant::now();
    let decoded = decode_all(&encoded);
    let decoding = started.elapsed();
    assert!(decoded == commands, "a command decodes to itself");
    (encoding, decoding)
}

/// `command` (a Set) as a client's DB API request.
fn request_of(command: &Command) -> Vec<u8> {
    let Command::Set { entries, .. } = command else { unreachable!("only Sets are made") };
    let inputs = entries
        .iter()
        .map(|e| keyval::DbStoreEntry {
            key: Some(keyval::StoreKey { key: e.key.clone() }),
            value: Some(keyval::StoreValue {
                value: e
                    .value
                    .iter()
                    .map(|(k, v)| {
                        let MetadataValue::RawString(s) = v else { unreachable!("only strings are made") };
                        let value = Some(metadata::metadata_value::Value::RawString(s.clone()));
                        (k.clone(), metadata::MetadataValue { value })
                    })
                    .collect(),
            }),
        })
        .collect();
    query::Set { store: "s".into(), inputs, ..Default::default() }.encode_to_vec()
}

fn main() {
    server_memory::as_in_the_server();
    let sets: u64 = std::env::var("AHNLICH_BENCH_SETS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let mut rng = SimRng::new(7);
    let store = StoreRef::public("s");
    let commands: Vec<Command> = (0..sets)
        .map(|b| Command::Set {
            store: store.clone(),
            entries: (b * 1000..(b + 1) * 1000).map(|i| entry(&mut rng, i)).collect(),
        })
        .collect();
    let batch: Option<usize> = std::env::var("AHNLICH_BENCH_BATCH").ok().and_then(|v| v.parse().ok());
    if let Some(per_batch) = batch {
        return codec_of_batches(&commands, per_batch.max(1), sets);
    }
    let entries = (sets * 1000) as f64;
    let (encoding, decoding) = encode_and_decode(&commands);
    let requests: Vec<Vec<u8>> = commands.iter().map(request_of).collect();
    let started = std::time::Instant::now();
    let from_requests = decode_requests_all(&requests);
    let request_decoding = started.elapsed();
    for (command, entries) in commands.iter().zip(&from_requests) {
        assert!(matches!(command, Command::Set { entries: e, .. } if e == entries), "a request decodes to its entries");
    }
    println!(
        "encode: {:.3} µs per entry; decode: {:.3} µs per entry; request decode: {:.3} µs per entry \
         ({sets} Sets of 1,000)",
        encoding.as_secs_f64() * 1e6 / entries,
        decoding.as_secs_f64() * 1e6 / entries,
        request_decoding.as_secs_f64() * 1e6 / entries
    );
}

/// Times encoding and decoding the entries of `sets` as batches of `per_batch` one-entry Sets.
fn codec_of_batches(sets: &[Command], per_batch: usize, set_count: u64) {
    let writes: Vec<Command> = sets
        .iter()
        .flat_map(|c| {
            let Command::Set { store, entries } = c else { unreachable!("only Sets are made") };
            entries.iter().map(|e| Command::Set { store: store.clone(), entries: vec![e.clone()] })
        })
        .collect();
    let batches: Vec<Command> = writes.chunks(per_batch).map(|w| Command::Batch { commands: w.to_vec() }).collect();
    let entries = writes.len() as f64;
    let (encoding, decoding) = encode_and_decode(&batches);
    println!(
        "encode: {:.3} µs per entry; decode: {:.3} µs per entry ({set_count}k entries in batches of {per_batch} one-entry Sets)",
        encoding.as_secs_f64() * 1e6 / entries,
        decoding.as_secs_f64() * 1e6 / entries,
    );
}
