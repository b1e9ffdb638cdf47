//! keel's container runtime.
//!
//! - `bridge`: `network: bridge`: keel0, veth pairs, addresses, NAT, published ports;
//! - `cgroup`: a container's cgroup v2 group, limits and statistics;
//! - `mounts`: the mount plan the child carries out before its root changes;
//! - `runtime`: prepare a root (overlayfs), a cgroup and the child, and start it;
//! - `policy`: the restart decision, pure;
//! - `lifecycle`: a container's states, the events that move it and the
//!   actions they call for, pure;
//! - `logs`: the output ring and the rotated log file;
//! - `supervisor`: the tasks that start, watch, restart and stop containers.

pub mod bridge;
pub mod cgroup;
pub mod health;
pub mod lifecycle;
pub mod logs;
pub mod mounts;
pub mod policy;
pub mod runtime;
pub mod supervisor;
