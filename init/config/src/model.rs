//! What keel applies from a cloud-config: the typed result of validation.
//! Every value here is parsed: the settings' own types come from the
//! ground crate (`keel_types`), and code downstream never parses a string
//! of this model again.

use std::net::IpAddr;

pub use keel_types::{
    CapEntry, Cidr, DhcpMode, EtcdSettings, GoDuration, Group, HttpUrl, Id, ImageRef, Port,
    Protocol, RebootStrategy, Registry, Rlimit, Signal, UserSpec, WindowStart,
};

/// A user to create or update (`users:`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    pub name: String,
    pub gecos: Option<String>,
    /// A crypt(3) hash: keel stores hashes only.
    pub passwd_hash: Option<String>,
    pub homedir: Option<String>,
    pub no_create_home: bool,
    pub primary_group: Option<String>,
    pub groups: Vec<String>,
    pub no_user_group: bool,
    pub ssh_authorized_keys: Vec<String>,
    pub system: bool,
    pub shell: Option<String>,
}

/// A file to write (`write_files:`), content already decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFile {
    pub path: String,
    pub content: Vec<u8>,
    pub permissions: u32,
    /// `(user, group)`; `None` means root.
    pub owner: Option<(String, Option<String>)>,
}

/// `coreos.update`: keel's update agent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    pub reboot_strategy: Option<RebootStrategy>,
    pub server: Option<HttpUrl>,
    pub group: Option<Group>,
}

/// `coreos.locksmith`: keel's reboot coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Locksmith {
    pub endpoint: Vec<HttpUrl>,
    pub group: Option<Group>,
    pub window_start: Option<WindowStart>,
    pub window_length: Option<GoDuration>,
    pub etcd_cafile: Option<String>,
    pub etcd_certfile: Option<String>,
    pub etcd_keyfile: Option<String>,
}

/// A route of a `.network` unit: at least one of the two is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// None: the default route of the gateway's family.
    pub destination: Option<Cidr>,
    pub gateway: Option<IpAddr>,
}

/// A `.network` unit translated to keel's network settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Network {
    pub unit: String,
    /// `[Match] Name=` globs.
    pub match_names: Vec<String>,
    pub dhcp: Option<DhcpMode>,
    pub addresses: Vec<Cidr>,
    pub gateway: Option<IpAddr>,
    pub dns: Vec<IpAddr>,
    pub domains: Vec<String>,
    pub routes: Vec<Route>,
}

/// `restart:` of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Restart {
    #[default]
    Always,
    OnFailure,
    Never,
}

/// `network:` of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetMode {
    /// The node's own network namespace.
    Host,
    /// A namespace with only `lo`.
    None,
    /// A veth into keel's bridge, an address from its subnet, NAT out.
    #[default]
    Bridge,
}

/// `node_port:` of a bridge container: the one port of the node itself it
/// may reach (keel's input filter drops the rest). A door into the node,
/// off by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodePort {
    /// The KV's client port (etcd's v2 API): the port of the first
    /// `coreos.etcd2` `listen-client-urls` address, 2379 by default.
    Kv,
}

impl NodePort {
    /// The name the config uses.
    pub fn as_str(self) -> &'static str {
        match self {
            NodePort::Kv => "kv",
        }
    }
}

/// A mount into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSpec {
    /// A directory of the node (under the state disk) bound in.
    Bind {
        source: String,
        target: String,
        readonly: bool,
    },
    /// A tmpfs of `size` bytes (0: the kernel's default).
    Tmpfs { target: String, size: u64 },
}

/// `resources:` of a container; `None` leaves the kernel's default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resources {
    /// `memory.max`, bytes.
    pub memory: Option<u64>,
    /// `memory.high`, bytes.
    pub memory_high: Option<u64>,
    /// `cpu.max` as thousandths of a CPU (`cpus: 1.5` = 1500).
    pub millicpus: Option<u64>,
    /// `cpu.weight`, 1..=10000.
    pub cpu_weight: Option<u64>,
    /// `pids.max`.
    pub pids: Option<u64>,
    /// `io.weight`, 1..=10000.
    pub io_weight: Option<u64>,
    /// `io.max`, one entry per device.
    pub io_max: Vec<IoMax>,
}

/// One `resources.io_max` entry: bandwidth and IOPS caps on a block
/// device; `None` leaves that cap unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IoMax {
    /// The device node, an absolute path under `/dev/`.
    pub device: String,
    /// Read bytes per second.
    pub rbps: Option<u64>,
    /// Written bytes per second.
    pub wbps: Option<u64>,
    /// Read operations per second.
    pub riops: Option<u64>,
    /// Write operations per second.
    pub wiops: Option<u64>,
}

/// `healthcheck:` of a container: one of tcp, http, command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Connect to this port of the container.
    Tcp(u16),
    /// GET this path on this port of the container; 2xx/3xx is healthy.
    Http { port: u16, path: String },
    /// Run this inside the container's namespaces; exit 0 is healthy.
    Command(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    pub probe: Probe,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Failures in a row before the container is unhealthy (and restarted).
    pub retries: u32,
    pub start_period_ms: u64,
}

/// The namespace a [`Sysctl`] belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysctlNs {
    /// `net.*`: the container's network namespace (not with `network: host`).
    Net,
    /// `kernel.shm*`, `kernel.msg*`, `kernel.sem`, `fs.mqueue.*`: the
    /// container's IPC namespace (it always has its own).
    Ipc,
}

/// A kernel parameter of one of the container's own namespaces
/// (`sysctls: {net.ipv4.ip_unprivileged_port_start: 0}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl {
    /// The name as written (`net.ipv4.ip_forward` or
    /// `net/ipv4/conf/eth0.1/forwarding`).
    pub name: String,
    /// Its file under /proc/sys, slash-separated (`net/ipv4/ip_forward`):
    /// components of letters, digits, `_` and `-` (and `.` in the slash
    /// form), none `.` or `..`.
    pub path: String,
    /// What is written to the file: at most 1024 bytes, no newline or NUL.
    pub value: String,
    pub ns: SysctlNs,
}

/// A container (`containers:`), or one translated from a `docker run` unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub name: String,
    /// `NAME[:TAG]` or `NAME@sha256:...`, from the node's store or a
    /// registry (`registry.example:5000/app:1`).
    pub image: ImageRef,
    /// Replaces the image's entrypoint when not empty.
    pub command: Vec<String>,
    /// Replaces the image's cmd when not empty.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub ports: Vec<Port>,
    pub mounts: Vec<MountSpec>,
    pub resources: Resources,
    pub restart: Restart,
    /// First restart delay and its cap, ms (default 10 s and 5 min); the
    /// delay goes back to the first after `backoff_reset_ms` up.
    pub backoff_ms: u64,
    pub backoff_max_ms: u64,
    pub backoff_reset_ms: u64,
    pub network: NetMode,
    /// `user`, `user:group`, with names of the image or numbers (`user:`,
    /// `--user`); None: the image's `User`, else root.
    pub user: Option<UserSpec>,
    /// More supplementary groups (`group_add`, `--group-add`): names of
    /// the image's /etc/group or numbers.
    pub group_add: Vec<Id>,
    pub cap_add: Vec<CapEntry>,
    pub cap_drop: Vec<CapEntry>,
    /// Writes go to a tmpfs and are lost at restart.
    pub readonly: bool,
    /// keel's minimal init (`keel-init`) is the container's PID 1 and runs
    /// the program as its child: it forwards signals and reaps orphans
    /// (`init: true`, `--init`).
    pub init: bool,
    pub healthcheck: Option<Healthcheck>,
    /// Start after these have started (and are healthy, when they have a
    /// health check).
    pub after: Vec<String>,
    /// Like `after`, and stop when one of them stops for good.
    pub requires: Vec<String>,
    pub hostname: Option<String>,
    pub workdir: Option<String>,
    /// The stop signal (`stop_signal`, `--stop-signal`); None: the image's
    /// `StopSignal`, else SIGTERM.
    pub stop_signal: Option<Signal>,
    /// The stop signal, then this long, then `cgroup.kill`; ms (default
    /// 10 s).
    pub stop_grace_ms: u64,
    /// Limits set before exec; the rest are inherited from keel.
    pub rlimits: Vec<Rlimit>,
    /// Namespaced kernel parameters (`sysctls:`, `--sysctl`), written in
    /// the container's own namespaces before its program starts.
    pub sysctls: Vec<Sysctl>,
    /// Register the container in the cluster store while it is healthy.
    pub announce: Option<Announce>,
    /// The one node port this container may reach through the bridge.
    pub node_port: Option<NodePort>,
}

/// `announce: {name, port}`: the container is registered at
/// `/services/<name>/<instance>` in the cluster store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub name: String,
    /// The port clients use on the node.
    pub port: u16,
}

impl Container {
    /// A container `name` of `image` with keel's defaults: no command or
    /// arguments of its own (the image's), `restart: always`, the bridge
    /// network, backoff from 10 s to 5 min (reset after 10 min up), and
    /// 10 s between the stop signal and `cgroup.kill`.
    pub fn new(name: &str, image: ImageRef) -> Container {
        use crate::containers::{
            DEFAULT_BACKOFF_MAX_MS, DEFAULT_BACKOFF_MS, DEFAULT_BACKOFF_RESET_MS,
            DEFAULT_STOP_GRACE_MS,
        };
        Container {
            name: name.to_string(),
            image,
            command: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            ports: Vec::new(),
            mounts: Vec::new(),
            resources: Resources::default(),
            restart: Restart::default(),
            backoff_ms: DEFAULT_BACKOFF_MS,
            backoff_max_ms: DEFAULT_BACKOFF_MAX_MS,
            backoff_reset_ms: DEFAULT_BACKOFF_RESET_MS,
            network: NetMode::default(),
            user: None,
            group_add: Vec::new(),
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            readonly: false,
            init: false,
            healthcheck: None,
            after: Vec::new(),
            requires: Vec::new(),
            hostname: None,
            workdir: None,
            stop_signal: None,
            stop_grace_ms: DEFAULT_STOP_GRACE_MS,
            rlimits: Vec::new(),
            sysctls: Vec::new(),
            announce: None,
            node_port: None,
        }
    }
}

/// Credentials for one registry (`registries.auth`).
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    /// `host[:port]`, as in image references.
    pub registry: Registry,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryAuth {
    // Configs are printed in logs and test failures: not the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// `registries:`: how images missing from the node are pulled.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Registries {
    /// Registries (`host[:port]`) spoken to over plain http.
    pub insecure: Vec<Registry>,
    pub auth: Vec<RegistryAuth>,
}

/// `api:`: the management API's TCP port serves HTTPS only, to clients
/// with a certificate `client_ca_file` signed. Absolute paths of PEM files
/// on the node (normally written by `write_files` in the same config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Api {
    /// The server's certificate chain, leaf first.
    pub cert_file: String,
    /// The server certificate's private key.
    pub key_file: String,
    /// The CA whose certificates clients must present.
    pub client_ca_file: String,
}

/// Everything keel applies or translates.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CloudConfig {
    pub hostname: Option<String>,
    pub users: Vec<User>,
    /// Top-level `ssh_authorized_keys`: for the `core` user.
    pub ssh_authorized_keys: Vec<String>,
    pub write_files: Vec<WriteFile>,
    pub manage_etc_hosts: bool,
    pub update: Option<Update>,
    pub locksmith: Option<Locksmith>,
    /// `coreos.etcd2` (and the translated `coreos.etcd`) settings.
    pub etcd2: keel_types::EtcdSettings,
    pub networks: Vec<Network>,
    /// `containers:`, and `docker run` units translated, in start order
    /// as written (the supervisor orders them by `after`/`requires`).
    pub containers: Vec<Container>,
    pub registries: Registries,
    /// `api:`; `None`: the TCP port stays closed (the unix socket serves).
    pub api: Option<Api>,
}
