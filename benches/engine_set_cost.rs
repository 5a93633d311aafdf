//! The engine's Set alone, for counting its instructions: applies `AHNLICH_BENCH_SETS` (default
//! 100) Sets of 1,000 entries (128-d, three metadata fields, one predicate index), made before
//! any is applied, and prints the time per entry. Under callgrind it gives a repeatable cost per
//! entry where wall-clock figures on this shared machine move ±20%:
//!
//! ```sh
//! cargo bench --bench engine_set_cost --no-run
//! valgrind --tool=callgrind --toggle-collect='ahnlich_raft::engine::Engine::apply' \
//!     target/release/deps/engine_set_cost-<hash>
//! ```
//!
//! (instructions collected / 100,000 = instructions per entry).
//!
//! `AHNLICH_BENCH_BATCH=N` applies the same entries as batches of N one-entry Sets instead,
//! as a follower applies the proposer's batches of concurrent clients' writes.
//!
//! `AHNLICH_BENCH_MADE=each` makes each command right before it is applied (still outside the
//! clock), so its entries are in cache, as a follower applies a Set it has just decoded; by
//! default all are made first and the applies read them from memory.

use ahnlich_raft::engine::{Command, Engine, StoreRef};
use ahnlich_raft::wal::sim_fs::SimRng;

/// The server's allocator (`src/main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/server_memory.rs"]
mod server_memory;

#[path = "support/set_entries.rs"]
mod set_entries;

use set_entries::{DIM, entry};

fn main() {
    server_memory::as_in_the_server();
    let sets: u64 = std::env::var("AHNLICH_BENCH_SETS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let e = Engine::default();
    let store = StoreRef::public("s");
    e.apply(&Command::CreateStore {
        store: store.clone(),
        dimension: DIM,
        predicates: vec!["author".into()],
        non_linear: vec![],
        error_if_exists: true,
    })
    .expect("create");
    let batch: Option<u64> = std::env::var("AHNLICH_BENCH_BATCH").ok().and_then(|v| v.parse().ok());
    let mut rng = SimRng::new(7);
    // Command `k`: a Set of 1,000 entries, or a batch of `n` one-entry Sets.
    let mut command = |k: u64| match batch {
        None => Command::Set {
            store: store.clone(),
            entries: (k * 1000..(k + 1) * 1000).map(|i| entry(&mut rng, i)).collect(),
        },
        Some(n) => {
            let n = n.max(1);
            let members = (k * n..((k + 1) * n).min(sets * 1000))
                .map(|i| Command::Set { store: store.clone(), entries: vec![entry(&mut rng, i)] })
                .collect();
            Command::Batch { commands: members }
        }
    };
    let count = match batch {
        None => sets,
        Some(n) => (sets * 1000).div_ceil(n.max(1)),
    };
    let made_each = std::env::var("AHNLICH_BENCH_MADE").is_ok_and(|v| v == "each");
    let mut applying = std::time::Duration::ZERO;
    if made_each {
        for k in 0..count {
            let c = command(k);
            let started = std::time::Instant::now();
            e.apply(&c).expect("set");
            applying += started.elapsed();
        }
    } else {
        let commands: Vec<Command> = (0..count).map(command).collect();
        let started = std::time::Instant::now();
        for c in &commands {
            e.apply(c).expect("set");
        }
        applying = started.elapsed();
    }
    let per_entry = applying.as_secs_f64() * 1e6 / (sets * 1000) as f64;
    match batch {
        None => println!("engine Set: {per_entry:.3} µs per entry over {sets} Sets of 1,000"),
        Some(n) => {
            println!("engine Set: {per_entry:.3} µs per entry over {} one-entry Sets in batches of {n}", sets * 1000)
        }
    }
}
