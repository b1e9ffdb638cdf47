//! keel's cluster store: etcd's v2 API, replicated with openraft.
//!
//! A member is layers around the pure [`keel_kv::Store`]:
//!
//! 1. [`config`] checks a member's configuration (etcd's flag names);
//!    [`flags`] reads it from keel-etcd's command line as etcd would.
//! 2. [`log`] is the durable Raft log (group-committed fsyncs) and the vote;
//!    [`sm`] the state machine with its snapshots.
//! 3. [`net`] carries Raft's RPCs and a follower's forwarded requests
//!    between members over HTTP.
//! 4. [`node`] is a running member: writes (group-committed by [`batch`]),
//!    linearizable reads, membership.
//! 5. [`api`] answers etcd's v2 HTTP API; [`form`] parses its forms.
//! 6. [`server`] starts it all.

pub mod api;
pub mod batch;
pub mod config;
pub mod discovery;
pub mod flags;
pub mod form;
pub mod log;
pub mod net;
pub mod node;
pub mod server;
pub mod sm;
pub mod stats;
pub mod types;

pub use server::{run_blocking, start, StartError, Started};
