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

/// What the node runs as, in one word: normally, or in one of the modes
/// where it keeps its API up but does not do its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeMode {
    /// A trusted OS slot and the machine's config (or none) applied.
    #[default]
    Normal,
    /// The config had errors: nothing of it was applied (`config.errors`
    /// says what).
    Maintenance,
    /// No OS slot could be trusted: keel runs from the initramfs
    /// (`root.refused` says why).
    Rescue,
}

impl NodeMode {
    /// Rescue before maintenance: without a root the config is moot.
    pub fn of(root: &RootStatus, config: &ConfigStatus) -> NodeMode {
        if root.mode == "rescue" {
            NodeMode::Rescue
        } else if config.maintenance {
            NodeMode::Maintenance
        } else {
            NodeMode::Normal
        }
    }
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
    /// Normal, maintenance or rescue ([`NodeMode::of`] the root and the
    /// config below).
    #[serde(default)]
    pub mode: NodeMode,
    pub uptime_ms: f64,
    pub boot: Timeline,
    pub memory: Memory,
    pub processes: Processes,
    /// The OS slot the node runs from and how it was verified.
    #[serde(default)]
    pub root: RootStatus,
    /// The machine's cloud-config: where it came from, what was done.
    #[serde(default)]
    pub config: ConfigStatus,
    /// The cluster store's member on this node; none while it is not
    /// running.
    #[serde(default)]
    pub kv: Option<KvStatus>,
    /// Who can reach this API, and how.
    #[serde(default)]
    pub api: ApiStatus,
    /// The kernel's own defences: lockdown and the CPU mitigations.
    #[serde(default)]
    pub kernel: KernelStatus,
}

/// The kernel's defences as it reports them: the lockdown level set at
/// boot, the CPU's vulnerabilities read right after the node is ready (or
/// when first asked, if sooner).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KernelStatus {
    /// The lockdown level the kernel reports (`integrity` once keel has
    /// locked it, right after its boot-time kexec decision), or
    /// `none (WHY)` when keel could not lock it.
    pub lockdown: String,
    /// Each of `/sys/devices/system/cpu/vulnerabilities`, as the kernel
    /// words it (`Not affected`, `Mitigation: ...`, `Vulnerable...`).
    pub cpu: Vec<CpuVulnerability>,
    /// The kernel's own command-line parameters (the `keel.*` ones are left
    /// out: they may carry a config URL and its credentials).
    #[serde(default)]
    pub cmdline: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuVulnerability {
    pub name: String,
    pub state: String,
}

impl KernelStatus {
    /// The vulnerabilities the kernel says are not mitigated.
    pub fn vulnerable(&self) -> impl Iterator<Item = &CpuVulnerability> {
        self.cpu
            .iter()
            .filter(|v| v.state.starts_with("Vulnerable"))
    }
}

/// The KV member on this node and what it exposes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KvStatus {
    /// The member's name and id (hex).
    pub name: String,
    pub id: String,
    /// Where the client port listens (`IP:PORT`).
    pub client: Vec<String>,
    /// Where the peer port listens; empty while it is closed (a lone
    /// member opens none).
    pub peer: Vec<String>,
    /// What it opens without authentication, one line each.
    pub warnings: Vec<String>,
    /// The cluster's raised alarms: while there is one, writes that add
    /// data are refused on every member.
    #[serde(default)]
    pub alarms: Vec<KvAlarm>,
    /// The store's size as the quota measures it, and the quota.
    #[serde(default)]
    pub store_bytes: u64,
    #[serde(default)]
    pub quota_bytes: u64,
}

/// A raised KV alarm (etcd's NOSPACE), as `GET /v1/kv/alarms` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KvAlarm {
    /// etcd's name for it: `NOSPACE`.
    pub alarm: String,
    /// The member that raised it (id in hex) and its name, when known.
    pub member_id: String,
    pub member: String,
    /// `quota` (the store reached the member's quota-backend-bytes) or
    /// `disk` (the member's data disk is short of free space).
    pub reason: String,
    /// One line for people.
    pub message: String,
    /// When it was raised (seconds since the epoch).
    pub raised_unix: u64,
}

/// `GET /v1/kv/alarms` and `POST /v1/kv/alarms/disarm`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KvAlarms {
    /// GET: the raised alarms. POST: the alarms the disarm cleared.
    pub alarms: Vec<KvAlarm>,
}

/// The management API's doors.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ApiStatus {
    /// The TCP port when it is open (HTTPS with client certificates only),
    /// None when it is closed.
    pub tcp_port: Option<u16>,
    /// One line for people: what serves and why (`tcp port 9420 closed: no
    /// api: in the cloud-config; the unix socket serves root on the node`).
    pub note: String,
    /// The unix socket inside the node (root only).
    pub socket: String,
    /// The server certificate's subject CN and end of validity (RFC 3339,
    /// and seconds since the epoch), when the port is open.
    pub cert_subject: Option<String>,
    pub cert_not_after: Option<String>,
    pub cert_not_after_unix: Option<i64>,
}

/// The cloud-config of this boot.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConfigStatus {
    /// The datasource it came from (`fw_cfg opt/keel/config`, ...), or none.
    pub source: Option<String>,
    /// True when the config had errors: nothing of it was applied.
    pub maintenance: bool,
    /// `LINE:COL: PATH: MESSAGE`, every one.
    pub errors: Vec<String>,
    /// The verdict on every item.
    pub items: Vec<ConfigItem>,
    /// Files this boot's apply changed.
    pub changed: Vec<String>,
    /// This boot's apply: ms validating and planning, ms writing.
    #[serde(default)]
    pub checked_ms: f64,
    #[serde(default)]
    pub written_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigItem {
    pub path: String,
    pub line: usize,
    /// `applied`, `translated`, `accepted` (kept, not yet applied) or
    /// `refused`.
    pub verdict: String,
    pub note: String,
}

/// Where the root came from and how far it is trusted.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RootStatus {
    /// `disk` (a GPT slot), `diskless` (the slot the initramfs carries) or
    /// `rescue` (no slot could be trusted: a tmpfs copy of the initramfs).
    pub mode: String,
    /// The slot booted: `A`, `B` or `diskless`.
    pub slot: Option<String>,
    pub version: Option<String>,
    pub channel: Option<String>,
    pub build_id: Option<String>,
    /// Id of the key that signed the manifest.
    pub key_id: Option<String>,
    /// dm-verity: `verified` (every block read so far matched),
    /// `corrupted` (a block did not: reads of it fail), or `none`.
    pub verity: String,
    pub root_hash: Option<String>,
    /// The full-content BLAKE3 check, when it ran this boot.
    pub content_check: Option<ContentCheck>,
    /// Slots refused this boot, and why.
    pub refused: Vec<RefusedSlot>,
    /// The A/B state of every slot on the disk (after this boot's writes).
    pub slots: Vec<SlotInfo>,
    /// Whether the booted slot has been marked successful.
    pub successful: bool,
    /// What is mounted on /var/lib/keel.
    pub state: Option<StateMount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentCheck {
    pub bytes: u64,
    pub micros: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedSlot {
    pub slot: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotInfo {
    pub name: String,
    pub priority: u8,
    pub tries: u8,
    pub successful: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateMount {
    /// The partition or `tmpfs`.
    pub source: String,
    pub fstype: String,
    pub size_bytes: u64,
    /// Set when this boot grew the partition and filesystem to fill the disk.
    pub grown_from_bytes: Option<u64>,
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

/// The answer to `POST /v1/config` (and `?dry_run=1`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConfigApplied {
    pub dry_run: bool,
    /// False when the config has errors: nothing was (or would be) changed.
    pub accepted: bool,
    pub errors: Vec<String>,
    pub items: Vec<ConfigItem>,
    /// Files changed (or, in a dry run, that would change).
    pub changed: Vec<String>,
    /// Directories created (or that would be).
    pub created: Vec<String>,
    pub unchanged: Vec<String>,
    /// Time spent validating and planning, in ms.
    #[serde(default)]
    pub checked_ms: f64,
    /// Time spent writing files (0 in a dry run), in ms.
    #[serde(default)]
    pub written_ms: f64,
    /// What happened (or, in a dry run, would happen) to the containers:
    /// `NAME: added|replaced|removed`.
    #[serde(default)]
    pub containers: Vec<String>,
}

/// `GET /v1/network`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NetworkStatus {
    pub links: Vec<LinkStatus>,
    pub routes: Vec<RouteStatus>,
    /// Name servers in /etc/resolv.conf.
    pub dns: Vec<String>,
    /// How the links were configured: `config (UNIT...)`, `keel.ip`, `dhcp`, or `none`.
    pub source: String,
    /// The DHCP lease, when a link is configured by DHCP and has one.
    #[serde(default)]
    pub dhcp: Option<DhcpLease>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DhcpLease {
    pub link: String,
    /// CIDR.
    pub address: String,
    pub router: Option<String>,
    pub dns: Vec<String>,
    /// From the link coming up to the first lease applied.
    pub first_lease_ms: f64,
    /// The server that gave the lease (its identifier): renewals go to it.
    #[serde(default)]
    pub server: Option<String>,
    /// The lease time the last ACK granted, in seconds.
    #[serde(default)]
    pub lease_s: Option<u64>,
    /// When the last ACK (the first, a renewal's or a rebind's) was taken,
    /// then T1 (renew with the server), T2 (rebind with any server) and the
    /// expiry: ms since boot, the clock of `Status::uptime_ms`. Absent when
    /// the ACK could not be read for them.
    #[serde(default)]
    pub acked_ms: Option<u64>,
    #[serde(default)]
    pub renew_ms: Option<u64>,
    #[serde(default)]
    pub rebind_ms: Option<u64>,
    #[serde(default)]
    pub expires_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    pub name: String,
    pub index: u32,
    pub up: bool,
    /// Carrier and up (IF_OPER_UP), or up on a driver that reports no
    /// carrier (IF_OPER_UNKNOWN).
    pub running: bool,
    /// The kernel's operational state: up, unknown, down, dormant, ...
    pub operstate: String,
    pub mac: Option<String>,
    pub mtu: u32,
    /// CIDRs.
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteStatus {
    /// CIDR; `0.0.0.0/0` for the default route.
    pub destination: String,
    pub gateway: Option<String>,
    pub dev: Option<String>,
}

/// A container's resource use, from its cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContainerStats {
    pub cpu_usec: u64,
    pub memory_bytes: u64,
    pub memory_max: Option<u64>,
    pub pids: u64,
    pub pids_max: Option<u64>,
    /// Processes the kernel OOM-killed in this container.
    pub oom_kills: u64,
    /// Times the whole container was OOM-killed as a group.
    pub oom_group_kills: u64,
    /// Bytes read and written on block devices (`io.stat`).
    #[serde(default)]
    pub io_rbytes: u64,
    #[serde(default)]
    pub io_wbytes: u64,
}

/// A container as the supervisor sees it (`GET /v1/containers`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub name: String,
    pub image: String,
    /// `waiting` (for `after`/`requires`), `starting`, `running`,
    /// `stopping`, `backoff` (restart pending), `exited`, `failed`,
    /// `stopped`.
    pub state: String,
    pub pid: Option<i32>,
    /// ms since this run started, while running.
    pub uptime_ms: Option<u64>,
    pub restarts: u32,
    /// How the last run ended: `exited 3`, `killed by signal 9`, ...
    pub last_exit: Option<String>,
    /// Why the last start failed.
    pub error: Option<String>,
    /// ms until the pending restart.
    pub restart_in_ms: Option<u64>,
    /// `healthy`, `unhealthy`, `starting`, or none without a health check.
    pub health: Option<String>,
    pub network: String,
    /// Its address on keel's bridge.
    #[serde(default)]
    pub address: Option<String>,
    /// The node port its config opens to it (`node_port:`), with what that
    /// means: `kv: may reach the node's KV client port (a door into the
    /// node)`. None: it reaches no port of the node.
    #[serde(default)]
    pub node_port: Option<String>,
    pub stats: ContainerStats,
    /// The last start: from the supervisor's start until the process was
    /// running the container's program (exec done), ms.
    #[serde(default)]
    pub start_ms: Option<f64>,
    /// The last finished run: from the start until its exit was reaped, ms.
    #[serde(default)]
    pub run_ms: Option<f64>,
}

/// `GET /v1/containers/NAME/logs?offset=N`: output after `offset`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContainerLogs {
    pub name: String,
    /// The offset to ask for next.
    pub next: u64,
    /// The output, UTF-8 with invalid bytes replaced.
    pub text: String,
}
