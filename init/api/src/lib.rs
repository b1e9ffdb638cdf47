//! keel's management API: HTTP+JSON on a unix socket inside the node and on a
//! TCP port.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | /v1/status | `Status`: version, uptime, boot timeline, memory, processes |
//! | POST | /v1/reboot | 202 `Accepted`, then an orderly reboot |
//! | POST | /v1/poweroff | 202 `Accepted`, then an orderly power-off |
//!
//! Errors are JSON `ErrorBody` with the HTTP status; the server never panics
//! on a request.

pub mod client;
pub mod server;
pub mod types;

pub use client::{Client, ClientError, Endpoint};
pub use server::{serve, Node};
pub use types::{
    Accepted, ConfigApplied, ConfigItem, ConfigStatus, ContentCheck, DhcpLease, ErrorBody,
    LinkStatus, Memory, NetworkStatus, NodeState, Processes, RefusedSlot, RootStatus, RouteStatus,
    SlotInfo, StateMount, Status,
};
