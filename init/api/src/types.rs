//! The JSON bodies of the API, shared by the server and its clients.

use serde::{Deserialize, Serialize};

pub use keel_boot::phases::{PhaseRecord, TaskRecord, Timeline};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Booting,
    Ready,
    Stopping,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// `MemTotal` of the node.
    pub total_kb: u64,
    /// `MemAvailable` of the node.
    pub available_kb: u64,
    /// `MemTotal - MemAvailable`.
    pub used_kb: u64,
    /// Resident set size of PID 1 (keel).
    pub pid1_rss_kb: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Processes {
    /// Processes on the node, PID 1 included.
    pub total: u64,
    /// Exited processes not yet reaped.
    pub zombies: u64,
    /// Children PID 1 has reaped since boot.
    pub reaped: u64,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub hostname: String,
    pub state: NodeState,
    pub uptime_ms: f64,
    pub boot: Timeline,
    pub memory: Memory,
    pub processes: Processes,
}

/// The answer to an accepted request for an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub action: String,
    pub message: String,
}

/// Every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable, machine-readable kind: `not_found`, `method_not_allowed`, ...
    pub error: String,
    pub message: String,
}
