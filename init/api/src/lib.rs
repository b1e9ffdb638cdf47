//! keel's management API: HTTP+JSON on a unix socket inside the node and on a
//! TCP port.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | /v1/status | `Status`: version, uptime, boot timeline, memory, processes |
//! | POST | /v1/reboot | 202 `Accepted`, then an orderly reboot |
//! | POST | /v1/poweroff | 202 `Accepted`, then an orderly power-off |
//! | GET, POST | /v1/config | the config of this boot; validate and apply one (`?dry_run=1`; over TCP a config without `api:` needs `?close_api=1`) |
//! | GET | /v1/network | links, addresses, routes, DNS, the DHCP lease |
//! | GET | /v1/containers | every container's `ContainerStatus` |
//! | GET | /v1/containers/NAME | one container |
//! | GET | /v1/containers/NAME/logs?offset=N | `ContainerLogs` after offset N |
//! | POST | /v1/containers/NAME/{start,stop,restart} | 202 `Accepted` |
//! | GET | /v1/kv/alarms | `KvAlarms`: the KV's raised NOSPACE alarms |
//! | POST | /v1/kv/alarms/disarm | `KvAlarms`: the alarms it cleared |
//!
//! Errors are JSON `ErrorBody` with the HTTP status; the server never panics
//! on a request.
//!
//! The TCP port serves HTTPS only, to clients with a certificate whose
//! subject Organization names a role (`keel:admin`, `keel:reader`); the
//! unix socket serves root inside the node. See [`server`] for the rules
//! and [`client::Client::with_tls`].

pub mod client;
#[cfg(feature = "fake")]
pub mod fake;
pub mod server;
pub mod types;

pub use client::{Client, ClientError, Endpoint};
pub use keel_tls::ClientFiles;
pub use server::{serve, serve_tcp, serve_unix, ApplyOptions, Caller, KvDisarm, Node, Role};
pub use types::{
    Accepted, ApiStatus, ConfigApplied, ConfigItem, ConfigStatus, ContainerLogs, ContainerStats,
    ContainerStatus, ContentCheck, CpuVulnerability, DhcpLease, ErrorBody, KernelStatus, KvAlarm,
    KvAlarms, KvStatus, LinkStatus, Memory, NetworkStatus, NodeMode, NodeState, Processes,
    RefusedSlot, RootStatus, RouteStatus, SlotInfo, StateMount, Status,
};
