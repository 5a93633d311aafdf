//! Proposes the leader's writes to Raft, coalescing concurrent ones into shared log entries.
//!
//! - **Batching.** At most [`IN_FLIGHT`] proposals are in flight at once. A write that finds a
//!   free turn is proposed alone, at once, from its own task; writes that arrive while every
//!   turn is taken wait in a queue, and the next free turn proposes everything queued as one
//!   [`Command::Batch`] (up to [`MAX_BATCH_COMMANDS`] commands and the byte limit of one Raft
//!   entry). So one client pays no waiting, and many clients share one entry, one log record,
//!   one message to each follower and one apply, as etcd and TiKV batch proposals.
//! - **Semantics are those of proposing each write alone.** Every command in a batch is checked
//!   and applied on its own, in queue order, and its waiter gets its own result. A failed
//!   proposal (leadership lost, the node stopping) fails every write in it with the same
//!   answer. A write whose caller has gone away before its turn is dropped, never proposed.

use std::sync::Arc;

use openraft::Raft;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tonic::Status;

use super::convert::status;
use crate::engine::{Command, Response};
use crate::metrics::Metrics;
use crate::raft::logged::LoggedCommand;
use crate::raft::state_machine::StateMachine;
use crate::raft::types::{CommandResult, TypeConfig};

/// Proposals in flight at once; writes beyond them queue and go out together.
pub const IN_FLIGHT: usize = 4;

/// Commands one batch holds at most.
pub const MAX_BATCH_COMMANDS: usize = 256;

/// Bytes counted per command on top of its own encoding (its framing inside a batch).
const FRAMING_BYTES: usize = 16;

/// Writes queued for a turn at most; beyond them a write waits to be queued.
const QUEUE_DEPTH: usize = 4096;

/// What a write comes back with: its command's result, or why it was not committed.
type Outcome = Result<CommandResult, Status>;

struct Pending {
    cmd: Command,
    bytes: usize,
    reply: oneshot::Sender<Outcome>,
}

/// The handle writes are proposed through.
#[derive(Clone)]
pub struct Proposer {
    raft: Raft<TypeConfig, StateMachine>,
    turns: Arc<Semaphore>,
    queue: mpsc::Sender<Pending>,
    metrics: Arc<Metrics>,
}

impl Proposer {
    /// Starts proposing through `raft`; one batch's commands take at most `max_entry_bytes`
    /// (their encodings plus a few bytes each); each entry's count of writes goes to `metrics`.
    /// The task ends when every handle is dropped.
    pub fn start(raft: Raft<TypeConfig, StateMachine>, max_entry_bytes: usize, metrics: Arc<Metrics>) -> Self {
        let (queue, waiting) = mpsc::channel(QUEUE_DEPTH);
        let turns = Arc::new(Semaphore::new(IN_FLIGHT));
        tokio::spawn(run(raft.clone(), turns.clone(), waiting, max_entry_bytes, metrics.clone()));
        Self { raft, turns, queue, metrics }
    }

    /// Proposes `cmd` (whose encoding is `encoded_bytes` long, within one entry's limit) and
    /// waits until it is applied; its result, or an UNAVAILABLE status if it was not committed.
    pub async fn propose(&self, cmd: Command, encoded_bytes: usize) -> Outcome {
        // A free turn nobody queues for: propose at once from here, with no hand-off.
        if let Ok(_turn) = self.turns.clone().try_acquire_owned() {
            self.metrics.proposal_commands.observe(1.0);
            return write(&self.raft, cmd).await;
        }
        let (reply, outcome) = oneshot::channel();
        let pending = Pending { cmd, bytes: encoded_bytes + FRAMING_BYTES, reply };
        self.queue.send(pending).await.map_err(|_| stopping())?;
        outcome.await.map_err(|_| stopping())?
    }
}

fn stopping() -> Status {
    Status::unavailable("the node is stopping; the write was not proposed")
}

async fn run(
    raft: Raft<TypeConfig, StateMachine>,
    turns: Arc<Semaphore>,
    mut waiting: mpsc::Receiver<Pending>,
    max_entry_bytes: usize,
    metrics: Arc<Metrics>,
) {
    // A write taken from the queue that did not fit the batch before it: it leads the next.
    let mut carried: Option<Pending> = None;
    loop {
        // The queue first, then a turn: while the queue is empty this task holds no turn, so
        // a lone write takes the direct path above.
        let first = match carried.take() {
            Some(p) => p,
            None => match waiting.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        // Turns are handed to waiters in order, so this task gets the next one freed; writes
        // that queue meanwhile join the batch.
        let Ok(turn) = turns.clone().acquire_owned().await else { return };
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_COMMANDS {
            let Ok(next) = waiting.try_recv() else { break };
            if bytes + next.bytes > max_entry_bytes {
                carried = Some(next);
                break;
            }
            bytes += next.bytes;
            batch.push(next);
        }
        batch.retain(|p| !p.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        metrics.proposal_commands.observe(batch.len() as f64);
        let raft = raft.clone();
        tokio::spawn(async move {
            let _turn = turn;
            propose(&raft, batch).await;
        });
    }
}

/// Proposes `batch` as one entry and answers each of its writes.
async fn propose(raft: &Raft<TypeConfig, StateMachine>, mut batch: Vec<Pending>) {
    if batch.len() == 1 {
        let Some(Pending { cmd, reply, .. }) = batch.pop() else { return };
        let _ = reply.send(write(raft, cmd).await);
        return;
    }
    let (commands, replies): (Vec<Command>, Vec<_>) = batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
    let count = commands.len();
    let why = match write(raft, Command::Batch { commands }).await {
        Ok(Ok(Response::Batch(results))) if results.len() == count => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(Ok(result));
            }
            return;
        }
        // A batch is applied command by command and answers one result each; anything else
        // is a bug, reported to every waiter rather than guessed at.
        Ok(Err(e)) => status(e),
        Ok(Ok(_)) => Status::internal(format!("a batch of {count} writes was applied with a malformed answer")),
        Err(not_committed) => not_committed,
    };
    for reply in replies {
        let _ = reply.send(Err(why.clone()));
    }
}

/// Proposes `cmd` as one entry, encoded here (off the Raft core, once for the log and every
/// follower), and waits until it is applied.
async fn write(raft: &Raft<TypeConfig, StateMachine>, cmd: Command) -> Outcome {
    let cmd = Arc::new(LoggedCommand::new(cmd));
    raft.client_write(cmd).await.map(|r| r.data).map_err(|e| not_committed(&e))
}

/// The answer for a write Raft did not commit.
fn not_committed(e: &openraft::error::RaftError<TypeConfig, openraft::error::ClientWriteError<TypeConfig>>) -> Status {
    match e.forward_to_leader() {
        Some(f) => Status::unavailable(format!(
            "leadership moved to node {:?} while the write was being proposed; it may not have been applied; retry",
            f.leader_id
        )),
        None => Status::unavailable(format!("no leader can serve the request right now: {e}")),
    }
}
