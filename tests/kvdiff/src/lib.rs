//! Differential testing of an etcd v2 HTTP server against Debian's etcd.
//!
//! 1. [`server`] starts etcd, or any binary taking etcd's flags, on free
//!    loopback ports and kills it on drop.
//! 2. [`http`] is a small blocking HTTP/1.1 client that sends targets verbatim
//!    and reads long-poll and streamed bodies line by line.
//! 3. [`script`] describes a sequence of steps (requests, background watches,
//!    sleeps, write bursts) with index templates expanded per server.
//! 4. [`normalise`] rewrites what legitimately differs between two servers
//!    (index offsets, expiration times, URLs, ids) so answers can be compared.
//! 5. [`runner`] replays a script on two servers in lockstep and reports each
//!    mismatch with its step, request and both responses.
//! 6. [`cluster`] starts several members as one cluster, for the answers
//!    that depend on membership, compared by each URL's role.

pub mod cluster;
pub mod error;
pub mod http;
pub mod normalise;
pub mod runner;
pub mod script;
pub mod server;

pub use cluster::{Cluster, Layout};
pub use error::{HttpError, ServerError};
pub use http::{Conn, Request, Response, Watch};
pub use normalise::{normalise, Body, Normalised, Side};
pub use runner::{run, Mismatch, Report, Target};
pub use script::{expand, Mode, Step, Vars};
pub use server::{keel_under_test, Server};
