//! Start one run of a container:
//!
//! 1. the root: an overlayfs of the image's layer directories (read-only
//!    lowers) and a writable upper; the upper lives on the state disk
//!    (`STATE/NAME/upper`, kept across restarts) or, for a `readonly`
//!    container, on a tmpfs that goes away with the run;
//! 2. the mount plan (`mounts::plan`), checked against the fresh root;
//! 3. the program, user and environment from the image config and the
//!    container's settings; the program is looked up in the root's PATH;
//! 4. the cgroup with its limits (`cgroup::Cgroup::create`);
//! 5. the log pipes, then `keel_sys::spawn::spawn`: clone3 straight into
//!    the cgroup and the namespaces; the child writes the container's
//!    sysctls ([`sysctl_writes`]) in its own namespaces before its mounts.
//!
//! `stop_run` undoes 1 once the run's processes are gone.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use keel_config::model::{Container, Id, NetMode, SysctlNs, UserSpec};
use keel_sys::fs::MountFlags;
use keel_sys::spawn::{self, ChildSpec, Spawned};

use crate::cgroup::{Cgroup, CgroupError};
use crate::mounts::{self, PlanError};

/// Where containers live on a node.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// Writable layers: `STATE/NAME/upper`, `work`.
    pub state: PathBuf,
    /// Roots and tmpfs uppers: `RUN/NAME/rootfs`.
    pub run: PathBuf,
    /// keel's `containers` cgroup.
    pub cgroup: PathBuf,
    /// What bind sources (`/var/lib/keel/volumes/...`) are under: `/`.
    pub source_root: PathBuf,
    /// keel's init for containers with `init: true` (the root image's
    /// `/usr/lib/keel/keel-init`), bound at `mounts::INIT_TARGET`.
    pub init: PathBuf,
}

impl Dirs {
    /// The node's layout.
    pub fn node() -> Dirs {
        Dirs {
            state: "/var/lib/keel/containers".into(),
            run: "/run/keel/containers".into(),
            cgroup: Path::new("/sys/fs/cgroup").join(crate::cgroup::GROUP),
            source_root: "/".into(),
            init: "/usr/lib/keel/keel-init".into(),
        }
    }
}

/// An image, ready to be a root: its layer directories (top first) and the
/// settings of its config.
#[derive(Debug, Clone, Default)]
pub struct ImageRoot {
    pub layers: Vec<PathBuf>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    /// The image's `User`, parsed.
    pub user: Option<UserSpec>,
    /// The image's `StopSignal`, parsed.
    pub stop_signal: Option<keel_config::model::Signal>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mount the root: {0}")]
    Root(keel_sys::SysError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("network bridge: {0}")]
    Bridge(#[from] crate::bridge::NetError),
    #[error("network bridge: this node has no bridge configured")]
    NoBridge,
    #[error("the image has no layers")]
    NoLayers,
    #[error("init: true: keel's init {path}: {source}")]
    Init {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("nothing to run: neither the container nor its image names a command")]
    NoCommand,
    #[error("{program}: not found in the image (PATH {path})")]
    NotFound { program: String, path: String },
    #[error("user {user:?}: {why}")]
    User { user: String, why: String },
    #[error("read {path} of the container: {why}")]
    Untrusted { path: String, why: String },
    #[error("{what} contains a NUL byte")]
    Nul { what: &'static str },
    #[error(
        "sysctl {name}: a sysctl of the network namespace, which with network: host is the node's"
    )]
    NodeSysctl { name: String },
    #[error("prepare the confinement: {0}")]
    Confine(#[source] HookError),
    #[error(transparent)]
    Spawn(keel_sys::SysError),
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RunError {
    let path = path.to_path_buf();
    move |source| RunError::Io { op, path, source }
}

/// The child's last step before exec, prepared in the parent: it must be
/// async-signal-safe and returns an errno on failure.
pub type Confinement = Box<dyn Fn() -> Result<(), i32> + Send + Sync>;

/// The error of a hook the node plugs in (its confiner, its image
/// source): the node's own typed error, kept whole so its cause chain
/// reaches the log and the status.
pub type HookError = Box<dyn std::error::Error + Send + Sync>;

/// Prepares the confinement of a container whose process runs as
/// `uid`/`gid` (user, capabilities, no_new_privs, seccomp).
pub type Confiner = dyn Fn(&Container, &Ident) -> Result<Confinement, HookError> + Send + Sync;

/// keel's bridge, set up on first use.
pub struct BridgeNet {
    pub config: crate::bridge::BridgeConfig,
    /// `/proc`, for ip_forward.
    pub proc_root: PathBuf,
    /// Where the leases are kept (`bridge.json`).
    pub state_dir: PathBuf,
    /// The node's resolv.conf, the base of the containers'.
    pub node_resolv: PathBuf,
    bridge: std::sync::Mutex<Option<crate::bridge::Bridge>>,
}

impl BridgeNet {
    pub fn new(
        config: crate::bridge::BridgeConfig,
        proc_root: PathBuf,
        state_dir: PathBuf,
        node_resolv: PathBuf,
    ) -> BridgeNet {
        BridgeNet {
            config,
            proc_root,
            state_dir,
            node_resolv,
            bridge: std::sync::Mutex::new(None),
        }
    }

    /// Run `f` on the bridge, setting it up first when needed.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut crate::bridge::Bridge) -> Result<T, crate::bridge::NetError>,
    ) -> Result<T, RunError> {
        let mut g = self.bridge.lock().map_err(|_| RunError::NoBridge)?;
        if g.is_none() {
            *g = Some(crate::bridge::Bridge::setup(
                self.config.clone(),
                &self.proc_root,
                &self.state_dir,
            )?);
        }
        match g.as_mut() {
            Some(b) => Ok(f(b)?),
            None => Err(RunError::NoBridge),
        }
    }
}

/// What running a command inside a run needs (a `command:` health check).
#[derive(Debug)]
pub struct Joinable {
    /// A pidfd of the run's first process: its namespaces are joined.
    pub pidfd: OwnedFd,
    pub cgroup: PathBuf,
    pub rootfs: PathBuf,
    pub env: Vec<String>,
    pub cwd: String,
    pub ident: Ident,
    pub host_network: bool,
}

/// One running instance of a container.
#[derive(Debug)]
pub struct Run {
    pub joinable: Joinable,
    /// The container's address on keel's bridge.
    pub address: Option<std::net::Ipv4Addr>,
    pub pid: i32,
    pub pidfd: OwnedFd,
    pub cgroup: Cgroup,
    pub rootfs: PathBuf,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// What a stop sends first: the spec's `stop_signal`, else the
    /// image's, else SIGTERM.
    pub stop_signal: keel_config::model::Signal,
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn cstring(s: &str, what: &'static str) -> Result<CString, RunError> {
    CString::new(s).map_err(|_| RunError::Nul { what })
}

/// The argv: the container's command/args replace the image's
/// entrypoint/cmd, as `docker run` does.
pub fn argv(c: &Container, img: &ImageRoot) -> Vec<String> {
    let entry = if c.command.is_empty() {
        &img.entrypoint
    } else {
        &c.command
    };
    let args = if c.args.is_empty() && c.command.is_empty() {
        &img.cmd
    } else {
        &c.args
    };
    entry.iter().chain(args).cloned().collect()
}

/// What is executed: `program` with `args` as they are, or, with
/// `init: true`, keel-init at `mounts::INIT_TARGET` with them after it
/// (`/dev/init PROGRAM -- ARGV0 [ARG...]`: the program keeps its argv[0]).
pub fn exec_line(c: &Container, program: &str, args: &[String]) -> (String, Vec<String>) {
    if !c.init {
        return (program.to_string(), args.to_vec());
    }
    let init = mounts::INIT_TARGET.to_string();
    let mut argv = vec![init.clone(), program.to_string(), "--".to_string()];
    argv.extend(args.iter().cloned());
    (init, argv)
}

/// The environment: the image's, then the container's (which wins), with a
/// PATH and HOSTNAME when missing.
pub fn environment(c: &Container, img: &ImageRoot, hostname: &str) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    let mut set = |kv: String| {
        let key = kv.split('=').next().unwrap_or("").to_string();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    };
    set(format!("PATH={DEFAULT_PATH}"));
    set(format!("HOSTNAME={hostname}"));
    for e in &img.env {
        set(e.clone());
    }
    for (k, v) in &c.env {
        set(format!("{k}={v}"));
    }
    env
}

/// Find `program` in the root: a path with a slash as is, else the first
/// PATH entry holding it. Nothing is followed on the host: a name that
/// exists (even as a symlink, resolved later inside the container) counts.
pub fn find_program(root: &Path, program: &str, env: &[String]) -> Result<String, RunError> {
    if program.contains('/') {
        return Ok(program.to_string());
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':').filter(|d| d.starts_with('/')) {
        let inner = format!("{}/{program}", dir.trim_end_matches('/'));
        // The directory must not lead out through a link; the program
        // itself may be one (busybox applets are).
        if let Ok(host) = mounts::inside(root, dir) {
            if std::fs::symlink_metadata(host.join(program)).is_ok() {
                return Ok(inner);
            }
        }
    }
    Err(RunError::NotFound {
        program: program.to_string(),
        path: path.to_string(),
    })
}

/// The most keel reads of a file of a container's tree.
pub const MAX_READ: u64 = 1 << 20;

/// The text of `inner` in the container tree at `root`, or `None` when it
/// does not exist. The tree is the container's to write (its upper layer
/// is kept across restarts, a volume is shared), so PID 1 reads it only as
/// a regular file of at most `cap` bytes: no symbolic link on the way
/// ([`mounts::inside`]) nor at the end (`O_NOFOLLOW`), and opened
/// `O_NONBLOCK`, so that a FIFO cannot hold the open, then checked with
/// fstat on the descriptor (a FIFO, a device or a socket is refused), and
/// read through a cap (a file growing after the fstat cannot bloat PID 1).
pub fn read_regular(root: &Path, inner: &str, cap: u64) -> Result<Option<String>, RunError> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let bad = |why: String| RunError::Untrusted {
        path: inner.to_string(),
        why,
    };
    let host = mounts::inside(root, inner)
        .map_err(|_| bad("is or goes through a symbolic link".into()))?;
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&host)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(bad("is a symbolic link".into()))
        }
        Err(e) => return Err(bad(format!("open: {e}"))),
    };
    let m = f.metadata().map_err(|e| bad(format!("fstat: {e}")))?;
    let t = m.file_type();
    if !t.is_file() {
        let kind = if t.is_fifo() {
            "a FIFO"
        } else if t.is_dir() {
            "a directory"
        } else if t.is_socket() {
            "a socket"
        } else {
            "a device"
        };
        return Err(bad(format!("is {kind}, not a regular file")));
    }
    if m.len() > cap {
        return Err(bad(format!(
            "is {} bytes, over the {cap}-byte limit",
            m.len()
        )));
    }
    let mut buf = Vec::new();
    f.take(cap + 1)
        .read_to_end(&mut buf)
        .map_err(|e| bad(format!("read: {e}")))?;
    if buf.len() as u64 > cap {
        return Err(bad(format!("grew over the {cap}-byte limit while read")));
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// Who a container's processes are: user, primary group, supplementary
/// groups (the primary one first).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ident {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// A line of /etc/passwd or /etc/group, split at its colons.
fn entries(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines().map(|l| l.split(':').collect::<Vec<&str>>())
}

/// `user[:group]` as Docker (runc, containerd) resolves it in the image's
/// /etc/passwd and /etc/group, read with [`read_regular`] (a symlinked file
/// would be read on the host, a FIFO would block PID 1):
///
/// - a user name must be in /etc/passwd: its uid and gid;
/// - a number is the uid; the first /etc/passwd entry with it gives the
///   gid (and the name), else the gid is 0;
/// - a group, when given, replaces the gid: a name must be in /etc/group;
/// - the supplementary groups are the gid, then every /etc/group entry
///   that lists the user's name as a member, then `group_add` (names must
///   be in /etc/group), without repeats.
///
/// Nothing given: root (0, 0, [0]).
pub fn resolve_user(
    root: &Path,
    user: Option<&UserSpec>,
    group_add: &[Id],
) -> Result<Ident, RunError> {
    let shown = user.map_or_else(|| "root".to_string(), |u| u.to_string());
    let bad = |why: String| RunError::User {
        user: shown.clone(),
        why,
    };
    let passwd = match user {
        Some(_) => read_regular(root, "/etc/passwd", MAX_READ)?.unwrap_or_default(),
        None => String::new(),
    };
    let needs_groups = user.is_some() || !group_add.is_empty();
    let group_text = if needs_groups {
        read_regular(root, "/etc/group", MAX_READ)?.unwrap_or_default()
    } else {
        String::new()
    };
    let (mut uid, mut gid, mut name) = (0u32, 0u32, None::<String>);
    match user.map(|u| &u.user) {
        None => name = Some("root".to_string()),
        Some(Id::Name(n)) => {
            let e = entries(&passwd)
                .find(|f| f.len() >= 4 && f[0] == n)
                .ok_or_else(|| bad(format!("user {n:?} is not in the image's /etc/passwd")))?;
            uid = e[2]
                .parse()
                .map_err(|_| bad(format!("/etc/passwd: {n}: uid {:?} is not a number", e[2])))?;
            gid = e[3]
                .parse()
                .map_err(|_| bad(format!("/etc/passwd: {n}: gid {:?} is not a number", e[3])))?;
            name = Some(n.clone());
        }
        Some(Id::Num(n)) => {
            uid = *n;
            if let Some(e) =
                entries(&passwd).find(|f| f.len() >= 4 && f[2].parse::<u32>().ok() == Some(*n))
            {
                gid = e[3].parse().unwrap_or(0);
                name = Some(e[0].to_string());
            }
        }
    }
    let group_id = |g: &Id| -> Result<u32, RunError> {
        match g {
            Id::Num(n) => Ok(*n),
            Id::Name(n) => entries(&group_text)
                .find(|f| f.len() >= 3 && f[0] == n)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| bad(format!("group {n:?} is not in the image's /etc/group"))),
        }
    };
    if let Some(g) = user.and_then(|u| u.group.as_ref()) {
        gid = group_id(g)?;
    }
    let mut groups = vec![gid];
    if let Some(name) = &name {
        for f in entries(&group_text) {
            if f.len() >= 4 && f[3].split(',').any(|m| m == name) {
                if let Ok(g) = f[2].parse::<u32>() {
                    groups.push(g);
                }
            }
        }
    }
    for g in group_add {
        groups.push(group_id(g)?);
    }
    let mut seen = std::collections::HashSet::new();
    groups.retain(|g| seen.insert(*g));
    Ok(Ident { uid, gid, groups })
}

fn is_mount(p: &Path) -> bool {
    match (
        keel_sys::fs::dev_of(p),
        p.parent().map(keel_sys::fs::dev_of),
    ) {
        (Ok(a), Some(Ok(b))) => a != b,
        _ => false,
    }
}

/// Mount the root of `name` from `img`; returns its path.
pub fn mount_root(dirs: &Dirs, c: &Container, img: &ImageRoot) -> Result<PathBuf, RunError> {
    if img.layers.is_empty() {
        return Err(RunError::NoLayers);
    }
    let run = dirs.run.join(&c.name);
    let rootfs = run.join("rootfs");
    release_root(&run);
    std::fs::create_dir_all(&rootfs).map_err(io("create", &rootfs))?;
    let rw = if c.readonly {
        let tmp = run.join("rw");
        std::fs::create_dir_all(&tmp).map_err(io("create", &tmp))?;
        keel_sys::fs::mount(
            "tmpfs",
            &tmp,
            "tmpfs",
            MountFlags::MS_NOSUID,
            Some("mode=0755"),
        )
        .map_err(RunError::Root)?;
        tmp
    } else {
        dirs.state.join(&c.name)
    };
    let (upper, work) = (rw.join("upper"), rw.join("work"));
    for d in [&upper, &work] {
        std::fs::create_dir_all(d).map_err(io("create", d))?;
    }
    let lowers: Vec<String> = img
        .layers
        .iter()
        .map(|l| l.to_string_lossy().into_owned())
        .collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        upper.display(),
        work.display()
    );
    // nodev: CAP_MKNOD is in the default set (as Docker's; unpacking skips
    // layers' device nodes), so a node made in the root must not open a
    // device of the host.
    keel_sys::fs::mount(
        "overlay",
        &rootfs,
        "overlay",
        MountFlags::MS_NOSUID | MountFlags::MS_NODEV,
        Some(&data),
    )
    .map_err(RunError::Root)?;
    Ok(rootfs)
}

/// Run `argv` inside the running container `j` belongs to: its namespaces
/// (by its pidfd), its cgroup, its user, capabilities and seccomp filter;
/// output goes to /dev/null. Returns once the command has exec'd.
pub fn exec_in(
    j: &Joinable,
    c: &Container,
    argv: &[String],
    confiner: Option<&Confiner>,
) -> Result<Spawned, RunError> {
    let first = argv.first().ok_or(RunError::NoCommand)?;
    let program = find_program(&j.rootfs, first, &j.env)?;
    let confinement = match confiner {
        Some(f) => Some(f(c, &j.ident).map_err(RunError::Confine)?),
        None => None,
    };
    let cg_dir = std::fs::File::open(&j.cgroup).map_err(io("open", &j.cgroup))?;
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map_err(io("open", Path::new("/dev/null")))?;
    let mut ns = (libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWCGROUP) as u64;
    if !j.host_network {
        ns |= libc::CLONE_NEWNET as u64;
    }
    let spec = ChildSpec {
        root: CString::default(),
        mounts: Vec::new(),
        hostname: None,
        cwd: cstring(&j.cwd, "the working directory")?,
        program: cstring(&program, "the program")?,
        argv: argv
            .iter()
            .map(|a| cstring(a, "an argument"))
            .collect::<Result<_, _>>()?,
        env: j
            .env
            .iter()
            .map(|e| cstring(e, "the environment"))
            .collect::<Result<_, _>>()?,
        namespaces: ns,
        cgroup: cg_dir.as_raw_fd(),
        stdout: null.as_raw_fd(),
        stderr: null.as_raw_fd(),
        confine: confinement.as_deref().map(|f| f as spawn::ConfineFn),
        loopback_up: false,
        netns: None,
        rlimits: Vec::new(),
        sysctls: Vec::new(),
        join: Some(j.pidfd.as_raw_fd()),
        stdio_owner: None,
    };
    spawn::spawn(&spec).map_err(RunError::Spawn)
}

/// Where the child finds the sysctl files: PID 1's /proc, which is still
/// the child's until its root changes (a sysctl file acts on the
/// namespaces of the process writing it, whatever proc mount it is found
/// through).
pub const PROC_SYS: &str = "/proc/sys";

/// What Docker sets in every container with a network namespace of its
/// own: any user may bind any port there (nginx as www-data on port 80),
/// and the namespace holds only the container's addresses.
pub const UNPRIVILEGED_PORT_START: (&str, &str) = ("net/ipv4/ip_unprivileged_port_start", "0");

/// The sysctls the child of `c` writes, under `proc_sys`: Docker's
/// [`UNPRIVILEGED_PORT_START`] unless the network is the node's or the
/// container sets it itself, then the container's `sysctls`, in order.
pub fn sysctl_writes(c: &Container, proc_sys: &Path) -> Result<Vec<spawn::SysctlWrite>, RunError> {
    // The config refuses it; a container built otherwise is refused here
    // too, as the child would write the node's own.
    if c.network == NetMode::Host {
        if let Some(s) = c.sysctls.iter().find(|s| s.ns == SysctlNs::Net) {
            return Err(RunError::NodeSysctl {
                name: s.name.clone(),
            });
        }
    }
    let (default_path, default_value) = UNPRIVILEGED_PORT_START;
    let default = (c.network != NetMode::Host && !c.sysctls.iter().any(|s| s.path == default_path))
        .then_some((default_path, default_value));
    default
        .into_iter()
        .chain(
            c.sysctls
                .iter()
                .map(|s| (s.path.as_str(), s.value.as_str())),
        )
        .map(|(path, value)| {
            Ok(spawn::SysctlWrite {
                path: CString::new(proc_sys.join(path).as_os_str().as_bytes()).map_err(|_| {
                    RunError::Nul {
                        what: "a sysctl name",
                    }
                })?,
                value: cstring(value, "a sysctl value")?,
            })
        })
        .collect()
}

/// Unmount a run's root (and its tmpfs upper); quiet when not mounted.
pub fn release_root(run: &Path) {
    for p in [run.join("rootfs"), run.join("rw")] {
        while is_mount(&p) {
            if keel_sys::fs::unmount(&p, true).is_err() {
                break;
            }
        }
    }
}

/// Start a run of `c` from `img`. `confiner` prepares the child's last step
/// before exec (user, capabilities, no_new_privs, seccomp); without one the
/// process runs as root with keel's own privileges (tests only).
pub fn start(
    dirs: &Dirs,
    c: &Container,
    img: &ImageRoot,
    confiner: Option<&Confiner>,
    bridge: Option<&BridgeNet>,
) -> Result<Run, RunError> {
    let bridge = match (c.network, bridge) {
        (NetMode::Bridge, None) => return Err(RunError::NoBridge),
        (NetMode::Bridge, b) => b,
        _ => None,
    };
    let rootfs = mount_root(dirs, c, img)?;
    let hostname = c.hostname.clone().unwrap_or_else(|| c.name.clone());
    let started = (|| {
        // Bind sources: resolved now, once, without following a link, and
        // mounted from what was resolved (a volume that does not exist yet
        // is created, as docker does for `-v`). Held until the spawn.
        let binds = mounts::bind_trees(&c.mounts, &dirs.source_root)?;
        let init = match c.init {
            true => match std::fs::metadata(&dirs.init) {
                Ok(m) if m.is_file() => Some(dirs.init.as_path()),
                Ok(_) => {
                    return Err(RunError::Init {
                        path: dirs.init.clone(),
                        source: std::io::Error::other("not a regular file"),
                    })
                }
                Err(source) => {
                    return Err(RunError::Init {
                        path: dirs.init.clone(),
                        source,
                    })
                }
            },
            false => None,
        };
        let mut ops = mounts::plan(&rootfs, &c.mounts, &binds, init)?;
        // On the bridge: an address, its /etc/hosts and /etc/resolv.conf
        // (bound over the image's), and the network namespace, connected
        // before the child exists so that its program starts networked.
        let mut netns = None;
        let mut address = None;
        if let Some(b) = bridge {
            let node_resolv = std::fs::read_to_string(&b.node_resolv).unwrap_or_default();
            let plan = b.with(|br| br.prepare(&c.name, &hostname, &node_resolv))?;
            let run = dirs.run.join(&c.name);
            for (file, text) in [("resolv.conf", &plan.resolv_conf), ("hosts", &plan.hosts)] {
                let host = run.join(file);
                std::fs::write(&host, text).map_err(io("write", &host))?;
                ops.push(mounts::bind_file(&rootfs, &host, &format!("/etc/{file}"))?);
            }
            let fd = keel_sys::netns::create().map_err(RunError::Spawn)?;
            let att = b.with(|br| {
                br.attach(
                    &c.name,
                    keel_sys::netns::NetNs::Fd(std::os::fd::AsFd::as_fd(&fd)),
                    &c.ports,
                    c.node_port,
                )
            })?;
            if let Some(d) = att.door {
                keel_boot::info!(
                    "container {}: node_port opens the node's port {} to it (a door into the node)",
                    c.name,
                    d.port
                );
            }
            address = Some(att.ip);
            netns = Some(fd);
        }
        let env = environment(c, img, &hostname);
        let args = argv(c, img);
        let first = args.first().ok_or(RunError::NoCommand)?;
        let program = find_program(&rootfs, first, &env)?;
        let (program, args) = exec_line(c, &program, &args);
        let cwd = c
            .workdir
            .clone()
            .or_else(|| img.workdir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into());
        if let Ok(host) = mounts::inside(&rootfs, &cwd) {
            let _ = std::fs::create_dir_all(host);
        }
        let user = c.user.as_ref().or(img.user.as_ref());
        let ident = resolve_user(&rootfs, user, &c.group_add)?;
        let confinement = match confiner {
            Some(f) => Some(f(c, &ident).map_err(RunError::Confine)?),
            None => None,
        };
        let cg = Cgroup::create(&dirs.cgroup, &c.name, &c.resources)?;
        let cg_dir = std::fs::File::open(&cg.path).map_err(io("open", &cg.path))?;
        let (out_r, out_w) = spawn::log_pipe().map_err(RunError::Spawn)?;
        let (err_r, err_w) = spawn::log_pipe().map_err(RunError::Spawn)?;
        let mut ns = (libc::CLONE_NEWNS
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWCGROUP) as u64;
        if c.network == NetMode::None {
            ns |= libc::CLONE_NEWNET as u64;
        }
        let spec = ChildSpec {
            root: CString::new(rootfs.as_os_str().as_bytes()).map_err(|_| RunError::Nul {
                what: "the root path",
            })?,
            mounts: ops,
            hostname: Some(cstring(&hostname, "the host name")?),
            cwd: cstring(&cwd, "the working directory")?,
            program: cstring(&program, "the program")?,
            argv: args
                .iter()
                .map(|a| cstring(a, "an argument"))
                .collect::<Result<_, _>>()?,
            env: env
                .iter()
                .map(|e| cstring(e, "the environment"))
                .collect::<Result<_, _>>()?,
            namespaces: ns,
            cgroup: cg_dir.as_raw_fd(),
            stdout: out_w.as_raw_fd(),
            stderr: err_w.as_raw_fd(),
            confine: confinement.as_deref().map(|f| f as spawn::ConfineFn),
            loopback_up: c.network != NetMode::Host,
            netns: netns.as_ref().map(|f| f.as_raw_fd()),
            join: None,
            stdio_owner: (ident.uid != 0).then_some((ident.uid, ident.gid)),
            sysctls: sysctl_writes(c, Path::new(PROC_SYS))?,
            rlimits: c
                .rlimits
                .iter()
                .map(|l| (l.resource.number(), l.limits.soft(), l.limits.hard()))
                .collect(),
        };
        let Spawned { pid, pidfd } = spawn::spawn(&spec).map_err(RunError::Spawn)?;
        let joinable = Joinable {
            pidfd: pidfd
                .try_clone()
                .map_err(io("duplicate the pidfd of", &cg.path))?,
            cgroup: cg.path.clone(),
            rootfs: rootfs.clone(),
            env: env.clone(),
            cwd: cwd.clone(),
            ident,
            host_network: c.network == NetMode::Host,
        };
        Ok(Run {
            joinable,
            address,
            pid,
            pidfd,
            cgroup: cg,
            rootfs: rootfs.clone(),
            stdout: out_r,
            stderr: err_r,
            stop_signal: c
                .stop_signal
                .or(img.stop_signal)
                .unwrap_or(keel_config::model::Signal::TERM),
        })
    })();
    if started.is_err() {
        if let Some(b) = bridge {
            let _ = b.with(|br| br.detach(&c.name));
        }
        release_root(&dirs.run.join(&c.name));
    }
    started
}

/// After a run's processes are gone: leave the bridge, remove its cgroup,
/// unmount its root.
pub fn stop_run(dirs: &Dirs, name: &str, cg: &Cgroup, bridge: Option<&BridgeNet>) {
    if let Some(b) = bridge {
        if let Err(e) = b.with(|br| br.detach(name)) {
            keel_boot::warn!("container {name}: {e}");
        }
    }
    let _ = cg.kill();
    for _ in 0..50 {
        if !cg.populated() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = cg.remove();
    release_root(&dirs.run.join(name));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A container of busybox with keel's defaults, for the tests to change.
    fn a_container() -> Container {
        Container::new(
            "test",
            keel_config::model::ImageRef::try_from("busybox").unwrap(),
        )
    }

    fn img() -> ImageRoot {
        ImageRoot {
            entrypoint: vec!["/bin/ep".into()],
            cmd: vec!["a".into(), "b".into()],
            env: vec!["PATH=/bin".into(), "A=image".into()],
            ..Default::default()
        }
    }

    #[test]
    fn the_modelled_rlimits_are_the_kernels_numbers() {
        use keel_types::Resource as R;
        let libc = [
            (R::As, libc::RLIMIT_AS),
            (R::Core, libc::RLIMIT_CORE),
            (R::Cpu, libc::RLIMIT_CPU),
            (R::Data, libc::RLIMIT_DATA),
            (R::Fsize, libc::RLIMIT_FSIZE),
            (R::Locks, libc::RLIMIT_LOCKS),
            (R::Memlock, libc::RLIMIT_MEMLOCK),
            (R::Msgqueue, libc::RLIMIT_MSGQUEUE),
            (R::Nice, libc::RLIMIT_NICE),
            (R::Nofile, libc::RLIMIT_NOFILE),
            (R::Nproc, libc::RLIMIT_NPROC),
            (R::Rss, libc::RLIMIT_RSS),
            (R::Rtprio, libc::RLIMIT_RTPRIO),
            (R::Rttime, libc::RLIMIT_RTTIME),
            (R::Sigpending, libc::RLIMIT_SIGPENDING),
            (R::Stack, libc::RLIMIT_STACK),
        ];
        assert_eq!(libc.len(), R::all().count());
        for (r, n) in libc {
            assert_eq!(r.number(), n, "{r}");
        }
    }

    #[test]
    fn sysctls_docker_default_then_the_containers() {
        let writes = |c: &Container| -> Vec<(String, String)> {
            sysctl_writes(c, Path::new("/p/sys"))
                .unwrap()
                .iter()
                .map(|w| {
                    (
                        w.path.to_str().unwrap().to_string(),
                        w.value.to_str().unwrap().to_string(),
                    )
                })
                .collect()
        };
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        let shm = keel_config::containers::sysctl("kernel.shmmax", "4096").unwrap();
        let mut c = Container {
            network: NetMode::None,
            sysctls: vec![shm.clone()],
            ..a_container()
        };
        assert_eq!(
            writes(&c),
            [
                pair("/p/sys/net/ipv4/ip_unprivileged_port_start", "0"),
                pair("/p/sys/kernel/shmmax", "4096")
            ]
        );
        c.network = NetMode::Bridge;
        assert_eq!(writes(&c).len(), 2);
        // The node's network is not the container's to change.
        c.network = NetMode::Host;
        assert_eq!(writes(&c), [pair("/p/sys/kernel/shmmax", "4096")]);
        let fwd = keel_config::containers::sysctl("net.ipv4.ip_forward", "1").unwrap();
        c.sysctls.push(fwd);
        let e = sysctl_writes(&c, Path::new("/p/sys")).unwrap_err();
        assert!(e.to_string().contains("net.ipv4.ip_forward"), "{e}");
        c.sysctls.pop();
        // The container's own value replaces the default.
        c.network = NetMode::None;
        c.sysctls =
            vec![
                keel_config::containers::sysctl("net.ipv4.ip_unprivileged_port_start", "1024")
                    .unwrap(),
            ];
        assert_eq!(
            writes(&c),
            [pair("/p/sys/net/ipv4/ip_unprivileged_port_start", "1024")]
        );
    }

    #[test]
    fn argv_follows_docker() {
        let mut c = a_container();
        assert_eq!(argv(&c, &img()), ["/bin/ep", "a", "b"]);
        c.args = vec!["x".into()];
        assert_eq!(argv(&c, &img()), ["/bin/ep", "x"]);
        c.command = vec!["/bin/sh".into()];
        c.args.clear();
        assert_eq!(argv(&c, &img()), ["/bin/sh"]);
    }

    #[test]
    fn the_init_runs_the_program_with_its_argv() {
        let mut c = a_container();
        let args = ["httpd".to_string(), "-f".to_string()];
        assert_eq!(
            exec_line(&c, "/bin/httpd", &args),
            ("/bin/httpd".to_string(), args.to_vec())
        );
        c.init = true;
        assert_eq!(
            exec_line(&c, "/bin/httpd", &args),
            (
                "/dev/init".to_string(),
                ["/dev/init", "/bin/httpd", "--", "httpd", "-f"]
                    .map(String::from)
                    .to_vec()
            )
        );
    }

    #[test]
    fn container_env_wins() {
        let c = Container {
            env: vec![("A".into(), "mine".into())],
            ..a_container()
        };
        let e = environment(&c, &img(), "h");
        assert_eq!(e, ["HOSTNAME=h", "PATH=/bin", "A=mine"]);
    }

    #[test]
    fn program_lookup_stays_in_the_root() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("bin")).unwrap();
        std::os::unix::fs::symlink("/bin/busybox", t.path().join("bin/sh")).unwrap();
        let env = ["PATH=/usr/bin:/bin".to_string()];
        assert_eq!(find_program(t.path(), "sh", &env).unwrap(), "/bin/sh");
        // `ls` exists on the host, not in this root.
        let e = find_program(t.path(), "ls", &env).unwrap_err();
        assert!(e.to_string().contains("ls: not found"), "{e}");
        // A PATH entry through a symlink is not followed.
        std::os::unix::fs::symlink("/usr", t.path().join("usr")).unwrap();
        assert!(find_program(t.path(), "env", &env).is_err());
    }

    #[test]
    fn users_resolve_in_the_image() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        std::fs::write(
            t.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nweb:x:33:34::/var/www:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            t.path().join("etc/group"),
            "root:x:0:\nstaff:x:50:\nwww:x:34:\nlogs:x:4:web,other\nredis:x:101:\n",
        )
        .unwrap();
        let spec = |u: &str| keel_config::containers::user(u).unwrap();
        let r = |u: &str, add: &[&str]| {
            let add: Vec<Id> = add
                .iter()
                .map(|g| keel_config::containers::group(g).unwrap())
                .collect();
            resolve_user(t.path(), Some(&spec(u)), &add).map(|i| (i.uid, i.gid, i.groups))
        };
        // A name: its passwd gid, then the groups that list it.
        assert_eq!(r("web", &[]).unwrap(), (33, 34, vec![34, 4]));
        // A uid with an entry: that entry's gid and groups (Docker's
        // `--user 33` is www-data's group, not 33).
        assert_eq!(r("33", &[]).unwrap(), (33, 34, vec![34, 4]));
        // A uid without one: gid 0, as Docker.
        assert_eq!(r("1000", &[]).unwrap(), (1000, 0, vec![0]));
        assert_eq!(r("1000:50", &[]).unwrap(), (1000, 50, vec![50]));
        assert_eq!(r("web:staff", &[]).unwrap(), (33, 50, vec![50, 4]));
        assert_eq!(
            r("web:101", &["staff", "7", "34"]).unwrap(),
            (33, 101, vec![101, 4, 50, 7, 34])
        );
        for (u, add, why) in [
            (
                "nobody",
                &[][..],
                "user \"nobody\" is not in the image's /etc/passwd",
            ),
            (
                "web:nogroup",
                &[],
                "group \"nogroup\" is not in the image's /etc/group",
            ),
            (
                "web",
                &["nogroup"],
                "group \"nogroup\" is not in the image's /etc/group",
            ),
        ] {
            let e = r(u, add).unwrap_err().to_string();
            assert!(e.contains(why), "{u}: {e}");
        }
        assert_eq!(
            resolve_user(t.path(), None, &[]).unwrap(),
            Ident {
                uid: 0,
                gid: 0,
                groups: vec![0]
            }
        );
    }

    /// What a container can leave at /etc/passwd in its kept upper layer
    /// for the next start to read: each is refused, with what it is, and
    /// none blocks (a FIFO without a writer would block a plain open).
    #[test]
    fn only_small_regular_files_are_read_from_a_container() {
        let t = tempfile::tempdir().unwrap();
        let etc = t.path().join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        let passwd = etc.join("passwd");
        let attempt = |root: PathBuf| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let web = keel_config::containers::user("web").unwrap();
                let _ = tx.send(resolve_user(&root, Some(&web), &[]).map_err(|e| e.to_string()));
            });
            rx.recv_timeout(std::time::Duration::from_secs(5))
                .expect("resolve_user blocked")
        };
        nix::unistd::mkfifo(&passwd, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let e = attempt(t.path().into()).unwrap_err();
        assert!(
            e.contains("/etc/passwd") && e.contains("a FIFO, not a regular file"),
            "{e}"
        );
        std::fs::remove_file(&passwd).unwrap();
        std::fs::create_dir(&passwd).unwrap();
        let e = attempt(t.path().into()).unwrap_err();
        assert!(e.contains("a directory"), "{e}");
        std::fs::remove_dir(&passwd).unwrap();
        // Sparse: no disk used, but over the cap.
        let f = std::fs::File::create(&passwd).unwrap();
        f.set_len(MAX_READ + 1).unwrap();
        let e = attempt(t.path().into()).unwrap_err();
        assert!(e.contains("over the 1048576-byte limit"), "{e}");
        std::fs::remove_file(&passwd).unwrap();
        // A link to a file of the host is not followed.
        let host = t.path().join("host-passwd");
        std::fs::write(&host, "web:x:33:34::/:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink(&host, &passwd).unwrap();
        let e = attempt(t.path().into()).unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");
        // Control: the same text as a regular file is read.
        std::fs::remove_file(&passwd).unwrap();
        std::fs::copy(&host, &passwd).unwrap();
        assert_eq!(
            attempt(t.path().into()).map(|i| (i.uid, i.gid)).unwrap(),
            (33, 34)
        );
        assert_eq!(read_regular(t.path(), "/etc/none", MAX_READ).unwrap(), None);
    }
}
