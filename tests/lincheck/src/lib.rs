//! A linearizability checker for client histories recorded against an etcd v2
//! keys API, in the Wing–Gong/Lowe style that Porcupine uses.
//!
//! A history is a list of [`Op`]s: which client asked what of which key, when
//! it asked, and when and what it was answered, or that it never learnt the
//! outcome. It is linearizable if every op can be given a point in time inside
//! its [call, return] interval such that applying the ops in point order to a
//! register per key ([`model::apply`]) gives every recorded answer. [`check()`]
//! decides that:
//!
//! 1. Validate every op (return not before call, an answer exactly when there is
//!    a return, an answer the input can give), so recording bugs are reported
//!    as such rather than as violations.
//! 2. Split the history by key. Keys are independent registers, and a history is
//!    linearizable iff each key's sub-history is (P-compositionality), which
//!    turns one exponential search into many small ones. A key's ops are
//!    numbered in call order and its values interned to `u32`s; values no op
//!    reads back all get one id, since only their presence can be observed.
//!    Gets with an unknown outcome are dropped: they change nothing.
//! 3. Lay the events out as two doubly linked lists in time order: the calls and
//!    returns of answered ops, and the calls of unknown-outcome ops. An unknown
//!    op returns at +infinity, so it has no return event and may be placed at
//!    any point after its call, or never.
//! 4. Scan for the next linearization point: first the answered ops' calls up
//!    to the first return event, then the unknown ops called before that
//!    return. Apply each candidate to the register; place it if its answer
//!    matches (unknown answers always do) and the configuration (ops placed,
//!    register) is new to the memo: push it on a stack, unlink its events and
//!    restart the scan. Unknown ops are only tried where an answered op needs
//!    them, and only one of several alike (see `search::Search::try_place`).
//! 5. Once every answered op is placed, the history is linearizable: unknown ops
//!    still unplaced never took effect, which is as good as taking effect
//!    after everything else since nothing observed it.
//! 6. When the scan runs out of candidates, the op returning at the first
//!    return event had to be placed before anything called later, and no
//!    choice so far allowed it: undo the last placement (relink its events,
//!    restore the register) and resume the scan after it. With nothing left to
//!    undo, the history is not linearizable; the deepest dead end the search
//!    met is reported as a [`Violation`]: the longest linearizable prefix, the
//!    register after it and, for every op that could have come next, why it
//!    could not.
//! 7. Every try is a step; past the [`Budget`] the key is
//!    [`CheckError::Undecided`] (with the deepest dead end so far) instead of
//!    searching on for hours.
//!
//! The memo is what makes this fast on real histories: the set of placed ops is
//! a bitset whose hash is kept incrementally (Zobrist), and a configuration is
//! skipped when one with the same answered ops and register but fewer unknown
//! ops placed was already explored, since that one had every option this one
//! has. A linearizable history of 5,000 ops on one key from 8 clients takes
//! well under a second. Deciding that a history is *not* linearizable means
//! ruling out every order, which is exponential in the worst case (the problem
//! is NP-complete) and grows with the number of unknown outcomes; writing a
//! fresh value with every write keeps it manageable, because unread values are
//! interchangeable.
//!
//! [`check_watch`] separately checks that a watcher saw every committed write
//! under its prefix once, in order.

mod bits;
pub mod check;
pub mod history;
pub mod model;
mod search;
#[cfg(test)]
mod testgen;
pub mod watch;

pub use check::{
    check, check_key, check_with, Budget, Candidate, CheckError, Exhausted, Placed, Rejection,
    Stats, Violation, DEFAULT_STEPS_PER_KEY,
};
pub use history::Op;
pub use model::{Input, Output};
pub use watch::{check_watch, WatchError, WatchEvent};
