//! keel's boot, as a table of phases of named tasks.

use std::path::Path;
use std::sync::Arc;

use keel_boot::cmdline::{Cmdline, PanicPoint};
use keel_boot::phases::{Phase, Task};
use keel_boot::{cgroup, guard, info, mounts, switch_root, warn};
use keel_sys::power::PowerAction;
use keel_sys::signal::SignalReader;

use crate::node::NodeShared;
use crate::services::{self, Services};

/// A boot task that failed.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("kv: {0}")]
    KvConfig(#[from] keel_etcd::config::ConfigError),
    #[error("kv: start its thread: {0}")]
    KvThread(std::io::Error),
    #[error(transparent)]
    Mount(#[from] mounts::MountError),
    #[error("read {path}: {source}")]
    Read {
        path: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Switch(#[from] switch_root::SwitchError),
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    #[error(transparent)]
    Sys(#[from] keel_sys::SysError),
    #[error(transparent)]
    Service(#[from] services::ServiceError),
    #[error("no Ethernet link under /sys/class/net")]
    NoEthernet,
    #[error(transparent)]
    Root(#[from] keel_boot::root::RootError),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("prepare the containers' cgroup: {0}")]
    ContainersCgroup(#[from] keel_containers::cgroup::CgroupError),
    #[error("open the image store {path}: {source}")]
    ImageStore {
        path: &'static str,
        source: keel_oci::StoreError,
    },
}

/// What the boot tasks share.
pub struct Ctx {
    pub cmdline: Cmdline,
    pub node: Arc<NodeShared>,
    pub signals: Option<SignalReader>,
    pub services: Option<Services>,
    /// The root's boot-time decisions.
    pub root: crate::root::RootCtx,
    /// LoadConfig's (or FetchConfig's) output, which ApplyConfig takes.
    pub loaded: Option<crate::config::Loaded>,
    /// ApplyConfig's output, which the later tasks take their parts of
    /// (empty when there was no config or it was refused). The config's
    /// status has one owner, the node (`NodeShared::update_config`).
    pub config: crate::config::NodeConfig,
    /// The KV's client port, once StartKv has read its settings: the door
    /// of a container's `node_port: kv`.
    pub kv_client_port: Option<u16>,
    /// Work a task asks for that being ready does not need, run in order
    /// right after `ready` (by [`Ctx::run_after_ready`]): with one vCPU,
    /// a thread started during the boot takes its time from the boot.
    pub after_ready: Vec<AfterReady>,
}

/// One piece of work queued for after `ready`: its name, for the log.
pub struct AfterReady {
    pub name: &'static str,
    pub run: Box<dyn FnOnce() -> Result<(), TaskError> + Send>,
}

/// Run `work` in order. A failure is logged as an error naming the task
/// that queued it (the log the API serves), and the rest still run.
/// Returns the failures' lines.
pub fn run_after_ready(work: Vec<AfterReady>) -> Vec<String> {
    let mut failed = Vec::new();
    for w in work {
        if let Err(e) = (w.run)() {
            let line = format!("{} (after ready): {e}", w.name);
            keel_boot::error!("{line}");
            failed.push(line);
        }
    }
    failed
}

impl Ctx {
    pub fn new(signals: SignalReader) -> Ctx {
        let node = Arc::new(NodeShared::new(Path::new("/proc")));
        // The root's status has one owner, the node: the root tasks fill it
        // in place; until a slot is verified it says so.
        node.update_root(|st| st.verity = "none".into());
        Ctx {
            cmdline: Cmdline::default(),
            node,
            signals: Some(signals),
            services: None,
            root: Default::default(),
            loaded: None,
            config: Default::default(),
            kv_client_port: None,
            after_ready: Vec::new(),
        }
    }

    /// Run what the tasks queued for after `ready` (see [`run_after_ready`]).
    pub fn run_after_ready(&mut self) {
        run_after_ready(std::mem::take(&mut self.after_ready));
    }

    /// Block until something asks for a shutdown.
    pub fn wait_for_shutdown(&mut self) -> PowerAction {
        match &self.services {
            Some(s) => s.wait_for_shutdown(&self.node),
            // Unreachable after a successful boot (StartRuntime is required).
            None => PowerAction::Reboot,
        }
    }
}

const fn req(
    name: &'static str,
    run: fn(&mut Ctx) -> Result<(), TaskError>,
) -> Task<Ctx, TaskError> {
    Task::required(name, run)
}

const fn opt(
    name: &'static str,
    run: fn(&mut Ctx) -> Result<(), TaskError>,
) -> Task<Ctx, TaskError> {
    Task::optional(name, run)
}

/// The boot. A task's `after` names the tasks whose output it takes (a
/// field of [`Ctx`] they fill, or what they did to the system);
/// `keel_boot::phases::check_order` proves each comes before it.
pub static BOOT: &[Phase<Ctx, TaskError>] = &[
    Phase {
        name: "early",
        tasks: &[
            req("MountEarly", mount_early),
            opt("AttachKernelLog", attach_kernel_log).after(&["MountEarly"]),
            opt("ReadCmdline", read_cmdline).after(&["MountEarly"]),
            opt("SetPanicPolicy", set_panic_policy).after(&["ReadCmdline"]),
            opt("HardenSysctls", harden_sysctls).after(&["MountEarly"]),
            opt("RaiseFileLimit", raise_file_limit),
            opt("RouteCtrlAltDel", route_ctrl_alt_del),
        ],
    },
    Phase {
        name: "root",
        tasks: &[
            opt("FindSlots", crate::root::find_slots).after(&["MountEarly"]),
            opt("MountRoot", crate::root::mount_root).after(&["ReadCmdline", "FindSlots"]),
            // Right after the kexec decision MountRoot made: nothing may
            // kexec, poke ports or replace ACPI tables after it.
            opt("LockKernel", lock_kernel).after(&["ReadCmdline", "MountRoot"]),
            req("LeaveInitramfs", crate::root::leave_initramfs).after(&["MountRoot"]),
            opt("MountState", crate::root::mount_state).after(&[
                "ReadCmdline",
                "FindSlots",
                "LeaveInitramfs",
            ]),
            opt("BuildEtc", crate::root::build_etc).after(&["MountState"]),
        ],
    },
    Phase {
        name: "config",
        tasks: &[
            opt("SetHostname", set_hostname),
            opt("LoadConfig", crate::config::load_config).after(&["ReadCmdline", "MountState"]),
            opt("ApplyConfig", crate::config::apply_config).after(&["LoadConfig", "BuildEtc"]),
        ],
    },
    Phase {
        name: "system",
        tasks: &[
            opt("EnableCgroupControllers", enable_cgroup_controllers),
            opt("ConfigureLoopback", configure_loopback),
            opt("ConfigureNetwork", configure_network).after(&["ApplyConfig"]),
            opt("FetchConfig", crate::config::fetch_config)
                .after(&["ReadCmdline", "ConfigureNetwork"]),
        ],
    },
    Phase {
        name: "services",
        tasks: &[
            req("StartRuntime", start_runtime),
            req("StartSignals", start_signals).after(&["StartRuntime"]),
            req("StartApi", start_api).after(&[
                "ReadCmdline",
                "ApplyConfig",
                "FetchConfig",
                "StartRuntime",
            ]),
            opt("StartKv", crate::kv::start_kv).after(&[
                "ApplyConfig",
                "FetchConfig",
                "StartRuntime",
            ]),
            opt("StartContainers", crate::containers::start_containers).after(&[
                "EnableCgroupControllers",
                "ApplyConfig",
                "FetchConfig",
                "StartRuntime",
                "StartKv",
            ]),
        ],
    },
];

fn mount_early(_: &mut Ctx) -> Result<(), TaskError> {
    mounts::mount_all(Path::new("/"), mounts::EARLY)?;
    Ok(())
}

/// Open files PID 1 may hold: room for the KV's 10,000 watches, its 4,096
/// client connections, the API's 1,024 and everything else.
pub const NOFILE: u64 = 65_536;

fn lock_kernel(ctx: &mut Ctx) -> Result<(), TaskError> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let sys = Path::new("/sys");
    ctx.node.set_kernel(
        crate::kernel::lock_and_report(sys, ctx.cmdline.debug_no_lockdown, &cmdline),
        sys,
    );
    Ok(())
}

fn raise_file_limit(_: &mut Ctx) -> Result<(), TaskError> {
    let n = keel_sys::proc::raise_nofile(NOFILE)?;
    info!("open-file limit {n}");
    Ok(())
}

fn set_panic_policy(ctx: &mut Ctx) -> Result<(), TaskError> {
    let policy = crate::sysctl::panic_policy(ctx.cmdline.on_panic, ctx.cmdline.kernel_panic);
    crate::sysctl::write(Path::new("/proc"), &policy)
}

fn harden_sysctls(_: &mut Ctx) -> Result<(), TaskError> {
    crate::sysctl::write(Path::new("/proc"), crate::sysctl::HARDENING)
}

fn attach_kernel_log(_: &mut Ctx) -> Result<(), TaskError> {
    keel_boot::log::attach_kmsg(Path::new("/dev/kmsg"));
    Ok(())
}

fn read_cmdline(ctx: &mut Ctx) -> Result<(), TaskError> {
    let text = std::fs::read_to_string("/proc/cmdline").map_err(|source| TaskError::Read {
        path: "/proc/cmdline",
        source,
    })?;
    let (cmdline, errors) = Cmdline::parse(&text);
    for e in &errors {
        warn!("{e}");
    }
    guard::set_action(cmdline.on_panic);
    guard::set_reboot_fails(cmdline.debug_reboot_fail);
    if cmdline.debug_panic == Some(PanicPoint::Early) {
        panic!("keel.debug.panic=early: panicking on purpose to exercise the guard");
    }
    ctx.cmdline = cmdline;
    Ok(())
}

fn route_ctrl_alt_del(_: &mut Ctx) -> Result<(), TaskError> {
    keel_sys::power::ctrl_alt_del_signals_init()?;
    Ok(())
}

/// Rescue mode: no slot could be trusted. Leave the initramfs for a tmpfs
/// copy of it, so the node still comes up and its API says why.
pub fn leave_to_tmpfs() -> Result<(), TaskError> {
    // keel's own binary stays behind (see keel_boot::switch_root). The kernel
    // runs init with argv[0] set to its path; /proc/self/exe is the fallback
    // (readlink there is a cold kernel path worth ~1 ms under TCG).
    let me = match std::env::args_os().next().map(std::path::PathBuf::from) {
        Some(p) if p.is_absolute() => p,
        _ => std::fs::read_link("/proc/self/exe").map_err(|source| TaskError::Read {
            path: "/proc/self/exe",
            source,
        })?,
    };
    let stats = switch_root::leave_initramfs(
        Path::new("/.keel-root"),
        &mounts::top_level(mounts::EARLY),
        &[&me],
    )?;
    info!(
        "left the initramfs: {} files, {} KiB copied to a tmpfs root",
        stats.files,
        stats.bytes / 1024
    );
    Ok(())
}

fn enable_cgroup_controllers(_: &mut Ctx) -> Result<(), TaskError> {
    let ctrls = cgroup::enable_controllers(Path::new("/sys/fs/cgroup"))?;
    info!("cgroup controllers enabled: {}", ctrls.join(" "));
    Ok(())
}

fn set_hostname(_: &mut Ctx) -> Result<(), TaskError> {
    // The cloud-config sets the real name later; until then a node is "keel".
    keel_sys::proc::set_hostname("keel")?;
    Ok(())
}

fn configure_loopback(_: &mut Ctx) -> Result<(), TaskError> {
    keel_sys::netlink::Rtnl::open()?.link_up("lo")?;
    Ok(())
}

fn configure_network(ctx: &mut Ctx) -> Result<(), TaskError> {
    let sys_net = Path::new("/sys/class/net");
    let networks = std::mem::take(&mut ctx.config.networks);
    if !networks.is_empty() {
        let done = crate::net::configure_units(sys_net, &networks)?;
        if !done.is_empty() {
            let mut units = Vec::new();
            for (link, unit) in &done {
                info!("{link}: configured by {unit}");
                units.push(unit.as_str());
                let wants_dhcp = networks
                    .iter()
                    .any(|n| &n.unit == unit && n.dhcp.is_some_and(|d| d.wants_v4()));
                if wants_dhcp {
                    start_dhcp(ctx, link);
                }
            }
            ctx.node
                .set_net_source(format!("config ({})", units.join(", ")));
            return Ok(());
        }
        warn!("no link matches the config's .network units: falling back to keel.ip=");
    }
    let link = crate::net::first_ethernet(sys_net).ok_or(TaskError::NoEthernet)?;
    let Some(ip) = ctx.cmdline.ip else {
        // No static address: DHCP on the first Ethernet link.
        start_dhcp(ctx, &link);
        ctx.node.set_net_source(format!("dhcp on {link}"));
        return Ok(());
    };
    crate::net::configure(&link, ip)?;
    ctx.node.set_net_source(format!("keel.ip on {link}"));
    info!(
        "{link}: {}/{} gateway {}",
        ip.addr,
        ip.prefix,
        ip.gateway
            .map(|g| g.to_string())
            .unwrap_or_else(|| "none".into())
    );
    Ok(())
}

/// How long the boot waits for a first DHCP lease before it goes on (the
/// client keeps trying on its own thread).
const DHCP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn start_dhcp(ctx: &mut Ctx, link: &str) {
    match crate::dhcp::start(link, ctx.node.dhcp.clone(), DHCP_WAIT) {
        Ok(Some(_)) => {}
        Ok(None) => warn!("{link}: no DHCP lease within {DHCP_WAIT:?}: the client keeps trying"),
        Err(e) => warn!("{link}: DHCP: {e}"),
    }
}

fn start_runtime(ctx: &mut Ctx) -> Result<(), TaskError> {
    ctx.services = Some(Services::start()?);
    Ok(())
}

fn start_signals(ctx: &mut Ctx) -> Result<(), TaskError> {
    if let (Some(s), Some(reader)) = (&ctx.services, ctx.signals.take()) {
        s.spawn_signal_loop(reader, ctx.node.clone())?;
    }
    Ok(())
}

fn start_api(ctx: &mut Ctx) -> Result<(), TaskError> {
    if let Some(s) = &ctx.services {
        let api = s.spawn_api(
            ctx.cmdline.api_port,
            Path::new(services::API_SOCKET),
            ctx.node.clone(),
            &ctx.config.api,
            Path::new(services::LAST_GOOD_API),
            ctx.cmdline.api_connections,
        )?;
        ctx.node.set_api(api);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_ready_work_runs_in_order_and_a_failure_does_not_stop_the_rest() {
        let ran = Arc::new(std::sync::Mutex::new(Vec::new()));
        let step = |name: &'static str, fail: bool| {
            let ran = ran.clone();
            AfterReady {
                name,
                run: Box::new(move || {
                    ran.lock().unwrap().push(name);
                    if fail {
                        Err(TaskError::KvThread(std::io::Error::other("no threads")))
                    } else {
                        Ok(())
                    }
                }),
            }
        };
        let failed = run_after_ready(vec![
            step("First", false),
            step("StartKv", true),
            step("Last", false),
        ]);
        assert_eq!(*ran.lock().unwrap(), ["First", "StartKv", "Last"]);
        assert_eq!(
            failed,
            ["StartKv (after ready): kv: start its thread: no threads"]
        );
    }

    /// docs/boot.md's phase table is the boot table: a task added, moved or
    /// renamed in [`BOOT`] fails here until the doc says so too.
    #[test]
    fn each_task_runs_after_the_tasks_it_takes_from() {
        assert_eq!(keel_boot::phases::check_order(BOOT), Ok(()));
    }

    #[test]
    fn the_docs_phase_table_is_the_boot_table() {
        let doc = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/boot.md"));
        let rows: Vec<(String, Vec<String>)> = doc
            .lines()
            .map(str::trim)
            .skip_while(|l| *l != "| phase | tasks |")
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
                let tasks = cells[1].split(',').map(|t| t.trim().to_string()).collect();
                (cells[0].to_string(), tasks)
            })
            .collect();
        let table: Vec<(String, Vec<String>)> = BOOT
            .iter()
            .map(|p| {
                let tasks = p.tasks.iter().map(|t| t.name.to_string()).collect();
                (p.name.to_string(), tasks)
            })
            .collect();
        assert_eq!(rows, table, "docs/boot.md's phase table");
    }
}
