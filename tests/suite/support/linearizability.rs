//! A linearizability checker for histories of operations on independent registers (Wing & Gong's
//! search with Lowe's memoization, as in Jepsen's Knossos and Porcupine), checked one key at a
//! time: linearizability is compositional, so a history is linearizable when each key's
//! sub-history is.
//!
//! The model of one key: a register that is absent or holds a number. Writes set it, deletes
//! clear it (and say whether there was something to delete), reads return it, and a
//! compare-and-set replaces it only when it holds the expected number. An operation whose
//! outcome is unknown (a timeout, a lost connection, an "in doubt" answer) may have taken effect
//! at any point after it began, or never: the search allows both.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

/// What a client asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    /// Set the register to this value.
    Write(u64),
    /// Read the register.
    Read,
    /// Clear the register.
    Delete,
    /// Set the register to `new` if it holds `expected`.
    Cas {
        /// The value it must hold.
        expected: u64,
        /// The value it gets.
        new: u64,
    },
}

/// What the client was told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A write, or a compare-and-set that swapped.
    Done,
    /// A read's value.
    Value(Option<u64>),
    /// A delete: whether there was a value to delete.
    Deleted(bool),
    /// A compare-and-set refused because the register did not hold the expected value.
    NotMatched,
    /// Unknown: it may or may not have taken effect.
    Unknown,
}

/// One operation of a history.
#[derive(Clone, Debug)]
pub struct Op {
    /// The client that issued it.
    pub client: usize,
    /// The node it was sent to.
    pub node: u64,
    /// The register.
    pub key: usize,
    /// What was asked.
    pub call: Call,
    /// What came back.
    pub outcome: Outcome,
    /// When it was sent, since the history began.
    pub invoked: Duration,
    /// When the answer came (for an unknown outcome: when the client gave up).
    pub completed: Duration,
}

type State = Option<u64>;

/// The register after `call` with `outcome` on `state`, or `None` if that outcome is
/// impossible from `state`.
fn step(state: State, call: Call, outcome: Outcome) -> Option<State> {
    let unknown = outcome == Outcome::Unknown;
    match call {
        Call::Write(v) => (unknown || outcome == Outcome::Done).then_some(Some(v)),
        Call::Read => (unknown || outcome == Outcome::Value(state)).then_some(state),
        Call::Delete => (unknown || outcome == Outcome::Deleted(state.is_some())).then_some(None),
        Call::Cas { expected, new } => {
            let swaps = state == Some(expected);
            match outcome {
                Outcome::Unknown => Some(if swaps { Some(new) } else { state }),
                Outcome::Done if swaps => Some(Some(new)),
                Outcome::NotMatched if !swaps => Some(state),
                _ => None,
            }
        }
    }
}

/// A key whose history no order explains.
#[derive(Debug)]
pub struct Violation {
    /// The key.
    pub key: usize,
    /// The operations on the key around the point where every order failed, by invocation.
    pub window: Vec<Op>,
    /// The operation that could not be placed.
    pub stuck_on: Op,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "key {}: no order of its operations explains what the clients saw", self.key)?;
        let line = |op: &Op| {
            format!(
                "[{:>9.3} ms .. {:>9.3} ms] client {:>2} via node {}: {:?} -> {:?}",
                op.invoked.as_secs_f64() * 1e3,
                op.completed.as_secs_f64() * 1e3,
                op.client,
                op.node,
                op.call,
                op.outcome
            )
        };
        writeln!(f, "it got stuck on {}", line(&self.stuck_on))?;
        writeln!(f, "the operations around it:")?;
        for op in &self.window {
            writeln!(f, "  {}", line(op))?;
        }
        Ok(())
    }
}

/// Checks every key of `history`; the first key no order explains, if any.
pub fn check(history: &[Op]) -> Result<(), Box<Violation>> {
    let mut keys: Vec<usize> = history.iter().map(|op| op.key).collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        let ops: Vec<Op> = history.iter().filter(|op| op.key == key).cloned().collect();
        check_key(key, &ops)?;
    }
    Ok(())
}

/// Most search states remembered for one key before the checker gives up (a few hundred MB):
/// the search is exponential in the number of operations open at once, and a history that
/// needs more should be split over more keys.
const MAX_STATES: usize = 2_000_000;

/// The end of the event list.
const END: usize = usize::MAX;

#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
}

/// Wing & Gong's search over one key's operations, starting from an absent register.
fn check_key(key: usize, ops: &[Op]) -> Result<(), Box<Violation>> {
    // Events in time order; a call sorts before a return at the same instant (overlapping is
    // the permissive reading). Unknown outcomes never return.
    let mut events: Vec<(Duration, bool, usize)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        events.push((op.invoked, true, i));
        let end = if op.outcome == Outcome::Unknown { Duration::MAX } else { op.completed };
        events.push((end, false, i));
    }
    events.sort_by_key(|(t, is_call, i)| (*t, !*is_call, *i));
    let events: Vec<Event> = events.into_iter().map(|(_, is_call, op)| Event { op, is_call }).collect();
    // A doubly linked list over the events, with a head sentinel at index n; removed events
    // keep their own links, so they are put back in the reverse order of removal.
    let n = events.len();
    let head = n;
    let mut next: Vec<usize> = (0..=n).map(|i| if i + 1 < n { i + 1 } else { END }).collect();
    next[head] = if n == 0 { END } else { 0 };
    let mut prev: Vec<usize> = (0..=n).map(|i| if i == 0 { head } else { i - 1 }).collect();
    prev[head] = END;
    let mut return_of = vec![0usize; ops.len()];
    let mut call_of = vec![0usize; ops.len()];
    for (e, ev) in events.iter().enumerate() {
        if ev.is_call {
            call_of[ev.op] = e;
        } else {
            return_of[ev.op] = e;
        }
    }
    let unlink = |e: usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
        let (p, q) = (prev[e], next[e]);
        next[p] = q;
        if q != END {
            prev[q] = p;
        }
    };
    let relink = |e: usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
        let (p, q) = (prev[e], next[e]);
        next[p] = e;
        if q != END {
            prev[q] = e;
        }
    };

    let mut state: State = None;
    let mut linearized = vec![0u64; ops.len().div_ceil(64)];
    let mut seen: HashSet<(Vec<u64>, State)> = HashSet::new();
    // The operations placed so far, with the state before each.
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut deepest: (usize, usize) = (0, 0);
    let mut cursor = next[head];
    loop {
        if cursor == END {
            return Ok(()); // every event consumed: a linearization exists
        }
        let ev = events[cursor];
        if !ev.is_call && ops[ev.op].outcome == Outcome::Unknown {
            // Only never-returning unknowns are left: each may simply not have happened.
            return Ok(());
        }
        if ev.is_call {
            let op = &ops[ev.op];
            if let Some(after) = step(state, op.call, op.outcome) {
                let mut bits = linearized.clone();
                bits[ev.op / 64] |= 1 << (ev.op % 64);
                assert!(
                    seen.len() < MAX_STATES,
                    "key {key}: the search explored {MAX_STATES} states without an answer ({} operations, {} unknown); \
                     spread the history over more keys",
                    ops.len(),
                    ops.iter().filter(|op| op.outcome == Outcome::Unknown).count()
                );
                if seen.insert((bits.clone(), after)) {
                    stack.push((ev.op, state));
                    state = after;
                    linearized = bits;
                    unlink(cursor, &mut next, &mut prev);
                    unlink(return_of[ev.op], &mut next, &mut prev);
                    cursor = next[head];
                    continue;
                }
            }
            cursor = next[cursor];
            continue;
        }
        // A return of an operation not yet placed: undo the last placement and try the next.
        if stack.len() >= deepest.0 {
            deepest = (stack.len(), ev.op);
        }
        let Some((op, before)) = stack.pop() else {
            return Err(Box::new(violation(key, ops, deepest.1)));
        };
        state = before;
        linearized[op / 64] &= !(1 << (op % 64));
        relink(return_of[op], &mut next, &mut prev);
        relink(call_of[op], &mut next, &mut prev);
        cursor = next[call_of[op]];
    }
}

fn violation(key: usize, ops: &[Op], stuck: usize) -> Violation {
    let stuck_on = ops[stuck].clone();
    let margin = Duration::from_millis(200);
    let from = stuck_on.invoked.saturating_sub(margin);
    let to = stuck_on.completed.saturating_add(margin);
    let mut window: Vec<Op> = ops.iter().filter(|op| op.completed >= from && op.invoked <= to).cloned().collect();
    window.sort_by_key(|op| op.invoked);
    Violation { key, window, stuck_on }
}
