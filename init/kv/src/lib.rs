//! keel's KV: the etcd v2 keys API as a pure, deterministic state machine.
//!
//! Raft (later) feeds committed commands into [`Store`]; every mutation takes the
//! command's time `now` (ms since the epoch) as an input and never reads a clock,
//! so every replica that applies the same log reaches the same tree, indexes and
//! events.
//!
//! 1. [`store`] holds the tree of directories and values and applies etcd v2's
//!    operations (get, set/create/update/compareAndSwap, POST in-order keys,
//!    delete/compareAndDelete, TTL expiry), each returning an [`Event`] or an
//!    [`EtcdError`] with etcd's code, message and cause.
//! 2. [`watch`] keeps the window of recent events that `?wait=true&waitIndex=N`
//!    is answered from.
//! 3. [`json`] turns events and errors into etcd's response bodies.

pub mod error;
pub mod json;
pub mod store;
pub mod watch;

pub use error::{ErrorCode, EtcdError};
pub use store::{
    normalize_key, parse_index, parse_ttl, Action, Event, NodeView, SetOptions, Store,
};
pub use watch::{EventHistory, DEFAULT_HISTORY};
