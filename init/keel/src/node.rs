//! The node's shared state, read by the API and written by the boot, the
//! reaper and the shutdown path.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use keel_api::{
    ApiStatus, ConfigStatus, KernelStatus, Memory, Node, NodeState, Processes, RootStatus, Status,
};
use keel_boot::{procfs, Timeline};
use keel_sys::power::PowerAction;
use tokio::sync::watch;

pub struct NodeShared {
    proc_root: PathBuf,
    state: Mutex<NodeState>,
    timeline: Mutex<Timeline>,
    reaped: AtomicU64,
    shutdown: watch::Sender<Option<PowerAction>>,
    root: Mutex<RootStatus>,
    config: Mutex<ConfigStatus>,
    api: Mutex<ApiStatus>,
    kernel: Mutex<KernelStatus>,
    /// Where the CPU's vulnerabilities are read from (set by LockKernel),
    /// and what they were, read on first use.
    cpu_sys: OnceLock<PathBuf>,
    cpu: OnceLock<Vec<keel_api::CpuVulnerability>>,
    net_source: Mutex<String>,
    pub dhcp: crate::dhcp::Shared,
    /// Exits of container processes, from the reaper to the supervisor.
    pub exits: Arc<keel_containers::supervisor::Exits>,
    pub containers: OnceLock<keel_containers::supervisor::Supervisor>,
    /// The cluster store's member, once StartKv ran.
    pub kv: OnceLock<crate::kv::Member>,
    /// The containers to announce (`announce:`), by container name.
    pub announces: Mutex<Vec<crate::announce::Wanted>>,
}

impl NodeShared {
    pub fn new(proc_root: &Path) -> NodeShared {
        NodeShared {
            proc_root: proc_root.to_path_buf(),
            state: Mutex::new(NodeState::Booting),
            timeline: Mutex::new(Timeline::default()),
            reaped: AtomicU64::new(0),
            shutdown: watch::channel(None).0,
            root: Mutex::new(RootStatus::default()),
            config: Mutex::new(ConfigStatus::default()),
            api: Mutex::new(ApiStatus::default()),
            kernel: Mutex::new(KernelStatus::default()),
            cpu_sys: OnceLock::new(),
            cpu: OnceLock::new(),
            net_source: Mutex::new("none".into()),
            dhcp: Default::default(),
            exits: Default::default(),
            containers: OnceLock::new(),
            kv: OnceLock::new(),
            announces: Mutex::new(Vec::new()),
        }
    }

    pub fn set_ready(&self, timeline: Timeline) {
        if let Ok(mut t) = self.timeline.lock() {
            *t = timeline;
        }
        if let Ok(mut s) = self.state.lock() {
            *s = NodeState::Ready;
        }
    }

    pub fn set_root(&self, root: RootStatus) {
        if let Ok(mut r) = self.root.lock() {
            *r = root;
        }
    }

    pub fn set_net_source(&self, source: String) {
        if let Ok(mut s) = self.net_source.lock() {
            *s = source;
        }
    }

    /// Change the config's status in place: the boot's config tasks build
    /// it up here, its one owner.
    pub fn update_config(&self, f: impl FnOnce(&mut ConfigStatus)) {
        if let Ok(mut c) = self.config.lock() {
            f(&mut c);
        }
    }

    pub fn set_config(&self, config: ConfigStatus) {
        if let Ok(mut c) = self.config.lock() {
            *c = config;
        }
    }

    pub fn set_api(&self, api: ApiStatus) {
        if let Ok(mut a) = self.api.lock() {
            *a = api;
        }
    }

    pub fn api_status(&self) -> ApiStatus {
        self.api.lock().map(|a| a.clone()).unwrap_or_default()
    }

    pub fn update_api(&self, f: impl FnOnce(&mut ApiStatus)) {
        if let Ok(mut a) = self.api.lock() {
            f(&mut a);
        }
    }

    /// The kernel's status; its CPU vulnerabilities are read from `sys`
    /// when first asked for ([`NodeShared::cpu`]).
    pub fn set_kernel(&self, kernel: KernelStatus, sys: &Path) {
        if let Ok(mut k) = self.kernel.lock() {
            *k = kernel;
        }
        let _ = self.cpu_sys.set(sys.to_path_buf());
    }

    /// The CPU's vulnerabilities, read (and logged) on the first call;
    /// none before LockKernel ran.
    pub fn cpu(&self) -> Vec<keel_api::CpuVulnerability> {
        match self.cpu_sys.get() {
            Some(sys) => self
                .cpu
                .get_or_init(|| crate::kernel::report_cpu(sys))
                .clone(),
            None => Vec::new(),
        }
    }

    pub fn update_root(&self, f: impl FnOnce(&mut RootStatus)) {
        if let Ok(mut r) = self.root.lock() {
            f(&mut r);
        }
    }

    /// Validate and apply (or only plan) `text` as the API and the
    /// maintenance-mode re-read do: files, host name, containers; an
    /// accepted apply (not a dry run) leaves maintenance mode and records
    /// `source`.
    pub fn apply(
        &self,
        text: &str,
        meta_hostname: Option<String>,
        opts: keel_api::ApplyOptions,
        source: &str,
    ) -> keel_api::ConfigApplied {
        let dry_run = opts.dry_run;
        let (mut done, config) = crate::config::apply_text(text, meta_hostname, opts, true);
        if let (Some(config), Some(sup)) = (config, self.containers.get()) {
            let r = if dry_run {
                sup.diff(&config.containers)
            } else {
                if let Ok(mut a) = self.announces.lock() {
                    *a = crate::announce::wanted(&config.containers);
                }
                sup.reconcile(config.containers)
            };
            done.containers = r.lines();
        }
        if done.accepted && !dry_run {
            self.set_config(ConfigStatus {
                source: Some(source.into()),
                maintenance: false,
                errors: Vec::new(),
                items: done.items.clone(),
                changed: done.changed.clone(),
                checked_ms: done.checked_ms,
                written_ms: done.written_ms,
            });
        }
        done
    }

    pub fn is_ready(&self) -> bool {
        self.state
            .lock()
            .map(|s| *s == NodeState::Ready)
            .unwrap_or(false)
    }

    /// The root's status, with dm-verity's current verdict.
    fn root_status(&self) -> RootStatus {
        let mut r = self.root.lock().map(|r| r.clone()).unwrap_or_default();
        if r.mode == "disk" || r.mode == "diskless" {
            r.verity = match keel_sys::dm::status(crate::root::DM_NAME) {
                Ok(s) if s.trim() == "V" => "verified".into(),
                Ok(s) if s.trim() == "C" => "corrupted".into(),
                Ok(s) => format!("unknown ({s})"),
                Err(e) => format!("unknown ({e})"),
            };
        }
        r
    }

    pub fn add_reaped(&self, n: u64) {
        self.reaped.fetch_add(n, Ordering::Relaxed);
    }

    /// Ask for an orderly shutdown. The first request wins; later ones are
    /// refused with a message.
    pub fn request_shutdown(&self, action: PowerAction) -> Result<(), String> {
        let mut accepted = false;
        self.shutdown.send_if_modified(|cur| match cur {
            None => {
                *cur = Some(action);
                accepted = true;
                true
            }
            Some(_) => false,
        });
        if accepted {
            if let Ok(mut s) = self.state.lock() {
                *s = NodeState::Stopping;
            }
            Ok(())
        } else {
            Err(format!(
                "a {} is already under way",
                self.shutdown
                    .borrow()
                    .map(|a| a.as_str())
                    .unwrap_or("shutdown")
            ))
        }
    }

    pub fn subscribe_shutdown(&self) -> watch::Receiver<Option<PowerAction>> {
        self.shutdown.subscribe()
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl Node for NodeShared {
    fn status(&self) -> Status {
        let read = |p: &str| std::fs::read_to_string(self.proc_root.join(p)).unwrap_or_default();
        let mem = procfs::meminfo(&read("meminfo"));
        let procs = procfs::count_processes(&self.proc_root);
        let uptime = crate::clock();
        let root = self.root_status();
        let config = self.config();
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            hostname: hostname(),
            state: self.state.lock().map(|s| *s).unwrap_or(NodeState::Stopping),
            mode: keel_api::NodeMode::of(&root, &config),
            uptime_ms: keel_boot::phases::ms(uptime),
            boot: self.timeline.lock().map(|t| t.clone()).unwrap_or_default(),
            memory: Memory {
                total_kb: mem.total_kb,
                available_kb: mem.available_kb,
                used_kb: mem.total_kb.saturating_sub(mem.available_kb),
                pid1_rss_kb: procfs::rss_kb(&read("self/status")),
            },
            processes: Processes {
                total: procs.total,
                zombies: procs.zombies,
                reaped: self.reaped.load(Ordering::Relaxed),
            },
            root,
            config,
            kv: self.kv.get().map(|m| keel_api::KvStatus {
                name: m.config.name.clone(),
                id: format!("{:x}", m.id),
                client: m.client_addrs.iter().map(|a| a.to_string()).collect(),
                peer: m
                    .peer_addrs
                    .get()
                    .into_iter()
                    .flatten()
                    .map(|a| a.to_string())
                    .collect(),
                warnings: m.warnings(),
                alarms: kv_alarms(m, m.alarms()),
                store_bytes: m.shared.read().store.bytes(),
                quota_bytes: m.config.quota_bytes,
            }),
            api: self.api_status(),
            kernel: KernelStatus {
                cpu: self.cpu(),
                ..self.kernel.lock().map(|k| k.clone()).unwrap_or_default()
            },
        }
    }

    fn apply_config(&self, text: String, opts: keel_api::ApplyOptions) -> keel_api::ConfigApplied {
        self.apply(&text, None, opts, "api POST /v1/config")
    }
    fn config(&self) -> ConfigStatus {
        self.config.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn network(&self) -> keel_api::NetworkStatus {
        let mut out = crate::net::status();
        out.source = self
            .net_source
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        out.dhcp = self.dhcp.lock().ok().and_then(|d| {
            d.as_ref().map(|(link, l)| {
                let b = &l.binding;
                let ms = |d: std::time::Duration| d.as_millis() as u64;
                keel_api::DhcpLease {
                    link: link.clone(),
                    address: format!("{}/{}", b.address, b.prefix),
                    router: b.router.map(|r| r.to_string()),
                    dns: b.dns.iter().map(|d| d.to_string()).collect(),
                    first_lease_ms: l.after.as_secs_f64() * 1e3,
                    server: Some(l.server.to_string()),
                    lease_s: l.times.map(|t| t.lease.as_secs()),
                    acked_ms: l.times.map(|t| ms(t.acked)),
                    renew_ms: l.times.map(|t| ms(t.acked + t.renew)),
                    rebind_ms: l.times.map(|t| ms(t.acked + t.rebind)),
                    expires_ms: l.times.map(|t| ms(t.expires())),
                }
            })
        });
        out
    }

    fn containers(&self) -> Vec<keel_api::ContainerStatus> {
        self.containers
            .get()
            .map(|s| s.status())
            .unwrap_or_default()
    }

    fn container_logs(&self, name: &str, offset: u64) -> Option<keel_api::ContainerLogs> {
        self.containers.get()?.logs(name, offset)
    }

    fn container_action(&self, name: &str, action: &str) -> Result<(), Option<String>> {
        match self.containers.get() {
            Some(s) => s.action(name, action),
            None => Err(None),
        }
    }

    fn kv_alarms(&self) -> Option<Vec<keel_api::KvAlarm>> {
        self.kv.get().map(|m| kv_alarms(m, m.alarms()))
    }

    fn kv_disarm(&self) -> keel_api::KvDisarm {
        let m = self.kv.get().cloned();
        Box::pin(async move {
            let m = m.ok_or(None)?;
            let cleared = m.disarm().await.map_err(|e| Some(e.cause))?;
            keel_boot::info!("kv: {} alarm(s) disarmed through the API", cleared.len());
            Ok(kv_alarms(&m, cleared))
        })
    }

    fn request_power(&self, poweroff: bool) -> Result<(), String> {
        self.request_shutdown(if poweroff {
            PowerAction::PowerOff
        } else {
            PowerAction::Reboot
        })
    }
}

/// The KV's alarms as the API shows them, with the members' names.
fn kv_alarms(
    m: &crate::kv::Member,
    alarms: Vec<keel_etcd::types::Alarm>,
) -> Vec<keel_api::KvAlarm> {
    let members = m.members();
    alarms
        .into_iter()
        .map(|a| {
            let id = format!("{:x}", a.member);
            keel_api::KvAlarm {
                alarm: "NOSPACE".into(),
                member: members
                    .iter()
                    .find(|v| v.id == id)
                    .map(|v| v.name.clone())
                    .unwrap_or_default(),
                member_id: id,
                reason: a.kind.to_string(),
                message: a.to_string(),
                raised_unix: a.at / 1000,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_shutdown_request_wins() {
        let n = NodeShared::new(Path::new("/proc"));
        let mut rx = n.subscribe_shutdown();
        n.request_shutdown(PowerAction::PowerOff).unwrap();
        let err = n.request_shutdown(PowerAction::Reboot).unwrap_err();
        assert!(err.contains("poweroff is already under way"), "{err}");
        assert_eq!(*rx.borrow_and_update(), Some(PowerAction::PowerOff));
        assert_eq!(n.status().state, NodeState::Stopping);
    }

    #[test]
    fn status_reads_the_given_proc_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("meminfo"),
            "MemTotal: 1000 kB\nMemAvailable: 400 kB\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("self")).unwrap();
        std::fs::write(dir.path().join("self/status"), "VmRSS:\t 321 kB\n").unwrap();
        std::fs::create_dir(dir.path().join("1")).unwrap();
        std::fs::write(dir.path().join("1/stat"), "1 (keel) S 0").unwrap();
        let n = NodeShared::new(dir.path());
        n.add_reaped(3);
        let s = n.status();
        assert_eq!(
            s.memory,
            Memory {
                total_kb: 1000,
                available_kb: 400,
                used_kb: 600,
                pid1_rss_kb: 321
            }
        );
        assert_eq!(
            s.processes,
            Processes {
                total: 1,
                zombies: 0,
                reaped: 3
            }
        );
        assert_eq!(s.state, NodeState::Booting);
    }
}
